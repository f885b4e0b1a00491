#!/usr/bin/env bash
# Lookup benchmark against a real BIND 9: a first-contact lookup through A's vipd stub (the
# stub's two parallel queries plus the VIP negotiation with the peer) against a plain
# lookup of the same name straight at BIND, as a ratio and in extra round trips to the
# peer (target: at most one); and cached lookups at the stub (target <= 100 us each).
# Links carry netem delay so that round trips stand out from the emulator's noise: the DNS
# server's link BENCH_DNS_DELAY each way, each peer's link BENCH_PEER_DELAY each way (A's
# own link none). Every first contact uses a peer A has never negotiated with.
# timeout: 900
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/dns.sh"
tap_plan 3
PEERS=${BENCH_PEERS:-5}
CACHED=${BENCH_CACHED:-1000}
PLAIN_PER_PEER=${BENCH_PLAIN:-5}
DNS_DELAY=${BENCH_DNS_DELAY:-10ms}
PEER_DELAY=${BENCH_PEER_DELAY:-5ms}

# The timings need a fine clock: the emulated TSC, unless the kernel gave up on it.
CS=/sys/devices/system/clocksource/clocksource0/current_clocksource
diag "clocksource at start: $(cat $CS)"
vip_unload; vip_load
at_exit vip_unload
# A and a legacy host l, then the fresh peers p1..pN on alternating LANs.
peers=() specs=(a:1 l:2)
for i in $(seq "$PEERS"); do peers+=("p$i"); specs+=("p$i:$((i % 2 + 1))"); done
topo_create "${specs[@]}" dns
dns_start "a ${peers[*]}" "l"
started=1
for h in a "${peers[@]}"; do vipd_start "$h" || started=0; done
if ((started)); then ok "BIND and vipd on A and $PEERS peers started"; else not_ok "BIND and vipd on A and $PEERS peers started"; fi

# Delay: the DNS server's link (both directions), and each peer's link.
on dns tc qdisc replace dev eth0 root netem delay "$DNS_DELAY"
on r tc qdisc replace dev dns-eth0 root netem delay "$DNS_DELAY"
for p in "${peers[@]}"; do topo_netem "$p" "${_topo_host_lan[$p]}" "delay $PEER_DELAY"; done

# dnsq SERVER NAME COUNT: COUNT A queries for NAME over UDP, one after another; prints the
# first answer's address (or rcode=N) and then each query's time in microseconds.
DNSQ=$(mktemp /tmp/dnsq.XXXXXX.py)
at_exit rm -f "$DNSQ"
cat > "$DNSQ" <<'EOF'
import random, socket, struct, sys, time
server, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.connect((server, 53))
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
def skip_name(m, i):
    while True:
        n = m[i]
        if n == 0: return i + 1
        if n & 0xC0: return i + 2
        i += n + 1
def answer(m):
    if m[3] & 0x0F: return f"rcode={m[3] & 0x0F}"
    qd, an = struct.unpack(">HH", m[4:8])
    i = 12
    for _ in range(qd): i = skip_name(m, i) + 4
    for _ in range(an):
        i = skip_name(m, i)
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", m[i:i + 10]); i += 10
        if typ == 1 and rdlen == 4: return socket.inet_ntoa(m[i:i + 4])
        i += rdlen
    return "noanswer"
times, first = [], None
for _ in range(count):
    qid = random.getrandbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    t0 = time.perf_counter()
    s.send(q)
    while True:
        m = s.recv(4096)
        if len(m) >= 12 and struct.unpack(">H", m[:2])[0] == qid: break
    times.append((time.perf_counter() - t0) * 1e6)
    if first is None: first = answer(m)
