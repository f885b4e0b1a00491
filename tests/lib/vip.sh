# VIP on the test hosts, with static mappings. Sourced after topology.sh.
#   vip_host a 240.0.0.1     a vip0 device on host a, with local VIP 240.0.0.1 and the
#                            route for 240.0.0.0/4
#   vip_map a b              on a: map b's VIP to b's current address (replacing)
#   vip_stat a rx_moved      a counter from `vipctl info`
declare -A VIP_OF=()

vip_host() {
  local host=$1 vip=$2
  VIP_OF[$host]=$vip
  on "$host" ip link add vip0 type vip
  on "$host" ip addr add "$vip/32" dev vip0
  on "$host" ip link set vip0 up
  on "$host" ip route add 240.0.0.0/4 dev vip0 src "$vip"
}

vip_map() {
  local host=$1 peer=$2
  on "$host" vipctl map replace "${VIP_OF[$peer]}" via "$(topo_addr "$peer")" local "${VIP_OF[$host]}"
}

vip_stat() {
  on "$1" vipctl -j info | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get(sys.argv[1], 0))' "$2"
}
