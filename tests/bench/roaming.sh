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
# from a working tunnel.
# TCP: VIP beside MPTCP (the kernel's in-kernel path manager) in the same moves, paced
# streams both ways (tcp-send/tcp-recv through VIP, as switching.sh; over MPTCP between the
# physical addresses, both connections opened by A, the mover, as MPTCP expects of a mobile
# client). MPTCP gets what mptcpd would do on address events, inside the move's own ip
# batch (tests/lib/moves.sh, MOVE_MPTCP): the old address's endpoint deleted, which closes
# its subflows, and the new address's added, which opens a subflow from it to B (A) or
# announces it (B). Series: one-sided break-before-make; one-sided make-before-break (the
# new address and route up MAKE_OVERLAP s before the old address goes); two-sided.
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
AFTER_TCP=${BENCH_AFTER_TCP:-6}   # ... after a TCP move (TCP's retransmission backoff)
TCP_CHUNK=${BENCH_TCP_CHUNK:-1000}
PARTS=${BENCH_ROAMING_PARTS:-udp tcp} # either or both
tap_plan 7

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
declare -A SAMPLES=() NOT_RESUMED=() FIRST=()
VIP_FAILED=0 ROUND=0
# record KEY GAP RESUMED: a series' first move (ROUND 0, after the streams were idle) goes
# to FIRST, the others to SAMPLES or NOT_RESUMED.
record() {
  local key=$1 gap=$2 resumed=$3
  ((resumed)) || [[ $key != *"|vip|"* ]] || VIP_FAILED=1
  if ((ROUND == 0)); then FIRST[$key]=$( ((resumed)) && echo "$gap" || echo lost)
  elif ((resumed)); then SAMPLES[$key]+="$gap "
  else NOT_RESUMED[$key]=$((${NOT_RESUMED[$key]:-0} + 1)); fi
}
# report KIND SERIES DIR AFTER SUFFIX NAME...: each stream's gap (stream i's receiver
# wrote DIR/i.txt) recorded, and the move's line ("run N (SERIES): NAME GAP ms ... SUFFIX")
# printed. (Not to be called in a command substitution: record sets globals.)
report() {
  local kind=$1 series=$2 dir=$3 after=$4 suffix=$5 i=0 name gap resumed line; shift 5
  line="run $RUN ($series):"
  for name in "$@"; do
    read -r gap _ _ _ _ resumed _ <<<"$(python3 "$HELP" analyze "$kind" "$dir/$i.txt" "$T0" "$T1" "$INTERVAL" "$END" 2>/dev/null || echo "nan 0 0 0 0 0 0 0")"
    record "$series|${name%%:*}|${name#*:}" "$gap" "$resumed"
    line+=" $name $( ((resumed)) && echo "$gap ms" || echo "not resumed in ${after} s")"
    i=$((i + 1))
  done
  diag "$line${suffix:+ $suffix}"
}
# stop_streams STOP PID...: the streams told to stop at END; those still running 5 s later
# (a sender blocked on a connection that never recovered) are killed.
stop_streams() {
  local stop=$1 i p alive; shift
  END=$EPOCHREALTIME
  touch "$stop"
  for ((i = 0; i < 50; i++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill "$@" 2>/dev/null
  wait "$@" 2>/dev/null
}
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
  stop_streams "$stop" "${pids[@]}"
  local names=() s
  for s in "${streams[@]}"; do names+=("${s%% *}"); done
  report udp "$series" "$dir" "$after" "" "${names[@]}"
}

SERIES=0
if [[ $PARTS == *udp* ]]; then
SERIES=$((SERIES + 3))
for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do measure one-sided one "$AFTER_ONE"; done
for variant in contrib always; do
  reresolve_start a $variant; reresolve_start b $variant
  for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do
    measure "two-sided, re-resolve: $variant" two "$AFTER_TWO"
    wg_endpoints # the next move starts from a working tunnel
  done
  reresolve_stop
done
fi

# mib HOST COUNTER: a counter of HOST's namespace (nstat: absolute, zeroes included).
mib() { on "$1" nstat -az "$2" | awk -v c="$2" '$1 == c { print $2 }'; }
# measure_tcp SERIES SCENARIO AFTER: as measure, with TCP through VIP and over MPTCP.
measure_tcp() {
  local series=$1 scen=$2 after=$3 port=$((7000 + RUN * 4)) i
  RUN=$((RUN + 1))
  local dir="$W/run$RUN" stop B_ADDR
  mkdir -p "$dir"; stop="$dir/stop"; B_ADDR=$(topo_addr b)
  local -a names=("vip:A->B" "vip:B->A" "mptcp:A->B" "mptcp:B->A") pids=()
  local capable joins
  capable=$(mib a MPTcpExtMPCapableSYNACKRX) joins=$(mib a MPTcpExtMPJoinSynAckRx)
  # The listening side of each stream, then the connecting side.
  on b python3 "$HELP" tcp-recv "$port" 90 "$dir/0.txt" "$dir/ready0" "$stop" & pids+=($!)
  on a python3 "$HELP" tcp-recv $((port + 1)) 90 "$dir/1.txt" "$dir/ready1" "$stop" & pids+=($!)
  on b python3 "$HELP" tcp-recv $((port + 2)) 90 "$dir/2.txt" "$dir/ready2" "$stop" mptcp & pids+=($!)
  on b timeout 90 python3 "$HELP" tcp-serve $((port + 3)) "$TCP_CHUNK" "$INTERVAL" 80 "$stop" "$dir/ready3" "$dir/started3" mptcp & pids+=($!)
  for i in 0 1 2 3; do eventually 30 test -e "$dir/ready$i"; done
  on a timeout 90 python3 "$HELP" tcp-send "$VIP_OF_B" "$port" "$TCP_CHUNK" "$INTERVAL" 80 "$stop" "$dir/started0" & pids+=($!)
  on b timeout 90 python3 "$HELP" tcp-send "$VIP_OF_A" $((port + 1)) "$TCP_CHUNK" "$INTERVAL" 80 "$stop" "$dir/started1" & pids+=($!)
  on a timeout 90 python3 "$HELP" tcp-send "$B_ADDR" $((port + 2)) "$TCP_CHUNK" "$INTERVAL" 80 "$stop" "$dir/started2" mptcp & pids+=($!)
  on a python3 "$HELP" tcp-fetch "$B_ADDR" $((port + 3)) 90 "$dir/3.txt" "$stop" mptcp & pids+=($!)
  for i in 0 1 2 3; do eventually 30 test -e "$dir/started$i"; done
  sleep 0.5
  move "$dir" "$scen"
  sleep "$after"
  stop_streams "$stop" "${pids[@]}"
  # Both MPTCP connections negotiated MPTCP (A got MP_CAPABLE in the SYN/ACK), no fallback.
  MPTCP_CONNS=$((MPTCP_CONNS + $(mib a MPTcpExtMPCapableSYNACKRX) - capable))
  joins=$(($(mib a MPTcpExtMPJoinSynAckRx) - joins))
  MPTCP_JOINS=$((MPTCP_JOINS + joins))
  report tcp "$series" "$dir" "$after" "(MPTCP subflows joined: $joins)" "${names[@]}"
}

MPTCP_CONNS=0 MPTCP_JOINS=0
TCP_SERIES=("TCP one-sided" "TCP one-sided, make-before-break" "TCP two-sided")
if [[ $PARTS == *tcp* ]]; then
SERIES=$((SERIES + 3))
MOVE_MPTCP=1
mptcp_endpoints a b
for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do measure_tcp "TCP one-sided" one "$AFTER_TCP"; done
for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do measure_tcp "TCP one-sided, make-before-break" make "$AFTER_TCP"; done
for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do measure_tcp "TCP two-sided" two "$AFTER_TCP"; done
unset MOVE_MPTCP
fi

stats() { python3 -c '
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print("%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v)) if v else "-")' $1; }
median() { python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(statistics.median(v) if v else "nan")' $1; }
ratio() { python3 -c "a, b = float('$1'), float('$2'); print('%.2fx' % (a / b) if a == a and b == b and b > 0 else '-')"; }
diag ""
diag "Switching gap (ms; 'first': a series' first move, its streams idle before; then the median"
diag "(min-max) of the other $((ROUNDS - 1)) moves that recovered and 'lost', those after which the stream"
diag "did not resume within the window: $AFTER_ONE s one-sided, $AFTER_TWO s two-sided); link and DNS RTT"
diag "about 1 ms; WireGuard re-resolves every $RERESOLVE s)"
table() { # PEER PEER_LABEL SERIES...
  local peer=$1 label=$2 series d v w; shift 2
  local f='%-32s %-4s | %-7s %-20s %-4s | %-7s %-20s %-4s | %s'
  diag "$(printf "$f" series dir "VIP" "" "" "$label" "" "" "")"
  diag "$(printf "$f" "" "" first "median (min-max)" lost first "median (min-max)" lost "VIP/$label")"
  for series in "$@"; do
    for d in "A->B" "B->A"; do
      v=${SAMPLES["$series|vip|$d"]:-} w=${SAMPLES["$series|$peer|$d"]:-}
      diag "$(printf "$f" "$series" "$d" "${FIRST["$series|vip|$d"]:--}" "$(stats "$v")" "${NOT_RESUMED["$series|vip|$d"]:-0}" \
        "${FIRST["$series|$peer|$d"]:--}" "$(stats "$w")" "${NOT_RESUMED["$series|$peer|$d"]:-0}" "$(ratio "$(median "$v")" "$(median "$w")")")"
    done
  done
}
table wg WireGuard one-sided "two-sided, re-resolve: contrib" "two-sided, re-resolve: always"
diag ""
diag "TCP: the longest silence at the receiver (ms), 'lost' as above within $AFTER_TCP s"
table mptcp MPTCP "${TCP_SERIES[@]}"
diag "one-sided: A moves (A->B is from the mover, B->A toward it). The VM emulates its CPU (TCG)."
check "VIP's streams resumed after every move" test "$VIP_FAILED" = 0
check "every series measured ($RUN moves, parts: $PARTS)" test "$RUN" = $((ROUNDS * SERIES))
if [[ $PARTS == *tcp* ]]; then
  check "the MPTCP streams negotiated MPTCP, 2 a move ($MPTCP_CONNS of $((ROUNDS * 3 * 2)))" test "$MPTCP_CONNS" -ge $((ROUNDS * 3 * 2))
  check "MPTCP opened subflows from A's new addresses ($MPTCP_JOINS)" test "$MPTCP_JOINS" -gt 0
else
  ok "MPTCP negotiated # SKIP BENCH_ROAMING_PARTS=$PARTS"; ok "MPTCP subflows # SKIP BENCH_ROAMING_PARTS=$PARTS"
fi
check "vipd still reaches B by name" on a ping -c2 -i0.2 -W2 "b.$DNS_ZONE"
