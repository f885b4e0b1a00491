# A real BIND 9 in the DNS namespace, and vipd on the test hosts. Sourced after topology.sh.
#
#   dns_start "a b" "c"    named serving vip.test: hosts a and b get a TSIG key each and may
#                          update their own A record, their magic record and their key
#                          record; c is a legacy host with a static A record. Stopped at exit.
#   dns_start "a b" "" signed   the same, DNSSEC-signed (dnssec-policy default: one CSK,
#                          ECDSAP256SHA256, NSEC; inline-signing no, so each update is signed
#                          in its own transaction); returns once the SOA is signed, and exports
#                          DNS_ANCHOR, a file of the zone's DNSKEY (zone-file syntax, taken
#                          out of band from the key directory): vipd's [dnssec] trust_anchor
#   key_signed a           the zone's server answers _vipkey.a.vip.test TXT with an RRSIG
#   dns_validates NAME TYPE [SERVER]   delv, from the anchor alone, proves the answer of
#                          SERVER (default: the zone's server); BIND's validator, to cross-check vipd's
#   dns_start_forged e "b IN A 192.0.2.50"   an attacker's named on e, at e's address:
#                          an unsigned vip.test of the zone's head (SOA, NS, legacy hosts) and
#                          the given record lines (in $DNS_DIR/forged-e). Stopped at exit.
#   vipd_start a [EXTRA]   vipd on a (config in $DNS_DIR/a/vipd.toml, EXTRA appended to it;
#                          log in $DNS_DIR/a/vipd.log); a's resolv.conf points at its stub
#   VIPD_UPSTREAM[a]=ADDR:53   a's vipd asks ADDR, not the zone's server (updates still go there)
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
  local vip_hosts=$1 legacy_hosts=${2:-} signed=${3:-} h
  DNS_LEGACY_HOSTS=$legacy_hosts
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
    if [ -n "$signed" ]; then
      echo "  dnssec-policy default;"
      echo "  inline-signing no;"
      echo "  key-directory \"$DNS_DIR/named\";"
    fi
    echo "};"
  } > "$DNS_DIR/named.conf"
  _dns_zone_head > "$DNS_DIR/named/$DNS_ZONE.db"
  for h in $vip_hosts $legacy_hosts; do
    mkdir -p "/etc/netns/$TOPO_PREFIX$h"
    echo "nameserver $TOPO_DNS_ADDR" > "/etc/netns/$TOPO_PREFIX$h/resolv.conf"
  done
  ip netns exec "${TOPO_PREFIX}dns" named -g -c "$DNS_DIR/named.conf" > "$DNS_DIR/named.log" 2>&1 &
  DNS_NAMED_PID=$!
  at_exit dns_stop
  [ -n "$signed" ] && { _dns_wait_signed; return; }
  eventually 20 on dns dig +short +tries=1 +timeout=1 "@$TOPO_DNS_ADDR" "$DNS_ZONE" SOA >/dev/null
}

# The zone file's head: SOA, NS and the legacy hosts' A records (also the forged zone's).
_dns_zone_head() {
  local h
  echo "\$TTL 30"
  echo "@ IN SOA ns.$DNS_ZONE. hostmaster.$DNS_ZONE. 1 60 60 600 5"
  echo "@ IN NS ns.$DNS_ZONE."
  echo "ns IN A $TOPO_DNS_ADDR"
  for h in ${DNS_LEGACY_HOSTS:-}; do echo "$h IN A $(topo_addr "$h")"; done
}

# The zone's server answers NAME TYPE with an RRSIG over it.
_dns_rrsig() {
  on dns dig +dnssec +norec +noall +answer +tries=1 +timeout=2 "@$TOPO_DNS_ADDR" "$1" "$2" |
    grep -qE "[[:space:]]RRSIG[[:space:]]+$2[[:space:]]"
}
dns_signed() { _dns_rrsig "$DNS_ZONE" SOA; }
key_signed() { _dns_rrsig "_vipkey.$1.$DNS_ZONE" TXT; }
dns_validates() {
  on dns timeout 20 delv -a "$DNS_DIR/trust-anchor.conf" "+root=$DNS_ZONE" "@${3:-$TOPO_DNS_ADDR}" "$1" "$2" 2>&1 |
    grep -q "^; fully validated"
}

