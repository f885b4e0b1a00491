#!/usr/bin/env bash
# Teardown while traffic really flows: the module unloaded, the device deleted and a
# namespace deleted each under a flood that is shown to be running at that moment, and the
# deleted namespace shown to be freed (not stuck waiting on a reference).
# kernel-facing: also run on the debug kernel
# timeout: 400
# duration: 35
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
tap_plan 16

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2

setup() {
  vip_host a 240.0.0.1; vip_host b 240.0.0.2
  vip_map a b; vip_map b a
}
# flood: pings and datagrams both ways through vip0, in the background; FLOOD holds their
# pids (started without the `on` function, so that the pids are the flooding processes).
flood() {
  FLOOD=()
  ip netns exec vip-a ping -f -q 240.0.0.2 >/dev/null 2>&1 & FLOOD+=($!)
  ip netns exec vip-b ping -f -q 240.0.0.1 >/dev/null 2>&1 & FLOOD+=($!)
  ip netns exec vip-a python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    try:
        s.sendto(b"x" * 1000, ("240.0.0.2", 9))
    except OSError:
        pass' & FLOOD+=($!)
}
flood_running() { local p; for p in "${FLOOD[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done; }
stop_flood() { kill "${FLOOD[@]}" 2>/dev/null; wait "${FLOOD[@]}" 2>/dev/null; }
tx_of() { on a vipctl -j map get "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tx_packets"])'; }
# flowing VIP: A's packets to VIP go out through vip0 (its mapping's counter moves); a
# flood can take seconds to start under emulation, so this is waited for.
flowing() { before=$(tx_of "$1") && sleep 0.5 && after=$(tx_of "$1") && ((after > before)); }

# 1. rmmod under a flood.
setup
flood
before=0 after=0
eventually 60 flowing 240.0.0.2
check "the flood runs through vip0 ($before, then $after packets sent)" test "$after" -gt "$before"
check "rmmod under the flood succeeds" timeout 60 rmmod vip
check "... the flood was still running when it did" flood_running
check "... and the module and the devices are gone" bash -c \
  "! test -d /sys/module/vip && ! ip netns exec vip-a ip link show vip0 2>/dev/null"
stop_flood

# 2. The device deleted under a flood.
vip_load
setup
flood
check "the flood runs again" eventually 60 flowing 240.0.0.2
check "ip link del vip0 under the flood succeeds" on b ip link del vip0
check "... the flood was still running when it did" flood_running
check "... and B has no vip device" bash -c "! ip netns exec vip-b ip link show vip0 2>/dev/null"
stop_flood
on b ip link show vip0 >/dev/null 2>&1 || vip_host b 240.0.0.2

# 3. A namespace deleted while packets pour into it. It is made from a memory cgroup of its
# own, which its kernel memory is charged to: that memory coming back shows the namespace
# freed, devices and all (one stuck on a reference would also make the kernel log
# "unregister_netdevice: waiting", which the report scan looks for).
cg=/sys/fs/cgroup/vip-teardown
mkdir "$cg"
at_exit rmdir "$cg"
kmem() { awk '$1 == "slab_unreclaimable" || $1 == "percpu" { sum += $2 } END { print sum }' "$cg/memory.stat"; }
base=$(kmem)
a_addr=$(topo_addr a)
check "a namespace with a vip device, mappings and a link is made" bash -c "echo \$\$ > $cg/cgroup.procs && exec bash -c '
  set -e
  ip netns add vip-doomed
  ip link add doomed-eth netns vip-r type veth peer name eth1 netns vip-doomed
  ip -n vip-r link set doomed-eth master lan1 up
  ip -n vip-doomed link set lo up; ip -n vip-doomed link set eth1 up
  ip -n vip-doomed addr add 192.0.2.99/24 dev eth1; ip -n vip-doomed route add default via 192.0.2.1
  ip -n vip-doomed link add vip0 type vip; ip -n vip-doomed addr add 240.0.0.99/32 dev vip0
  ip -n vip-doomed link set vip0 up; ip -n vip-doomed route add 240.0.0.0/4 dev vip0
  ip netns exec vip-doomed vipctl map add 240.0.0.1 via $a_addr local 240.0.0.99'"
on a vipctl map add 240.0.0.99 via 192.0.2.99 local 240.0.0.1
made=$(kmem)
diag "the namespace costs its creator $(( (made - base) / 1024 )) KiB of kernel memory"
check "... charged to its creator (at least 64 KiB)" test $((made - base)) -ge $((64 * 1024))
check "A reaches the doomed namespace by VIP" on a ping -c1 -W2 240.0.0.99
FLOOD=()
ip netns exec vip-a ping -f -q 240.0.0.99 >/dev/null 2>&1 & FLOOD+=($!)
check "a flood runs into it" eventually 60 flowing 240.0.0.99
check "deleting it under the flood succeeds" ip netns del vip-doomed
check "... the flood was still running when it did" flood_running
freed() { (( $(kmem) - base <= (made - base) / 4 )); }
check "... and the namespace is freed (its creator's kernel memory comes back)" eventually 60 freed
diag "kernel memory still charged: $(( ($(kmem) - base) / 1024 )) KiB of $(( (made - base) / 1024 ))"
stop_flood
check "the module unloads after all that" timeout 60 rmmod vip
