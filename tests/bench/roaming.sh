#!/usr/bin/env bash
# VIP beside WireGuard's roaming (issue 13), in the same boot, the same topology and the
# same moves: A and B run vipd (with BIND 9) and a WireGuard tunnel between their physical
# addresses at once; UDP streams run both ways through both (switching.py, every INTERVAL
# ms) while hosts move, break-before-make (tests/lib/moves.sh). The gap is the longest
# silence at a receiver around the move, minus the send interval, as in switching.sh.
#   one-sided    A moves. WireGuard roams: B takes A's new address from A's first
#                authenticated packet, so toward the mover it waits for A's next datagram.
#   two-sided    A and B move at once: each side's packets go to the other's old address.
#                WireGuard learns endpoints only from packets, so it needs DNS names and a
#                periodic re-resolve, run every RERESOLVE seconds in two variants:
#     reresolve-dns.sh   wireguard-tools' contrib script: it re-resolves a peer only once
#                its last handshake is more than 135 s old (so that a roamed endpoint is
#                not replaced by a stale DNS answer);
#     every period       the endpoint set from DNS every RERESOLVE s whatever the handshake.
# WireGuard's endpoint names resolve at the DNS server itself (vipd updates the same A
# records on every move); its endpoints are reset between moves so that each move starts
# from a working tunnel. MPTCP (TCP) is not measured yet.
# timeout: 1800
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/dns.sh"
source "$(dirname "$0")/../lib/moves.sh"
HELP=$(cd "$(dirname "$0")" && pwd)/switching.py
ROUNDS=${BENCH_ROUNDS:-5}
INTERVAL=${BENCH_INTERVAL:-5}     # ms between datagrams, on each of four streams
RERESOLVE=${BENCH_WG_RERESOLVE:-5}
AFTER_ONE=2.5                     # seconds the streams run on after a one-sided move
AFTER_TWO=$((RERESOLVE * 2 + 3))  # ... after a two-sided one: two re-resolve periods and more
tap_plan 5

vip_unload; vip_load
at_exit vip_unload
kmod wireguard
topo_create a:1 b:2 dns
vipd_pair_ab

# WireGuard: wg0 10.99.0.1 (A) and .2 (B), no keepalive (as by default).
declare -A WG_KEY=([a]=$(wg genkey) [b]=$(wg genkey)) WG_PUB=() WG_ADDR=([a]=10.99.0.1 [b]=10.99.0.2)
for h in a b; do WG_PUB[$h]=$(wg pubkey <<<"${WG_KEY[$h]}"); done
peer_of() { [ "$1" = a ] && echo b || echo a; }
wg_endpoints() { # each side's endpoint: the other's current physical address
  local h p
  for h in a b; do
    p=$(peer_of $h)
    on $h wg set wg0 peer "${WG_PUB[$p]}" endpoint "$(topo_addr "$p"):51820"
  done
}
for h in a b; do
  p=$(peer_of $h)
  on $h ip link add wg0 type wireguard
  on $h wg set wg0 listen-port 51820 private-key <(echo "${WG_KEY[$h]}") \
    peer "${WG_PUB[$p]}" allowed-ips "${WG_ADDR[$p]}/32"
  on $h ip addr add "${WG_ADDR[$h]}/24" dev wg0
  on $h ip link set wg0 up
done
wg_endpoints
check "WireGuard between A and B works" on a ping -c2 -i0.2 -W2 10.99.0.2

