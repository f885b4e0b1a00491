# A real BIND 9 in the DNS namespace, and vipd on the test hosts. Sourced after topology.sh.
#
#   dns_start "a b" "c"    named serving vip.test: hosts a and b get a TSIG key each and may
#                          update their own A record, their magic record and their key
#                          record; c is a legacy host with a static A record. Stopped at exit.
#   vipd_start a [EXTRA]   vipd on a (config in $DNS_DIR/a/vipd.toml, EXTRA appended to it;
#                          log in $DNS_DIR/a/vipd.log); a's resolv.conf points at its stub
#   vipd_stop a            SIGTERM, wait
#   vipd_log a             the log so far
#   vctl a ARGS            vipctl on a, with a's vipd's control socket
#   dns_dig a NAME [TYPE]  dig from host a through its resolver
#   vipd_stat a F...       fields F of a's engine counters ("F=V ..."), fresh (SIGUSR1)
#   vipd_stat_is a "F=V.." vipd_stat_above a F N    vipd_stat_max a F N
DNS_ZONE=vip.test
DNS_DIR=/tmp/vip-dns
MAGIC_PREFIX=vip105067072021-
declare -A VIPD_PID=()

dns_start() {
  local vip_hosts=$1 legacy_hosts=${2:-} h
  rm -rf "$DNS_DIR"
  mkdir -p "$DNS_DIR/named"
  {
    echo "options {"
    echo "  directory \"$DNS_DIR/named\";"
    echo "  pid-file \"$DNS_DIR/named/named.pid\";"
    echo "  listen-on { $TOPO_DNS_ADDR; }; listen-on-v6 { none; };"
    echo "  recursion no; dnssec-validation no; notify no;"
    echo "};"
    for h in $vip_hosts; do
      mkdir -p "$DNS_DIR/$h"
      (umask 077 && tsig-keygen -a hmac-sha256 "$h-key" > "$DNS_DIR/$h/$h.key")
      echo "include \"$DNS_DIR/$h/$h.key\";"
    done
    echo "zone \"$DNS_ZONE\" {"
    echo "  type primary; file \"$DNS_DIR/named/$DNS_ZONE.db\";"
    echo "  update-policy {"
    for h in $vip_hosts; do
      echo "    grant $h-key name $h.$DNS_ZONE. A AAAA;"
      echo "    grant $h-key name $MAGIC_PREFIX$h.$DNS_ZONE. A;"
      echo "    grant $h-key name _vipkey.$h.$DNS_ZONE. TXT;"
    done
    echo "  };"
    echo "};"
  } > "$DNS_DIR/named.conf"
  {
    echo "\$TTL 30"
    echo "@ IN SOA ns.$DNS_ZONE. hostmaster.$DNS_ZONE. 1 60 60 600 5"
    echo "@ IN NS ns.$DNS_ZONE."
    echo "ns IN A $TOPO_DNS_ADDR"
    for h in $legacy_hosts; do echo "$h IN A $(topo_addr "$h")"; done
  } > "$DNS_DIR/named/$DNS_ZONE.db"
  for h in $vip_hosts $legacy_hosts; do
    mkdir -p "/etc/netns/$TOPO_PREFIX$h"
    echo "nameserver $TOPO_DNS_ADDR" > "/etc/netns/$TOPO_PREFIX$h/resolv.conf"
  done
  ip netns exec "${TOPO_PREFIX}dns" named -g -c "$DNS_DIR/named.conf" > "$DNS_DIR/named.log" 2>&1 &
  DNS_NAMED_PID=$!
  at_exit dns_stop
  eventually 20 on dns dig +short +tries=1 +timeout=1 "@$TOPO_DNS_ADDR" "$DNS_ZONE" SOA >/dev/null
}

dns_stop() {
  local h
  for h in "${!VIPD_PID[@]}"; do vipd_stop "$h"; done
  [ -n "${DNS_NAMED_PID:-}" ] && kill "$DNS_NAMED_PID" 2>/dev/null && wait "$DNS_NAMED_PID" 2>/dev/null
  rm -rf /etc/netns/"$TOPO_PREFIX"*
  return 0
}

# The short answer of a query from HOST to the zone's server itself.
dns_server_dig() { local host=$1; shift; on "$host" dig +short +tries=2 +timeout=2 "@$TOPO_DNS_ADDR" "$@"; }

dns_dig() { local host=$1; shift; on "$host" dig +short +tries=1 +timeout=15 "$@"; }

