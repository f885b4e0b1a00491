#!/usr/bin/env bash
# Address-change detection (issue 13, item 3): how long after the kernel has A's new address
# A's first hint leaves, and where the time goes. A and B are paired and exchange pings (B
# is an active partner); A moves break-before-make BENCH_MOVES times between its LANs (one
# `ip -batch` started beforehand: T0 the batch written, T1 ip exited, by when the new
# address and route are in the kernel and their notifications sent). For each move:
#   noticed  vipd's engine logs "our address changed" (rtnetlink delivered, the source
#            address toward the DNS server worked out, the engine's queue);
#   table    the kernel's table read for the Active Partner List ("after_ms" of
#            "hinting the active partners");
#   wire     the first datagram from A's new address to port 4877, in a capture on A's new
#            link (tcpdump's time; one clock in the guest).
# Times are from T1 (and T0, to bound the kernel's own share). Target: a hint leaves within
# 5 ms of the kernel's notification. The VM is emulated (TCG).
# timeout: 900
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/topology.sh"
source "$(dirname "$0")/../lib/dns.sh"
source "$(dirname "$0")/../lib/moves.sh"
MOVES=${BENCH_MOVES:-10}
tap_plan 3

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
vipd_pair_ab
W=/tmp/detect
rm -rf "$W"; mkdir -p "$W"

# The newest vipd log line of A with PATTERN, after line MARK: its time (epoch seconds) and
# the line.
log_after() {
  tail -n +$(($1 + 1)) "$DNS_DIR/a/vipd.log" | grep -- "$2" | head -1 | python3 -c '
import datetime, re, sys
line = re.sub(r"\x1b\[[0-9;]*m", "", sys.stdin.read())
m = re.match(r"(\S+Z)", line)
if m: print(datetime.datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp(), line.strip())'
}
ms() { python3 -c "print(f'{($1 - $2) * 1000:.1f}')"; }

declare -a WIRE=() WIRE0=() NOTICED=() TABLE=() KERNEL=()
valid=1
for i in $(seq "$MOVES"); do
  to=$(other a)
  on a ping -q -c 2 -i 0.2 -W 2 "$VIP_OF_B" > /dev/null || valid=0
  # Not through `on`: $! must be tcpdump itself.
  ip netns exec "${TOPO_PREFIX}a" tcpdump -U -n -tt -l -i "eth$to" -c 1 \
    "udp and dst port 4877 and src host $(topo_addr a "$to")" > "$W/cap.$i" 2> "$W/cap.$i.err" &
  cap=$!
  eventually 10 grep -q "listening on" "$W/cap.$i.err"
  mark=$(wc -l < "$DNS_DIR/a/vipd.log")
  move "$W" one
  eventually 10 test -s "$W/cap.$i" || valid=0
  kill "$cap" 2>/dev/null; wait "$cap" 2>/dev/null
  eventually 10 bash -c "tail -n +$((mark + 1)) '$DNS_DIR/a/vipd.log' | grep -q 'hinting the active partners'"
  t_wire=$(awk 'NR == 1 { print $1 }' "$W/cap.$i")
  noticed=$(log_after "$mark" "our address changed")
  table=$(log_after "$mark" "hinting the active partners")
  t0=${T0/,/.} t1=${T1/,/.}
  if [ -z "$t_wire" ] || [ -z "$noticed" ] || [ -z "$table" ]; then
    valid=0; diag "move $i: no hint seen (wire '$t_wire', logs '$noticed' '$table')"; continue
  fi
  WIRE+=("$(ms "$t_wire" "$t1")") WIRE0+=("$(ms "$t_wire" "$t0")") KERNEL+=("$(ms "$t1" "$t0")")
  NOTICED+=("$(ms "${noticed%% *}" "$t1")")
  TABLE+=("$(sed -n 's/.*after_ms=\([0-9.]*\).*/\1/p' <<<"$table")")
  diag "$(printf 'move %2d to LAN%s: ip -batch %6s ms; from T1: noticed %6s ms, table read %6s ms after, hint on the wire %6s ms (%6s ms from T0)' \
    "$i" "$to" "${KERNEL[-1]}" "${NOTICED[-1]}" "${TABLE[-1]}" "${WIRE[-1]}" "${WIRE0[-1]}")"
  sleep 1
done
if ((valid)); then ok "every move's hint was seen on A's new link"; else not_ok "every move's hint was seen on A's new link"; fi

summary() { printf '%s\n' "$@" | python3 -c '
import statistics, sys
v = sorted(float(x) for x in sys.stdin.read().split())
print(f"median {statistics.median(v):.1f} ms (min {v[0]:.1f}, max {v[-1]:.1f}, n={len(v)})" if v else "no samples")'; }
diag "ip -batch (the kernel taking the move):          $(summary "${KERNEL[@]}")"
diag "noticed by vipd's engine, from T1:               $(summary "${NOTICED[@]}")"
diag "kernel table read, after noticing:               $(summary "${TABLE[@]}")"
diag "hint on the wire, from T1:                       $(summary "${WIRE[@]}")   (target <= 5 ms)"
diag "hint on the wire, from T0 (the batch written):   $(summary "${WIRE0[@]}")"
diag "the VM emulates its CPU (TCG): every figure here is CPU time under emulation"
ok "benchmark ran ($MOVES moves)"
