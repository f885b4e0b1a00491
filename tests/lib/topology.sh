# Hosts made of network namespaces, for scenario scripts. Sourced after common.sh.
#
#   topo_create a:1 b:2 dns     router joining LAN1 and LAN2; hosts a (on LAN1) and b (on
#                               LAN2); the DNS server's namespace. Torn down at exit.
#   on a CMD...                 run CMD in host a
#   topo_move a 2 [make|break]  a's address moves to LAN2: "break" (the default) drops the
#                               old address first, "make" adds the new one first
#   topo_netem a 2 "delay 10ms loss 30%"   impair a's link into LAN2, both directions
#   topo_addr a                 a's live address;  topo_addr a 1: its LAN1 address
#
# Every host has one link into each LAN (eth1, eth2), so moving is switching which one
# carries the address, as a laptop does between Wi-Fi and Ethernet. Addresses come from
# the documentation ranges: LAN1 192.0.2.0/24, LAN2 198.51.100.0/24, the DNS server's
# network 203.0.113.0/24; the router is .1 everywhere, host number k is .(10k).
TOPO_PREFIX=vip-
declare -A TOPO_LAN=([1]=192.0.2 [2]=198.51.100)
TOPO_DNS_NET=203.0.113
TOPO_DNS_ADDR=203.0.113.53
declare -A _topo_host_num=() _topo_host_lan=()

on() { local host=$1; shift; ip netns exec "$TOPO_PREFIX$host" "$@"; }

# topo_addr HOST [LAN]: HOST's address on LAN (default: the LAN it is on now).
topo_addr() {
  local host=$1 lan=${2:-${_topo_host_lan[$1]}}
  [ "$host" = dns ] && { echo $TOPO_DNS_ADDR; return; }
  echo "${TOPO_LAN[$lan]}.$((10 * _topo_host_num[$host]))"
}

_topo_ns() {
  ip netns add "$TOPO_PREFIX$1"
  on "$1" ip link set lo up
}

# _topo_link HOST IFNAME BRIDGE: a veth from HOST's IFNAME to a port on the router's BRIDGE.
_topo_link() {
  local host=$1 ifname=$2 bridge=$3 port="$1-$2"
  ip link add "$port" netns "${TOPO_PREFIX}r" type veth peer name "$ifname" netns "$TOPO_PREFIX$host"
  on r ip link set "$port" master "$bridge" up
  on "$host" ip link set "$ifname" up
}

topo_create() {
  at_exit topo_destroy
  _topo_ns r
  on r sysctl -qw net.ipv4.ip_forward=1
  local lan
  for lan in 1 2; do
    on r ip link add "lan$lan" type bridge
    on r ip link set "lan$lan" up
    on r ip addr add "${TOPO_LAN[$lan]}.1/24" dev "lan$lan"
  done
  local spec host num=0
  for spec in "$@"; do
    host=${spec%%:*}
    if [ "$host" = dns ]; then
      on r ip link add dnsnet type bridge
      on r ip link set dnsnet up
      on r ip addr add "$TOPO_DNS_NET.1/24" dev dnsnet
      _topo_ns dns
      _topo_link dns eth0 dnsnet
      on dns ip addr add "$TOPO_DNS_ADDR/24" dev eth0
      on dns ip route add default via "$TOPO_DNS_NET.1"
      continue
    fi
    num=$((num + 1))
    _topo_host_num[$host]=$num
    _topo_ns "$host"
    _topo_link "$host" eth1 lan1
    _topo_link "$host" eth2 lan2
    _topo_host_lan[$host]=${spec#*:}
    [ "$spec" = "$host" ] && _topo_host_lan[$host]=1
    _topo_attach "$host" "${_topo_host_lan[$host]}"
  done
}

_topo_attach() {
  local host=$1 lan=$2
  on "$host" ip addr add "$(topo_addr "$host" "$lan")/24" dev "eth$lan"
  on "$host" ip route replace default via "${TOPO_LAN[$lan]}.1" dev "eth$lan"
}

_topo_detach() {
  local host=$1 lan=$2
  on "$host" ip addr del "$(topo_addr "$host" "$lan")/24" dev "eth$lan"
}

topo_move() {
  local host=$1 to=$2 order=${3:-break} from=${_topo_host_lan[$1]}
  [ "$from" = "$to" ] && return 0
  if [ "$order" = make ]; then
    _topo_attach "$host" "$to"
    _topo_detach "$host" "$from"
  else
    _topo_detach "$host" "$from"
    _topo_attach "$host" "$to"
  fi
  _topo_host_lan[$host]=$to
}

topo_netem() {
  local host=$1 lan=$2 params=$3
  on "$host" tc qdisc replace dev "eth$lan" root netem $params
  on r tc qdisc replace dev "$host-eth$lan" root netem $params
}

# Kills what still runs in the hosts (servers, monitors), then deletes them.
topo_destroy() {
  local ns
  for ns in $(ip netns list | awk '{print $1}'); do
    [[ $ns == "$TOPO_PREFIX"* ]] || continue
    ip netns pids "$ns" | xargs -r kill -9 2>/dev/null
    ip netns del "$ns"
  done
  return 0
}