# The re-resolve loop on HOST, in VARIANT (contrib or always), in the background.
RESOLVERS=()
reresolve_start() {
  local h=$1 variant=$2 p
  p=$(peer_of "$h")
  ip netns exec "$TOPO_PREFIX$h" bash -c '
    pub=$1 name=$2 dns=$3 period=$4 variant=$5
    while :; do
      sleep "$period"
      if [ "$variant" = contrib ]; then
        last=$(wg show wg0 latest-handshakes | awk -v k="$pub" "\$1 == k { print \$2 }")
        (( EPOCHSECONDS - ${last:-0} > 135 )) || continue
      fi
      addr=$(dig +short +time=1 +tries=1 "@$dns" "$name" A | head -1)
      [ -n "$addr" ] && wg set wg0 peer "$pub" endpoint "$addr:51820"
    done' reresolve "${WG_PUB[$p]}" "$p.$DNS_ZONE" "$TOPO_DNS_ADDR" "$RERESOLVE" "$2" &
  RESOLVERS+=($!)
}
# (An empty list must not reach `wait`: with no arguments it waits for every child, vipd too.)
reresolve_stop() {
  ((${#RESOLVERS[@]})) || return 0
  kill "${RESOLVERS[@]}" 2>/dev/null; wait "${RESOLVERS[@]}" 2>/dev/null; RESOLVERS=()
}
at_exit reresolve_stop

W=/tmp/roaming
rm -rf "$W"; mkdir -p "$W"
RUN=0
declare -A SAMPLES=() NOT_RESUMED=()
VIP_FAILED=0
# measure SERIES SCENARIO AFTER: one move with four streams; gaps appended to SAMPLES.
measure() {
  local series=$1 scen=$2 after=$3 port=$((7000 + RUN * 4)) i
  RUN=$((RUN + 1))
  local dir="$W/run$RUN" stop
  mkdir -p "$dir"; stop="$dir/stop"
  # stream NAME RECEIVER PORT SENDER TARGET
  local -a streams=("vip:A->B b $port a $VIP_OF_B" "vip:B->A a $((port + 1)) b $VIP_OF_A"
    "wg:A->B b $((port + 2)) a 10.99.0.2" "wg:B->A a $((port + 3)) b 10.99.0.1")
  local pids=() s name rx rport tx target
  for i in "${!streams[@]}"; do
    read -r name rx rport tx target <<<"${streams[$i]}"
    on "$rx" python3 "$HELP" udp-recv "$rport" 90 "$dir/$i.txt" "$dir/ready$i" "$stop" & pids+=($!)
  done
  for i in "${!streams[@]}"; do eventually 30 test -e "$dir/ready$i"; done
  for i in "${!streams[@]}"; do
    read -r name rx rport tx target <<<"${streams[$i]}"
    on "$tx" timeout 90 python3 "$HELP" udp-send "$target" "$rport" "$INTERVAL" 80 "$stop" "$dir/started$i" & pids+=($!)
  done
  for i in "${!streams[@]}"; do eventually 30 test -e "$dir/started$i"; done
  sleep 0.5
  move "$dir" "$scen"
  sleep "$after"
  touch "$stop"
  wait "${pids[@]}" 2>/dev/null
  local line="run $RUN ($series):"
  for i in "${!streams[@]}"; do
    read -r name _ <<<"${streams[$i]}"
    read -r gap _ _ _ _ resumed _ <<<"$(python3 "$HELP" analyze udp "$dir/$i.txt" "$T0" "$T1" "$INTERVAL" 2>/dev/null || echo "nan 0 0 0 0 0 0 0")"
    local key="$series|${name%%:*}|${name#*:}"
    if ((resumed)); then SAMPLES[$key]+="$gap "
    else NOT_RESUMED[$key]=$((${NOT_RESUMED[$key]:-0} + 1)); [ "${name%%:*}" = vip ] && VIP_FAILED=1; fi
    line+=" $name $( ((resumed)) && echo "$gap ms" || echo "not resumed in ${after} s")"
  done
  diag "$line"
}

for ((r = 0; r < ROUNDS; r++)); do measure one-sided one "$AFTER_ONE"; done
for variant in contrib always; do
  reresolve_start a $variant; reresolve_start b $variant
  for ((r = 0; r < ROUNDS; r++)); do
    measure "two-sided, re-resolve: $variant" two "$AFTER_TWO"
    wg_endpoints # the next move starts from a working tunnel
  done
  reresolve_stop
done

stats() { python3 -c '
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print("%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v)) if v else "-")' $1; }
median() { python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(statistics.median(v) if v else "nan")' $1; }
ratio() { python3 -c "a, b = float('$1'), float('$2'); print('%.2fx' % (a / b) if a == a and b == b and b > 0 else '-')"; }
diag ""
diag "Switching gap (ms, median (min-max) of the moves that recovered, $ROUNDS moves a series; link"
diag "and DNS RTT about 1 ms; re-resolve every $RERESOLVE s; 'lost' counts moves after which the"
diag "stream did not resume within the window: $AFTER_ONE s one-sided, $AFTER_TWO s two-sided)"
diag "$(printf '%-34s %-5s %-20s %-6s %-20s %-6s %s' series dir VIP lost WireGuard lost VIP/WG)"
for series in one-sided "two-sided, re-resolve: contrib" "two-sided, re-resolve: always"; do
  for d in "A->B" "B->A"; do
    v=${SAMPLES["$series|vip|$d"]:-} w=${SAMPLES["$series|wg|$d"]:-}
    diag "$(printf '%-34s %-5s %-20s %-6s %-20s %-6s %s' "$series" "$d" "$(stats "$v")" "${NOT_RESUMED["$series|vip|$d"]:-0}" \
      "$(stats "$w")" "${NOT_RESUMED["$series|wg|$d"]:-0}" "$(ratio "$(median "$v")" "$(median "$w")")")"
  done
done
diag "one-sided: A moves (A->B is from the mover, B->A toward it). The VM emulates its CPU (TCG)."
check "VIP's streams resumed after every move" test "$VIP_FAILED" = 0
check "every series measured ($RUN moves)" test "$RUN" = $((ROUNDS * 3))
check "vipd still reaches B by name" on a ping -c2 -i0.2 -W2 "b.$DNS_ZONE"
