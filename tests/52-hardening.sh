#!/usr/bin/env bash
# What a review of the module asked for, each shown on the wire: one vip device per
# namespace, device registration racing with arriving packets, events that floods cannot
# starve (and none for non-VIP noise), spoofed packets proven undelivered, conntrack that
# sees VIP flows as it sees the kernel's own tunnels, and no route exception per peer.
# kernel-facing: also run on the debug kernel
# timeout: 600
# duration: 77
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
tap_plan 26

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a
# Packets forged on C, the attacker on LAN1.
ipip_send() { on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$@"; }
A=$(topo_addr a) B=$(topo_addr b) C=$(topo_addr c)

# ---- one device per namespace ----
out=$(on b ip link add vip1 type vip 2>&1); rc=$?
check "a second vip device in a namespace is refused, and ip says why ($out)" \
  test $rc -ne 0 -a -n "$(grep 'has a vip device already' <<<"$out")"
check_fails "... and there is no vip1" on b ip link show vip1

# Device registration while VIP packets arrive: B loses its device, A floods it, and B's
# administrator adds devices that fail to register (the index is taken) and devices that
# come and go. The receive path must never see a device that is not fully registered (the
# debug kernel's KASAN watches this).
on b ip link del vip0
on a ping -f -w 8 240.0.0.2 >/dev/null 2>&1 &
flood=$!
failed=0
for i in $(seq 1 "$(by_kernel 40 10)"); do
  on b ip link add vip0 index 1 type vip 2>/dev/null && failed=1
  on b ip link add vip0 type vip && on b ip link set vip0 up && on b ip link del vip0
done
wait $flood
check "registrations that fail (index taken) fail cleanly under a flood" test $failed = 0
check "... and leave no device behind" bash -c "! ip netns exec vip-b ip -br link show type vip | grep -q ."
vip_host b 240.0.0.2
check "with a new device, B receives again" on a ping -c2 -i0.2 -W2 240.0.0.2

# ---- spoofed packets are not delivered ----
# A listener on B's VIP: the spoofed datagrams (A's VIP, from C's address) must never reach
# it; a genuine one from A afterwards must, which shows it was listening.
on b socat -u UDP4-RECV:5005,bind=240.0.0.2 OPEN:/tmp/spoof.out,creat,trunc &
eventually 5 bash -c "ip netns exec vip-b ss -Hlnu 'sport = :5005' | grep -q ."
moved_before=$(vip_stat b rx_moved)
on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$B" 240.0.0.1 240.0.0.2 --inner udp --port 5005 \
  --payload SPOOFED --count 20
echo GENUINE | on a socat -u - UDP4-SENDTO:240.0.0.2:5005,bind=240.0.0.1
check "a genuine datagram from A reaches the listener" eventually 5 grep -q GENUINE /tmp/spoof.out
check "the spoofed datagrams from C never did" bash -c '! grep -q SPOOFED /tmp/spoof.out'
check "... and were counted as moved" test "$(vip_stat b rx_moved)" -ge $((moved_before + 20))
unknown_before=$(vip_stat b rx_unknown)
on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$B" 240.0.0.99 240.0.0.2 --inner udp --port 5005 \
  --payload UNKNOWN --count 5
echo GENUINE2 | on a socat -u - UDP4-SENDTO:240.0.0.2:5005,bind=240.0.0.1
check "datagrams from an unknown VIP never reach the listener either" \
  bash -c 'eventually() { for i in $(seq 50); do grep -q GENUINE2 /tmp/spoof.out && return; sleep 0.1; done; return 1; }
           eventually && ! grep -q UNKNOWN /tmp/spoof.out'
check "... and were counted as unknown" test "$(vip_stat b rx_unknown)" -ge $((unknown_before + 5))

# ---- events ----
on b vipctl -j monitor > /tmp/events &
monitor=$!
# The monitor listens once a packet to an unmapped VIP shows in its output.
monitor_ready() { on b ping -c1 -W0.2 240.0.0.76 >/dev/null 2>&1; grep -q 240.0.0.76 /tmp/events; }
eventually 10 monitor_ready
# counted HOST COUNTER N: HOST's counter has reached N (all the packets were processed).
counted() { (( $(vip_stat "$1" "$2") >= $3 )); }
# The same packet again and again makes one event a second, not one each.
moved_before=$(vip_stat b rx_moved)
ipip_send "$B" 240.0.0.1 240.0.0.2 --count 30
eventually 5 counted b rx_moved $((moved_before + 30))
n=$(grep -c "\"moved\",\"peer_vip\":\"240.0.0.1\",\"mapped\":\"$A\",\"seen\":\"$C\"" /tmp/events)
check "30 packets from A's VIP at C's address make one MOVED event ($n)" test "$n" = 1
# Noise makes no event: an inner source that is not a VIP, a tunnel inside the tunnel.
unknown_before=$(vip_stat b rx_unknown)
ipip_send "$B" 10.9.9.9 240.0.0.2 --count 3
ipip_send "$B" 240.0.0.98 240.0.0.2 --inner ipip --count 3
eventually 5 counted b rx_unknown $((unknown_before + 6))
# ... and an event that comes after them has come: had they made events, they would show.
ipip_send "$B" 240.0.0.97 240.0.0.2
eventually 5 grep -q 240.0.0.97 /tmp/events
check "no event for a non-VIP inner source" bash -c '! grep -q 10.9.9.9 /tmp/events'
check "no event for IPIP inside the tunnel" bash -c '! grep -q 240.0.0.98 /tmp/events'
# Floods of two kinds (packets from unknown VIPs, and local packets to unmapped VIPs)
# spend their own budgets; A really moves while both still run, and its MOVED event still
# comes. (With one budget for all kinds, the floods would use it up and the MOVED event
# would be dropped.) Each flood is bounded in count and time. Under TCG the debug kernel
# handles fewer of either flood's packets a second than a budget allows (2785 unknown and
# 8630 no_mapping events in 175 s, none dropped, on 2026-12-08), so there the cases that
# need a budget spent are skipped; the floods still run through the same paths, for
# KASAN and lockdep.
outpaces() { [ "${VIP_KERNEL_VARIANT:-}" != debug ]; }
slow_floods="the debug kernel's floods do not outpace a budget"
dropped_before=$(vip_stat b events_dropped)
flood_start=$(date +%s)
on c timeout 40 python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$B" 240.8.0.1 240.0.0.2 --count 200000 --vary-source &
spoofer=$!
on b python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 40
for i in range(200000):
    if time.monotonic() > end:
        break
    try:
        s.sendto(b"x", ("240.9.%d.%d" % (i // 250 % 250, i % 250 + 1), 9))
    except OSError:
        pass' &
local_flood=$!
running() { kill -0 $spoofer 2>/dev/null && kill -0 $local_flood 2>/dev/null; }
# Both floods have spent their budgets once events are being dropped.
outpaces && eventually 20 counted b events_dropped $((dropped_before + 200))
dropped_at_move=$(vip_stat b events_dropped)
spent() { running && ((dropped_at_move >= dropped_before + 200)); }
if outpaces; then
  check "both floods run and spend their budgets (events dropped: $((dropped_at_move - dropped_before)))" spent
else
  skip "both floods run and spend their budgets" "$slow_floods"
fi
topo_move a 2
on a ping -c1 -W1 240.0.0.2 >/dev/null 2>&1
A2=$(topo_addr a)
check "during the floods, A's real move still makes a MOVED event" \
  eventually 5 grep -q "\"moved\",\"peer_vip\":\"240.0.0.1\",\"mapped\":\"$A\",\"seen\":\"$A2\"" /tmp/events
if outpaces; then
  check "... while both floods were still running and events still being dropped" \
    eval 'running && (( $(vip_stat b events_dropped) > dropped_at_move ))'
else
  skip "... while both floods were still running and events still being dropped" "$slow_floods"
fi
kill $spoofer $local_flood 2>/dev/null; wait $spoofer $local_flood 2>/dev/null
# Each kind may send VIP_EVENT_BURST (100) a second, plus one burst.
cap=$(( 100 * ($(date +%s) - flood_start + 2) ))
unknown=$(grep -c '"unknown"' /tmp/events) nomap=$(grep -c '"no_mapping"' /tmp/events)
diag "events during the floods: $unknown unknown, $nomap no_mapping; dropped $(( $(vip_stat b events_dropped) - dropped_before ))"
check "the floods were cut to their budgets ($unknown unknown, $nomap no_mapping; at most $cap each)" \
  test "$unknown" -gt 0 -a "$unknown" -le "$cap" -a "$nomap" -gt 0 -a "$nomap" -le "$cap"
if outpaces; then
  check "... and the rest counted as dropped events" test "$(vip_stat b events_dropped)" -gt "$dropped_before"
else
  skip "... and the rest counted as dropped events" "$slow_floods"
fi
vip_map b a
check "a changed mapping is reported (mapping-changed, the paper's callOnChange)" \
  eventually 3 grep -q "\"mapping_changed\",\"peer_vip\":\"240.0.0.1\",\"old\":\"$A\",\"new\":\"$A2\"" /tmp/events
kill $monitor
topo_move a 1
vip_map b a
A=$(topo_addr a)

# ---- no route exception per peer ----
# 200 peer VIPs mapped to B: a packet to each must not leave 200 path-MTU exceptions
# behind (each made under a global lock; a million peers would make a million).
for i in $(seq 1 200); do echo "map replace 240.5.0.$i via $B local 240.0.0.1"; done | on a vipctl batch -
on a python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(1, 201):
    s.sendto(b"x", ("240.5.0.%d" % i, 9))'
sent=$(on a vipctl -j show | python3 -c 'import json,sys; print(sum(m["tx_packets"] for m in json.load(sys.stdin) if m["peer_vip"].startswith("240.5.")))')
check "200 packets went to 200 peers ($sent)" test "$sent" = 200
exceptions=$(on a ip route show cache | grep -c '^240\.')
check "... and left no route exception ($exceptions)" test "$exceptions" = 0
for i in $(seq 1 200); do echo "map del 240.5.0.$i"; done | on a vipctl batch -

# ---- conntrack ----
# B's firewall lets established flows in and drops new ones arriving on vip0, as a laptop's
# would. The outer IPIP flow must be tracked as the kernel's own tunnels are (one confirmed
# entry, not a new one per packet), and the inner connections on vip0 with their own state.
kmod nf_conntrack; kmod nft_ct
on b nft -f - <<'NFT'
table inet vipfw {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related counter accept
    iifname "vip0" ct state new counter drop
  }
}
NFT
# One-way datagrams from A to a listener on B: B sends nothing back (no answer, no ICMP),
# so only an entry confirmed on receipt can hold the outer flow. Without the confirm, each
# packet's entry is made and freed, and none is ever listed.
on b socat -u UDP4-RECV:5008,bind=240.0.0.2 OPEN:/dev/null &
sink=$!
eventually 5 bash -c "ip netns exec vip-b ss -Hlnu 'sport = :5008' | grep -q ."
on a python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(b"x", ("240.0.0.2", 5008)); time.sleep(0.02)'
kill $sink
check "a one-way outer IPIP flow has one confirmed conntrack entry" bash -c \
  "test \$(ip netns exec vip-b grep -c 'unknown  4 [0-9]* src=$A dst=$B \\[UNREPLIED\\] src=$B dst=$A' /proc/net/nf_conntrack) = 1"
# B connects out to A; A's answers (1 MB, paced) are established traffic. A holds the
# connection open 5 s after the last byte, so that the entry is there to be seen however
# slowly the emulated VM starts the processes that look.
head -c 1000000 /dev/urandom > /tmp/ct.payload
{ paced_cat /tmp/ct.payload 100000 0.2; sleep 5; } | on a socat -u - TCP4-LISTEN:5006,bind=240.0.0.1,reuseaddr &
server=$!
eventually 5 bash -c "ip netns exec vip-a ss -ltn 'sport = :5006' | grep -q LISTEN"
on b timeout 30 socat -u TCP4:240.0.0.1:5006,bind=240.0.0.2 OPEN:/tmp/ct.out,creat,trunc &
client=$!
check "B's outbound connection to A's VIP is tracked as established on vip0" eventually "$(by_kernel 10 30)" \
  on b grep -q "tcp .* ESTABLISHED src=240.0.0.2 dst=240.0.0.1 .*dport=5006" /proc/net/nf_conntrack
wait $client; client_rc=$?
wait $server
check "... and carries 1 MB back through the firewall, intact" \
  test $client_rc = 0 -a "$(cmp -s /tmp/ct.payload /tmp/ct.out && echo same)" = same
on b socat -u TCP4-LISTEN:5007,bind=240.0.0.2,reuseaddr OPEN:/tmp/ct.new,creat,trunc &
listener=$!
echo NEW | on a timeout 5 socat -u - TCP4:240.0.0.2:5007,bind=240.0.0.1,connect-timeout=3 2>/dev/null
kill $listener 2>/dev/null
check "a new inbound connection by VIP is dropped by the firewall" bash -c '! grep -q NEW /tmp/ct.new 2>/dev/null'
check "... by its 'new' rule, which saw it" bash -c \
  "ip netns exec vip-b nft list chain inet vipfw input | grep 'ct state new counter' | grep -qv 'packets 0 '"
on b nft delete table inet vipfw
rm -f /tmp/ct.payload /tmp/ct.out /tmp/ct.new /tmp/events /tmp/spoof.out
