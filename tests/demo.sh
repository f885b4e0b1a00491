#!/usr/bin/env bash
# The demo: hosts A and B behind a router, talking by VIP; A moves from LAN1 to LAN2 in the
# middle of a TCP transfer and the transfer carries on. The mappings are static and B's is
# changed by hand at the move: that is the part vipd will do (not written yet).
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
tap_plan 3

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a
diag "$(vipctl version | tr '\n' ' ')"
diag "A is 240.0.0.1 at $(topo_addr a) (LAN1), B is 240.0.0.2 at $(topo_addr b) (LAN2)"
check "A pings B by VIP" on a ping -c3 -i0.2 240.0.0.2

head -c 4000000 /dev/urandom > /tmp/demo.data
on b socat -u TCP4-LISTEN:7000,bind=240.0.0.2,reuseaddr OPEN:/tmp/demo.out,creat,trunc &
server=$!
sleep 0.5
diag "A sends 4 MB to B by VIP, 400 KB a second"
paced_cat /tmp/demo.data 40000 0.1 | on a socat -u - TCP4:240.0.0.2:7000 &
client=$!
sleep 4
topo_move a 2 make
vip_map b a
diag "A moved: now at $(topo_addr a) (LAN2); B's mapping: $(on b vipctl map get 240.0.0.1)"
wait $client
wait $server
check "the transfer carried on across the move" test -s /tmp/demo.out
check "every byte arrived intact (sha256)" \
  test "$(sha256sum < /tmp/demo.out | cut -d' ' -f1)" = "$(sha256sum < /tmp/demo.data | cut -d' ' -f1)"
diag "B's view of A now: $(on b vipctl map get 240.0.0.1)"
rm -f /tmp/demo.data /tmp/demo.out
