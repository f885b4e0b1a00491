#!/usr/bin/env bash
# Switching-time benchmark, measured as the paper does (section 5): streams run between A
# and B through vipd and BIND 9 while hosts move, and the switching time is the longest
# silence at a receiver around the move (receiver timestamps; minus the send interval).
# UDP: numbered datagrams every BENCH_INTERVAL ms each way. TCP: a paced stream each way,
# the receiver recording (time, cumulative bytes) per read. One-sided: A moves (both
# directions are measured: toward the mover, which waits for A's hint to reach B, and from
# the mover). Two-sided: A and B move at the same moment (each hint goes to an old address;
# DNS finds the new ones). Each move is break-before-make in one `ip -batch` (address off,
# new address and route on; ip started beforehand reads it from a FIFO), between
# $EPOCHREALTIME stamps T0 (written) and T1 (ip exited).
# Link RTT (A-B) and DNS RTT (A-DNS server) are set with netem: the hosts' links carry a
# quarter of the link RTT each way, the DNS server's link the rest of the DNS RTT. A host's
# link is on its way to the DNS server too, so a 20 ms link gives at least a 10 ms DNS RTT:
# the table shows the RTTs ping measures. After each change of delays both vipds restart
# (their RTT estimates start afresh) and each host makes one warm-up move, whose acked hint
# gives its daemon the new round trip. Each kind of move is made ROUNDS times in a row
# (BENCH_ROUNDS, default 5); the table gives the median, min and max of each cell and,
# for TCP, its median beside UDP's in the same cell (the kernel's kick and loss probe
# should bring TCP within a link RTT + 50 ms of UDP). Samples of the first round's
# one-sided UDP, two-sided UDP and one-sided TCP moves in the BENCH_PLOT configuration go
# out through the console as a gzip+base64 CSV block that `make bench` turns into
# bench-out/switching.png.
# timeout: 3600
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/dns.sh"
source "$(dirname "$0")/../lib/moves.sh"
HELP=$(cd "$(dirname "$0")" && pwd)/switching.py
INTERVAL=${BENCH_INTERVAL:-4}   # ms between datagrams / TCP writes (4: four streams at 2 ms load the emulated CPUs)
AFTER=${BENCH_AFTER:-2.5}       # seconds the streams run on after the move
TCP_CHUNK=${BENCH_TCP_CHUNK:-1000}
# "link RTT ms:DNS RTT ms" configurations, nominal; PLOT picks the one drawn.
CONFIGS=(${BENCH_CONFIGS:-1:1 1:50 20:50 20:1})
PLOT=${BENCH_PLOT:-20:50}
ROUNDS=${BENCH_ROUNDS:-5}
tap_plan $((2 + ${#CONFIGS[@]} * 4 * ROUNDS))

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
vipd_pair_ab
diag "A calls B $VIP_OF_B, B calls A $VIP_OF_A"
W=/tmp/switching
rm -rf "$W"; mkdir -p "$W"

calc() { python3 -c "print(f'{$1:.${2:-1}f}')"; }
ping_ms() { on "$1" ping -q -c 10 -i 0.05 "$2" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p'; }

# set_delays LINK_RTT DNS_RTT (ms, nominal): netem on every host link and the DNS link.
set_delays() {
  local link=$(calc "$1 / 4" 3) dns h lan
  dns=$(calc "max(0.0, ($2 - $1 / 2) / 2)" 3)
  for h in a b; do for lan in 1 2; do topo_netem "$h" "$lan" "delay ${link}ms"; done; done
  on dns tc qdisc replace dev eth0 root netem delay "${dns}ms"
  on r tc qdisc replace dev dns-eth0 root netem delay "${dns}ms"
}

hinted() { grep -c "all active partners hinted" "$DNS_DIR/$1/vipd.log"; }
warm_up_move() { # HOST: a move whose acked hint teaches HOST's vipd the new round trip
  local n
  n=$(hinted "$1")
  fast_move "$1" "$(other "$1")"
  eventually 15 test "$(hinted "$1")" -gt "$n"
}

declare -A LOGPOS=()
log_mark() { local h; for h in a b; do LOGPOS[$h]=$(wc -l < "$DNS_DIR/$h/vipd.log"); done; }
# Where the time went: the daemons' log lines since log_mark, in ms after T1.
log_since() {
  local h
  for h in a b; do
    tail -n +$((LOGPOS[$h] + 1)) "$DNS_DIR/$h/vipd.log" |
      grep -E "our address changed|re-pointed|hinted|DNS updated|no ack|NAK|DNS confirms" |
      python3 "$HELP" logtimes "$T1" | sed "s/^/$h /" | head -12
  done | sort -k2 -g | sed 's/^/#     /'
}

RUN=0
PLOTTED=()
# Per cell ("link:dns|who|proto", in the order first measured): the gaps, RTTs, target.
CELLS=()
declare -A GAPS=() CELL_RTT=() CELL_TARGET=() CELL_PAPER=()
rto_of() { on "$1" ss -tin "dport = :$2" | grep -o 'rto:[0-9.]*' | head -1 | cut -d: -f2; }
# measure PROTO SCENARIO LINK DNS: one move with streams both ways; appends table rows.
measure() {
  local proto=$1 scen=$2 link=$3 dns=$4 port=$((7000 + RUN * 2)) d
  RUN=$((RUN + 1))
  local dir="$W/run$RUN"
  mkdir -p "$dir"
  local stop="$dir/stop" args=()
  on b python3 "$HELP" "$proto-recv" "$port" 60 "$dir/A_to_B.txt" "$dir/rb" "$stop" &
  local rb=$!
  on a python3 "$HELP" "$proto-recv" $((port + 1)) 60 "$dir/B_to_A.txt" "$dir/ra" "$stop" &
  local ra=$!
  eventually 30 test -e "$dir/rb" -a -e "$dir/ra"
  [ "$proto" = tcp ] && args=("$TCP_CHUNK")
  on a timeout 60 python3 "$HELP" "$proto-send" "$VIP_OF_B" "$port" "${args[@]}" "$INTERVAL" 50 "$stop" "$dir/sa" &
  local sa=$!
  on b timeout 60 python3 "$HELP" "$proto-send" "$VIP_OF_A" $((port + 1)) "${args[@]}" "$INTERVAL" 50 "$stop" "$dir/sb" &
  local sb=$!
  eventually 30 test -e "$dir/sa" -a -e "$dir/sb"
  sleep 0.5
  local rto_a="" rto_b=""
  if [ "$proto" = tcp ]; then # the senders' retransmission timeouts before the move
    rto_a=$(rto_of a "$port") rto_b=$(rto_of b $((port + 1)))
  fi
  log_mark
  move "$dir" "$scen" # (starts ip, waits 0.5 s: a second of steady stream before T0)
  sleep "$AFTER"
  if [ "$proto" = tcp ]; then
    diag "  TCP after the move: A $(on a ss -tin "dport = :$port" | grep -o 'rto:[0-9.]*\|retrans:[0-9/]*\|backoff:[0-9]*' | tr '\n' ' ')| B $(on b ss -tin "dport = :$((port + 1))" | grep -o 'rto:[0-9.]*\|retrans:[0-9/]*\|backoff:[0-9]*' | tr '\n' ' ')"
  fi
  local end=$EPOCHREALTIME
  touch "$stop"
  wait $sa $sb 2>/dev/null
  wait $rb $ra 2>/dev/null
  local ok_both=1 label
  diag "run $RUN: $proto, $( [ "$scen" = one ] && echo "one-sided (A moves)" || echo "two-sided (A and B move)"), link RTT ~$link ms, DNS RTT ~$dns ms; the ip batch ran within $(calc "1000 * ($T1 - $T0)") ms"
  for d in A_to_B B_to_A; do
    read -r gap gs ge base n resumed first last <<<"$(python3 "$HELP" analyze "$proto" "$dir/$d.txt" "$T0" "$T1" "$INTERVAL" "$end" 2>/dev/null || echo "nan 0 0 0 0 0 0 0")"
    ((resumed)) || ok_both=0
    local who target met paper rto
    if [ "$scen" = one ]; then
      [ $d = B_to_A ] && who="one-sided, to mover" || who="one-sided, from mover"
    else
      who="two-sided, ${d/_to_/->}"
    fi
    if [ "$proto" = udp ]; then
      if [ "$scen" = one ]; then target=$(calc "$RTT_LINK + 1"); paper=23
      else target=$(calc "2 * $RTT_LINK + $RTT_DNS + 5"); paper=644; fi
      met=$(python3 -c "print('yes' if $gap <= $target else 'NO')" 2>/dev/null || echo "-")
    else
      [ $d = A_to_B ] && rto=$rto_a || rto=$rto_b
      target="(RTO ${rto:-?})"; met="-"
      [ "$scen" = one ] && paper=400 || paper="-"
    fi
    local cell="$link:$dns|$who|$proto"
    if [ -z "${GAPS[$cell]+set}" ]; then
      CELLS+=("$cell") GAPS[$cell]="" CELL_RTT[$cell]="$RTT_LINK $RTT_DNS"
      CELL_TARGET[$cell]=$target CELL_PAPER[$cell]=$paper
    fi
    GAPS[$cell]+=" $gap"
    diag "  ${d/_to_/->}: gap $gap ms (from $gs to $ge ms after T1), $n samples from $first to $last ms, largest gap in the second before: $base ms"
  done
  log_since
  label="$proto-$scen"
  if [ "$link:$dns" = "$PLOT" ] && [ "$label" != tcp-two ] && [ "$ROUND" = 0 ]; then
    PLOTTED+=("$label")
    local title ylabel main=A_to_B
    [ "$scen" = one ] && [ "$proto" = udp ] && main=B_to_A
    if [ "$proto" = udp ]; then ylabel="datagrams received (sequence)"; else ylabel="KiB received (cumulative)"; fi
    [ "$scen" = one ] && title="one-sided move (A moves)" || title="two-sided move (A and B)"
    title+=" / ${proto^^} / link RTT $RTT_LINK ms / DNS RTT $RTT_DNS ms"
    read -r gap gs ge _ <<<"$(python3 "$HELP" analyze "$proto" "$dir/$main.txt" "$T0" "$T1" "$INTERVAL" "$end")"
    {
      echo "#panel,$label,$title,$(calc "1000 * ($T0 - $T1)" 2),$gs,$ge,$ylabel"
      python3 "$HELP" export "$T1" "$label" "$dir/A_to_B.txt" "$dir/B_to_A.txt"
    } >> "$W/plot.csv"
  fi
  local desc="$proto $scen-sided, link ~$link ms, DNS ~$dns ms: both streams resumed after the move"
  if ((ok_both)); then ok "$desc"; else not_ok "$desc"; fi
}

for cfg in "${CONFIGS[@]}"; do
  link=${cfg%%:*} dns=${cfg#*:}
  set_delays "$link" "$dns"
  vipd_stop a; vipd_stop b
  vipd_start a; vipd_start b
  on a ping -c3 -i0.1 -W2 "$VIP_OF_B" > /dev/null # traffic: B is an active partner of A, and A of B
  warm_up_move a || diag "warm-up move of A: no hint logged"
  warm_up_move b || diag "warm-up move of B: no hint logged"
  RTT_LINK=$(ping_ms a "$(topo_addr b)")
  RTT_DNS=$(ping_ms a "$TOPO_DNS_ADDR")
  diag "== link RTT ~$link ms, DNS RTT ~$dns ms: ping A-B $RTT_LINK ms, A-DNS $RTT_DNS ms, B-DNS $(ping_ms b "$TOPO_DNS_ADDR") ms"
  for proto in udp tcp; do
    for scen in one two; do
      for ((ROUND = 0; ROUND < ROUNDS; ROUND++)); do measure "$proto" "$scen" "$link" "$dns"; done
    done
  done
done

diag ""
diag "Switching time (ms): the longest silence at the receiver around the move, minus the"
diag "${INTERVAL} ms send interval; median (min-max) of $ROUNDS moves in a row; RTTs measured by"
diag "ping. Targets (on the median): one-sided UDP <= link RTT + 1, two-sided UDP <= 2 link"
diag "RTT + DNS RTT + 5; TCP <= the same cell's UDP median + link RTT + 50 (issue 9: the kick"
diag "and the loss probe on a re-point; the sender's RTO before the move is shown beside it)."
diag "Paper: one-sided UDP 23, TCP 400, two-sided UDP 644 (PIII 933 MHz, 100 Mbit/s LANs,"
diag "RTT 0.25-0.45 ms)."
for cell in "${CELLS[@]}"; do
  read -r rtt_link rtt_dns <<<"${CELL_RTT[$cell]}"
  udp="${cell%|*}|udp"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$rtt_link" "$rtt_dns" "${GAPS[$cell]}" \
    "${CELL_TARGET[$cell]}" "${CELL_PAPER[$cell]}" "${GAPS[$udp]:-}" "${cell##*|}"
done | python3 "$HELP" table | while IFS= read -r row; do diag "$row"; done
diag "the VM emulates its CPU (TCG): processing times are pessimistic against real hardware"

if [ -s "$W/plot.csv" ]; then
  cp "$W/plot.csv" /run/vip-job/switching.csv 2>/dev/null || true
  diag "BEGIN switching.csv.gz.b64 (make bench extracts this into bench-out/)"
  gzip -9c "$W/plot.csv" | base64 -w 160 | sed 's/^/# /'
  diag "END switching.csv.gz.b64"
  ok "plot samples exported (panels: ${PLOTTED[*]})"
else
  not_ok "plot samples exported"
fi