print(first, *(f"{t:.0f}" for t in times))
EOF
dnsq() { on a python3 "$DNSQ" "$@"; }
# Statistics over whitespace-separated numbers on stdin.
stats() { python3 -c '
import statistics, sys
v = sorted(float(x) for x in sys.stdin.read().split())
what = sys.argv[1]
if what == "mean": print(f"{statistics.mean(v):.1f}")
elif what == "median": print(f"{statistics.median(v):.1f}")
else: print(f"{v[min(len(v) - 1, int(len(v) * float(what) / 100))]:.1f}")' "$1"; }
calc() { python3 -c "print(f'{$1:.${2:-2}f}')"; }
ping_ms() { on "$1" ping -q -c 20 -i 0.05 "$2" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p'; }
established() { grep "mapping established" "$DNS_DIR/a/vipd.log" | grep -c "$1\.$DNS_ZONE"; }
in_range() { [[ $1 =~ ^2(4[0-9]|5[0-5])\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }

rtt_dns=$(ping_ms a "$TOPO_DNS_ADDR")
rtt_peer=$(ping_ms a "$(topo_addr p1)")
rtt_peer_dns=$(ping_ms p1 "$TOPO_DNS_ADDR")
# Warm-up: the stub's first forwarded query and python's start-up are not measured.
dnsq 127.0.0.53 "l.$DNS_ZONE" 3 >/dev/null
legacy_stub=$(dnsq 127.0.0.53 "l.$DNS_ZONE" "$PLAIN_PER_PEER" | cut -d' ' -f2-)
legacy_bind=$(dnsq "$TOPO_DNS_ADDR" "l.$DNS_ZONE" "$PLAIN_PER_PEER" | cut -d' ' -f2-)

# A packet capture on A and on p1 during the first contact with p1, to see where the time goes.
CAP=$(mktemp -d /tmp/lookup-cap.XXXXXX)
declare -A CAP_PID=()
at_exit rm -rf "$CAP"
cap_start() {
  local h
  for h in a p1; do
    # Not through `on`: $! must be tcpdump itself.
    ip netns exec "$TOPO_PREFIX$h" tcpdump -i any -n -tt -l udp > "$CAP/$h" 2> "$CAP/$h.err" &
    CAP_PID[$h]=$!
  done
  for h in a p1; do eventually 20 grep -q listening "$CAP/$h.err"; done
}
cap_stop() {
  sleep 0.5
  local h
  for h in a p1; do kill "${CAP_PID[$h]}"; wait "${CAP_PID[$h]}"; done
  # Packets (tcpdump's epoch times) and the daemons' log lines about each other (UTC) merged.
  grep "p1\.$DNS_ZONE" "$DNS_DIR/a/vipd.log" > "$CAP/a.log"
  grep "a\.$DNS_ZONE" "$DNS_DIR/p1/vipd.log" > "$CAP/p1.log"
  python3 - "$CAP" > "$CAP/timeline" <<'PY'
import datetime, re, sys
d, ev = sys.argv[1], []
for h in ("a", "p1"):
    for line in open(f"{d}/{h}"):
        t, _, rest = line.strip().partition(" ")
        if rest: ev.append((float(t), h, rest))
    for line in open(f"{d}/{h}.log"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line.strip())
        m = re.match(r"(\S+Z)\s+\w+\s+\S+ (.*)", line)
        if m:
            t = datetime.datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp()
            ev.append((t, h, "log: " + m[2][:110]))
ev.sort()
t0 = next(t for t, h, r in ev if "lo" in r.split()[:1])
for t, h, r in ev:
    if t >= t0 - 0.001: print(f"{(t - t0) * 1000:8.1f} ms  {h:2} {r}")
PY
}

plain_ms="" first_ms="" valid=1
for p in "${peers[@]}"; do
  name=$p.$DNS_ZONE
  plain=$(dnsq "$TOPO_DNS_ADDR" "$name" "$PLAIN_PER_PEER" | cut -d' ' -f2- | stats median)
  [ "$p" = p1 ] && cap_start
  before=$(established "$p")
  out=$(dnsq 127.0.0.53 "$name" 1)  # (no process substitution: the guest has no /dev/fd)
  read -r vip us <<<"$out"
  after=$(established "$p")
  [ "$p" = p1 ] && cap_stop
  diag "$(printf '%-3s plain %7.1f ms   first contact %7.1f ms   answer %s   new mappings logged: %s' \
    "$p" "$(calc "$plain / 1000" 1)" "$(calc "$us / 1000" 1)" "$vip" $((after - before)))"
  in_range "$vip" && ((after == before + 1)) || valid=0
  plain_ms+="$(calc "$plain / 1000" 3) " first_ms+="$(calc "$us / 1000" 3) "
done
if ((valid)); then ok "every first-contact lookup answered a VIP negotiated just then"
else not_ok "every first-contact lookup answered a VIP negotiated just then"; fi

# Cached: the stub answers from its table (p1 negotiated above).
cached=$(dnsq 127.0.0.53 "p1.$DNS_ZONE" "$CACHED" | cut -d' ' -f2-)
# The floor under that: the same client against a bare UDP echo on A's loopback.
ip netns exec "${TOPO_PREFIX}a" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.2", 53))
while True:
    m, peer = s.recvfrom(4096); s.sendto(m, peer)' &
echo_pid=$!
sleep 1
echoed=$(dnsq 127.0.0.2 "p1.$DNS_ZONE" "$CACHED" | cut -d' ' -f2-)
kill "$echo_pid"; wait "$echo_pid" 2>/dev/null
c_mean=$(stats mean <<<"$cached") c_med=$(stats median <<<"$cached") c_p99=$(stats 99 <<<"$cached")

P=$(stats median <<<"$plain_ms") F=$(stats median <<<"$first_ms")
extra=$(calc "($F - $P) / $rtt_peer")
yes_no() { python3 -c "print('yes' if $1 else 'NO')"; }
diag "netem delay: DNS server link $DNS_DELAY each way, peer links $PEER_DELAY each way, A's link none"
diag "RTT (ping) A-DNS ${rtt_dns} ms, A-peer ${rtt_peer} ms, peer-DNS ${rtt_peer_dns} ms"
diag "legacy name: via stub $(stats median <<<"$legacy_stub") us, straight at BIND $(stats median <<<"$legacy_bind") us (medians of $PLAIN_PER_PEER)"
diag "plain lookup at BIND:     $P ms (median; per peer: $plain_ms)"
diag "first contact via stub:   $F ms (median; per peer: $first_ms)"
diag "ratio first/plain:        $(calc "$F / $P")"
diag "extra round trips to the peer: $extra = (first - plain) / A-peer RTT   (target <= 1: $(yes_no "$extra <= 1"))"
diag "cached at stub ($CACHED lookups): mean $c_mean us, median $c_med us, p99 $c_p99 us   (target <= 100 us: mean $(yes_no "$c_mean <= 100"), median $(yes_no "$c_med <= 100"), p99 $(yes_no "$c_p99 <= 100"))"
diag "same client against a bare UDP echo on A's loopback (the emulator's floor): mean $(stats mean <<<"$echoed") us, median $(stats median <<<"$echoed") us, p99 $(stats 99 <<<"$echoed") us"
[[ $(cat $CS) == *jiffies* ]] &&
  diag "the clock is $(cat $CS) (the kernel found the emulated TSC unstable): single timings are whole milliseconds, so the cached median and p99 mean little; the mean of $CACHED is the figure"
diag "the VM emulates its CPU (TCG): microsecond figures are pessimistic against real hardware"
diag "first contact with p1: UDP packets in A and p1 (lo: the stub; port 4877: negotiation; a packet Out of p1 is seen after its ${PEER_DELAY} netem delay) and log lines:"
sed 's/^/#   /' "$CAP/timeline"
diag "clocksource at end: $(cat $CS)"
ok "benchmark ran"
