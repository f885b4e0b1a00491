#!/usr/bin/env bash
# The data path with static mappings: ping, TCP and UDP by VIP; a TCP transfer that keeps
# going while one end moves; path MTU; spoofed, unknown, unmapped and malformed packets
# dropped, counted and reported (that they are not delivered: 52-hardening).
# kernel-facing: also run on the debug kernel
# timeout: 600
# duration: 38
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
tap_plan 25

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a

check "A pings B by VIP" on a ping -c3 -i0.2 -W2 240.0.0.2
check "B pings A by VIP" on b ping -c3 -i0.2 -W2 240.0.0.1
check "the outer packets are IPIP between physical addresses" \
  bash -c "ip netns exec vip-a ping -c1 -W2 240.0.0.2 >/dev/null && \
    ip netns exec vip-a vipctl -j map get 240.0.0.2 | python3 -c '
import json, sys; m = json.load(sys.stdin); assert m[\"tx_packets\"] > 0 and m[\"rx_packets\"] > 0, m'"
check "vip0 counts packets both ways" bash -c \
  "ip netns exec vip-a ip -s -j link show vip0 | python3 -c '
import json, sys; s = json.load(sys.stdin)[0][\"stats64\"]; assert s[\"rx\"][\"packets\"] > 0 and s[\"tx\"][\"packets\"] > 0, s'"

# listening HOST PROTO PORT: a socket of HOST listens (or is bound) on PORT.
listening() { on "$1" ss -Hln"$2" "sport = :$3" | grep -q .; }

# UDP and TCP by VIP.
on b socat -u UDP4-RECV:5000,bind=240.0.0.2 OPEN:/tmp/udp.out,creat,trunc &
eventually 5 listening b u 5000
for i in $(seq 1 20); do echo "datagram $i"; done | on a socat -u - UDP4-SENDTO:240.0.0.2:5000
check "UDP from A reaches B by VIP" eventually 5 grep -q "datagram 20" /tmp/udp.out

size=$(by_kernel 4000000 1000000)
head -c $size /dev/urandom > /tmp/payload
want=$(sha256sum < /tmp/payload | cut -d' ' -f1)
on b socat -u TCP4-LISTEN:5001,bind=240.0.0.2,reuseaddr OPEN:/tmp/tcp.out,creat,trunc &
server=$!
eventually 5 listening b t 5001
check "$((size / 1000000)) MB over TCP from A to B by VIP" on a socat -u OPEN:/tmp/payload TCP4:240.0.0.2:5001
wait $server
check "... arrive intact (sha256)" test "$(sha256sum < /tmp/tcp.out | cut -d' ' -f1)" = "$want"

# A moves to LAN2 in the middle of a slow transfer; B's mapping follows by hand.
on b socat -u TCP4-LISTEN:5002,bind=240.0.0.2,reuseaddr OPEN:/tmp/tcp2.out,creat,trunc &
server=$!
eventually 5 listening b t 5002
paced_cat /tmp/payload 100000 0.1 | on a socat -u - TCP4:240.0.0.2:5002 &
client=$!
# Move once the transfer is under way.
eventually 10 bash -c '[ "$(stat -c %s /tmp/tcp2.out 2>/dev/null || echo 0)" -gt 300000 ]'
topo_move a 2 make
vip_map b a
diag "A moved to $(topo_addr a) and B's mapping followed"
wait $client; client_rc=$?
wait $server
check "the transfer across the move completes" test $client_rc = 0
check "... with every byte intact (sha256)" test "$(sha256sum < /tmp/tcp2.out | cut -d' ' -f1)" = "$want"
check "A and B still ping by VIP after the move" on a ping -c2 -i0.2 -W2 240.0.0.2

# Path MTU: the outer route's MTU, less the outer header, bounds what DF packets may be.
on a ip link set eth2 mtu 1300
sent_before=$(on a vipctl -j map get 240.0.0.2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tx_packets"])')
out=$(on a ping -c1 -W2 -M do -s 1400 240.0.0.2 2>&1)
check "a DF packet over the path MTU gets 'fragmentation needed' with mtu 1280" grep -q "mtu = 1280\|mtu=1280" <<<"$out"
sent_after=$(on a vipctl -j map get 240.0.0.2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tx_packets"])')
check "... and is not counted as sent to B ($sent_before, then $sent_after)" test "$sent_before" = "$sent_after"
check "a DF packet that fits still goes" on a ping -c1 -W2 -M do -s 1200 240.0.0.2
on a ip link set eth2 mtu 1500

# Events and drops: a monitor on B sees what C's forged packets cause.
on b vipctl -j monitor > /tmp/events &
# The monitor listens once a packet to an unmapped VIP shows in its output.
monitor_ready() { on b ping -c1 -W0.2 240.0.0.76 >/dev/null 2>&1; grep -q 240.0.0.76 /tmp/events; }
eventually 10 monitor_ready
# stat_above HOST COUNTER N: HOST's counter is above N (evaluated on every try).
stat_above() { (( $(vip_stat "$1" "$2") > $3 )); }
moved_before=$(vip_stat b rx_moved)
on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$(topo_addr b)" 240.0.0.1 240.0.0.2
check "a packet from A's VIP but C's address is dropped and counted" \
  eventually 3 stat_above b rx_moved "$moved_before"
on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$(topo_addr b)" 240.0.0.99 240.0.0.2
check "a packet from an unmapped VIP is counted unknown" eventually 3 stat_above b rx_unknown 0
on b ping -c1 -W1 240.0.0.77 >/dev/null 2>&1
check "a packet to an unmapped VIP is counted" eventually 3 stat_above b tx_no_mapping 0
for kind in version ihl length; do
  on c python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$(topo_addr b)" 240.0.0.1 240.0.0.2 --malformed $kind
done
check "malformed inner headers are dropped and counted" eventually 3 stat_above b rx_malformed 2
c1=$(topo_addr c)
check "monitor shows the MOVED event" eventually 3 grep -q "\"event\":\"moved\",\"peer_vip\":\"240.0.0.1\",\"mapped\":\"$(topo_addr a)\",\"seen\":\"$c1\"" /tmp/events
check "monitor shows the UNKNOWN event" eventually 3 grep -q "\"event\":\"unknown\",\"peer_vip\":\"240.0.0.99\",\"local_vip\":\"240.0.0.2\",\"seen\":\"$c1\"" /tmp/events
check "monitor shows the NO_MAPPING event" eventually 3 grep -q '"event":"no_mapping","peer_vip":"240.0.0.77"' /tmp/events
diag "events: $(tr '\n' ' ' < /tmp/events)"

# Path MTU learnt from a router on the way: A back on LAN1, the router's port toward B
# narrowed to 1300 bytes. The router's ICMP "fragmentation needed" about an outer packet
# must teach A's route to B that MTU (as ipip_err does for the kernel's tunnels).
topo_move a 1
vip_map b a
on a ip route flush cache # (forget the 1280 learnt for B's VIP above)
on r ip link set b-eth2 mtu 1300
on a ping -c1 -W2 240.0.0.2 > /dev/null 2>&1 # (neighbours resolved after the move)
on a ping -c3 -i0.5 -W1 -M do -s 1400 240.0.0.2 > /dev/null 2>&1
route_mtu_learnt() {
  local route; route=$(on a ip route get "$(topo_addr b)")
  grep -q "mtu 1300" <<<"$route" || { echo "$route"; on r nstat -az IcmpOutDestUnreachs IpFragFails; false; }
}
check "a router's 'fragmentation needed' sets A's path MTU to B (1300)" eventually 5 route_mtu_learnt
out=$(on a ping -c1 -W2 -M do -s 1400 240.0.0.2 2>&1)
check "the next big DF packet gets 'fragmentation needed' from A itself (mtu 1280)" \
  grep -q "mtu = 1280\|mtu=1280" <<<"$out"
check "a DF packet that fits the path still goes" on a ping -c1 -W2 -M do -s 1200 240.0.0.2
on r ip link set b-eth2 mtu 1500
on a ip route flush cache

ip netns add vip-elsewhere
at_exit ip netns del vip-elsewhere
check_fails "a vip device cannot move to another namespace" on a ip link set vip0 netns vip-elsewhere

# The kernel's own ipip keeps working beside us.
kmod ipip
on a ip link add ipip1 type ipip local "$(topo_addr a)" remote "$(topo_addr b)"
on b ip link add ipip1 type ipip local "$(topo_addr b)" remote "$(topo_addr a)"
on a ip addr add 198.18.0.1/30 dev ipip1; on a ip link set ipip1 up
on b ip addr add 198.18.0.2/30 dev ipip1; on b ip link set ipip1 up
check "plain ipip tunnels still work with vip loaded" on a ping -c2 -i0.2 -W2 198.18.0.2

# Teardown under traffic is 56-teardown's.
rm -f /tmp/payload /tmp/tcp.out /tmp/tcp2.out /tmp/udp.out /tmp/events
