#!/usr/bin/env bash
# The demo topology. For now it shows the stage VIP will play on: hosts A and B behind a
# router, A moving from LAN1 to LAN2 while it pings B. Without VIP's data path (not built
# yet) the move breaks anything addressed to A's old address; once the data path lands,
# this becomes a transfer by name that carries on across the move.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
tap_plan 3

topo_create a:1 b:2 dns
vip_load
diag "vip module: $(vipctl version | tr '\n' ' ')"
diag "A is $(topo_addr a) on LAN1, B is $(topo_addr b) on LAN2"
check "A pings B from LAN1" on a ping -c3 -i0.2 "$(topo_addr b)"
topo_move a 2
diag "A moved: now $(topo_addr a) on LAN2"
check "A pings B from LAN2" on a ping -c3 -i0.2 "$(topo_addr b)"
check_fails "B can no longer reach A's old address (what VIP is for)" \
  on b ping -c2 -W1 "$(topo_addr a 1)"
vip_unload