vipd_config() {
  local h=$1
  cat <<EOF
fqdn = "$h.$DNS_ZONE"
state_dir = "$DNS_DIR/$h/state"
control_socket = "$DNS_DIR/$h/control.sock"

[stub]
listen = ["127.0.0.53:53"]

[upstream]
servers = ["$TOPO_DNS_ADDR:53"]
timeout_ms = 1000

[update]
key_file = "$DNS_DIR/$h/$h.key"
ttl = 5

[negotiation]
retransmit_ms = 300
EOF
}

vipd_start() {
  local h=$1 extra=${2:-}
  { vipd_config "$h"; printf '%s\n' "$extra"; } > "$DNS_DIR/$h/vipd.toml"
  echo "nameserver 127.0.0.53" > "/etc/netns/$TOPO_PREFIX$h/resolv.conf"
  local started
  started=$(grep -c "vipd ready" "$DNS_DIR/$h/vipd.log" 2>/dev/null)
  # Not through `on`: $! must be vipd itself (ip netns exec and env exec it).
  ip netns exec "$TOPO_PREFIX$h" env VIPD_LOG=info,vipd=debug,vip_proto=debug vipd -c "$DNS_DIR/$h/vipd.toml" \
    >> "$DNS_DIR/$h/vipd.log" 2>&1 &
  VIPD_PID[$h]=$!
  eventually 20 _vipd_ready "$h" "${started:-0}"
}

_vipd_ready() {
  vipd_running "$1" || return 2
  (($(grep -c "vipd ready" "$DNS_DIR/$1/vipd.log") > $2))
}

vipd_stop() {
  local h=$1 pid=${VIPD_PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  unset "VIPD_PID[$h]"
  return 0
}

vipd_running() { kill -0 "${VIPD_PID[$1]}" 2>/dev/null; }
# vctl HOST ARGS: vipctl on HOST, talking to HOST's vipd (peers, unpin, resolve, watch).
vctl() { local h=$1; shift; on "$h" vipctl --socket "$DNS_DIR/$h/control.sock" "$@"; }
vipd_log() { cat "$DNS_DIR/$1/vipd.log"; }

# The engine's counters: SIGUSR1 makes vipd log a "stats" line; the newest one is read.
vipd_stats() {
  local h=$1 before
  before=$(grep -c " stats " "$DNS_DIR/$h/vipd.log")
  kill -USR1 "${VIPD_PID[$h]}" || return 1
  eventually 10 bash -c "(( \$(grep -c ' stats ' '$DNS_DIR/$h/vipd.log') > $before ))" || return 1
  grep " stats " "$DNS_DIR/$h/vipd.log" | tail -1 | sed 's/.* stats //'
}
vipd_stat() {
  local h=$1 line f out=(); shift
  line=$(vipd_stats "$h") || return 1
  for f in "$@"; do out+=("$(grep -o "\b$f=[0-9]*" <<<"$line")"); done
  echo "${out[*]}"
}
vipd_stat_is() { local h=$1 want=$2; [ "$(vipd_stat "$h" $(sed 's/=[0-9]*//g' <<<"$want"))" = "$want" ]; }
vipd_stat_value() { vipd_stat "$1" "$2" | cut -d= -f2; }
vipd_stat_above() { local v; v=$(vipd_stat_value "$1" "$2"); echo "$2=$v"; ((v > $3)); }
vipd_stat_max() { local v; v=$(vipd_stat_value "$1" "$2"); echo "$2=$v"; ((v <= $3)); }
in_vip_range() { [[ $1 =~ ^2(4[0-9]|5[0-5])\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }

# vipd_pair_ab: BIND for A and B, vipd on both, each reaching the other by name (one case);
# sets VIP_OF_B (A's VIP for B) and VIP_OF_A (B's VIP for A). For the benchmarks.
vipd_pair_ab() {
  local started=1
  dns_start "a b"
  vipd_start a || started=0
  vipd_start b || started=0
  on a ping -c2 -i0.2 -W2 "b.$DNS_ZONE" > /dev/null || started=0
  on b ping -c2 -i0.2 -W2 "a.$DNS_ZONE" > /dev/null || started=0
  VIP_OF_B=$(on a getent ahostsv4 "b.$DNS_ZONE" | awk 'NR == 1 { print $1 }')
  VIP_OF_A=$(on b getent ahostsv4 "a.$DNS_ZONE" | awk 'NR == 1 { print $1 }')
  if ((started)); then ok "BIND and vipd on A and B started, each reaches the other by name"
  else not_ok "BIND and vipd on A and B started, each reaches the other by name"; fi
}