# named makes the key and signs the zone after loading it: 0.1 s natively, about 2 s under
# TCG (2026-12-07). Then the anchor: the zone's DNSKEY lines, from the key directory.
_dns_wait_signed() {
  local t0 ms
  t0=$(_uptime_cs)
  if ! eventually 60 dns_signed; then
    diag "named did not sign $DNS_ZONE within 60 s"
    return 1
  fi
  ms=$((($(_uptime_cs) - t0) * 10))
  grep -h ' DNSKEY ' "$DNS_DIR/named/K$DNS_ZONE".+013+*.key > "$DNS_DIR/trust-anchor.key" || return 1
  export DNS_ANCHOR=$DNS_DIR/trust-anchor.key
  # The same keys as delv reads them (named.conf syntax, base64 in one piece).
  awk '{ k = ""; for (i = 8; i <= NF; i++) k = k $i
         printf "trust-anchors { %s static-key %s %s %s \"%s\"; };\n", $1, $5, $6, $7, k }' \
    "$DNS_ANCHOR" > "$DNS_DIR/trust-anchor.conf"
  diag "named signed $DNS_ZONE ${ms} ms after it started; anchor: $(cut -c1-60 "$DNS_ANCHOR")..."
}

# dns_start_forged HOST RECORDS: an attacker's unsigned vip.test on HOST (after dns_start,
# which empties $DNS_DIR): as if HOST controlled or stripped a resolver.
declare -A DNS_FORGED_PID=()
dns_start_forged() {
  local host=$1 records=$2 dir=$DNS_DIR/forged-$1 addr
  addr=$(topo_addr "$host")
  mkdir -p "$dir"
  cat > "$dir/named.conf" <<EOF
options {
  directory "$dir";
  pid-file "$dir/named.pid";
  session-keyfile "$dir/session.key";
  listen-on { $addr; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no;
};
zone "$DNS_ZONE" { type primary; file "$dir/$DNS_ZONE.db"; };
EOF
  { _dns_zone_head; printf '%s\n' "$records"; } > "$dir/$DNS_ZONE.db"
  ip netns exec "$TOPO_PREFIX$host" named -g -c "$dir/named.conf" > "$dir/named.log" 2>&1 &
  DNS_FORGED_PID[$host]=$!
  at_exit dns_stop_forged "$host"
  eventually 20 on "$host" dig +short +tries=1 +timeout=1 "@$addr" "$DNS_ZONE" SOA >/dev/null
}
dns_stop_forged() {
  local pid=${DNS_FORGED_PID[$1]:-}
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  unset "DNS_FORGED_PID[$1]"
  return 0
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

# VIPD_UPSTREAM[a]=ADDR:53 before vipd_start a: a's vipd asks ADDR (a forged resolver, say)
# instead of the zone's server, and still sends its updates to the zone's server.
declare -A VIPD_UPSTREAM=()
vipd_config() {
  local h=$1 update_server=
  [ -n "${VIPD_UPSTREAM[$1]:-}" ] && update_server="server = \"$TOPO_DNS_ADDR:53\""$'\n'
  cat <<EOF
fqdn = "$h.$DNS_ZONE"
state_dir = "$DNS_DIR/$h/state"
control_socket = "$DNS_DIR/$h/control.sock"

[stub]
listen = ["127.0.0.53:53"]

[upstream]
servers = ["${VIPD_UPSTREAM[$h]:-$TOPO_DNS_ADDR:53}"]
timeout_ms = 1000

[update]
key_file = "$DNS_DIR/$h/$h.key"
${update_server}ttl = 5

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
