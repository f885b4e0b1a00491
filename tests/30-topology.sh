#!/usr/bin/env bash
# The test topology itself: hosts reach each other through the router over both LANs,
# and a move changes the mover's address and route.
# duration: 11
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
tap_plan 9

topo_create a:1 b:2 dns
a1=$(topo_addr a 1) a2=$(topo_addr a 2) b2=$(topo_addr b)

check "A (LAN1) pings B (LAN2) through the router" on a ping -c1 -W2 "$b2"
check "B pings A back" on b ping -c1 -W2 "$a1"
check "A reaches the DNS server" on a ping -c1 -W2 "$TOPO_DNS_ADDR"
check "A's route to B leaves by eth1 from $a1" \
  bash -c "ip netns exec vip-a ip route get $b2 | grep -q 'dev eth1 src $a1'"

topo_move a 2
check "after the move, A's route to B leaves by eth2 from $a2" \
  bash -c "ip netns exec vip-a ip route get $b2 | grep -q 'dev eth2 src $a2'"
check "A's LAN1 address is gone" bash -c "! ip netns exec vip-a ip -br addr | grep -qF ' $a1/'"
check "A pings B from LAN2" on a ping -c1 -W2 "$b2"

topo_netem a 2 "delay 20ms"
rtt=$(on a ping -c3 -i0.2 "$b2" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
check "netem on A's LAN2 link adds delay both ways (avg RTT ${rtt}ms >= 40ms)" \
  python3 -c "import sys; sys.exit(not float('${rtt:-0}') >= 40)"

topo_destroy
check "teardown leaves no namespace behind" bash -c '! ip netns list | grep -q "^vip-"'
