#!/usr/bin/env bash
# The mapping table through netlink: vipctl's map commands, validation by per-command
# policies, permissions, the per-namespace limit, memory accounting, namespaces, and a
# million mappings in, dumped and flushed.
# kernel-facing: also run on the debug kernel
# timeout: 900
# duration: 78
source "$(dirname "$0")/lib/common.sh"
tap_plan 56

vip_unload; vip_load
at_exit vip_unload
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
genl_raw() { python3 "$VIP_ROOT/tests/lib/genl_raw.py" "$@"; }

size=$(vipctl -j info | json_field mapping_size)
diag "bytes per mapping: $size"
check "a mapping takes 128 bytes: a lookup line and a counters line ($size)" test "$size" = 128
check "the table starts empty" test "$(vipctl -j info | json_field mappings)" = 0
check "the default limit is 1048576" test "$(vipctl -j info | json_field max_mappings)" = 1048576

check "map add" vipctl map add 240.0.0.2 via 192.0.2.20 local 240.0.0.1
check "show lists it" bash -c 'vipctl show | grep -qx "240.0.0.2 via 192.0.2.20 local 240.0.0.1 rx 0 pkts 0 bytes (never) tx 0 pkts 0 bytes (never)"'
check "map get as JSON" bash -c 'vipctl -j map get 240.0.0.2 | python3 -c "
import json, sys
m = json.load(sys.stdin)
assert (m[\"peer_vip\"], m[\"peer_ip4\"], m[\"local_vip\"], m[\"flags\"]) == (\"240.0.0.2\", \"192.0.2.20\", \"240.0.0.1\", 0), m
assert m[\"last_rx\"] is None and m[\"rx_packets\"] == 0, m"'

out=$(vipctl map add 240.0.0.2 via 192.0.2.21 2>&1); rc=$?
check "adding it again fails and says why" test $rc -ne 0 -a -n "$(grep 'has a mapping already' <<<"$out")"
check "... and changed nothing" bash -c 'vipctl map get 240.0.0.2 | grep -q "via 192.0.2.20 "'
check "map replace moves the peer" vipctl map replace 240.0.0.2 via 198.51.100.20 local 240.0.0.1 temporary
check "... and get shows the new address and flag" bash -c 'vipctl map get 240.0.0.2 | grep -q "via 198.51.100.20 local 240.0.0.1 temporary"'
out=$(vipctl map change 240.0.0.3 via 192.0.2.30 2>&1); rc=$?
check "map change of a missing VIP fails and says why" test $rc -ne 0 -a -n "$(grep 'has no mapping' <<<"$out")"
check "map replace creates too" vipctl map replace 240.0.0.3 via 192.0.2.30
check "two mappings now" test "$(vipctl -j info | json_field mappings)" = 2
check "map del" vipctl map del 240.0.0.3
check_fails "a deleted mapping is gone" vipctl map get 240.0.0.3
check_fails "deleting it again fails" vipctl map del 240.0.0.3

# Bad input, through vipctl and straight through netlink: refused, and nothing changes.
check_fails "vipctl refuses a VIP outside 240/4" vipctl map add 10.1.1.1 via 192.0.2.9
check_fails "vipctl refuses a missing via" vipctl map add 240.0.0.9 local 240.0.0.1
for case in map-set-not-vip map-set-missing-addr map-set-bad-peer map-set-bad-local map-set-bad-flags \
    map-set-short-addr map-set-reply-only-attr map-set-unknown-attr map-del-missing \
    map-del-with-peer-ip4 map-get-with-local flush-with-attr info-with-attr set-config-with-peer \
    set-config-zero set-config-too-big set-config-roam-too-big; do
  check "the module refuses: $case" genl_raw "$case"
done
check "after all that, still exactly one mapping" test "$(vipctl -j info | json_field mappings)" = 1
check "... and the default limit" test "$(vipctl -j info | json_field max_mappings)" = 1048576
check "... and the default roam limit" test "$(vipctl -j info | json_field roam_limit)" = 100

# Everything but the version needs CAP_NET_ADMIN: mappings say where every peer is.
check "an unprivileged user gets EPERM for every read, change and the events group" \
  setpriv --reuid=65534 --regid=65534 --clear-groups python3 "$VIP_ROOT/tests/lib/genl_raw.py" unprivileged
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups vipctl show 2>&1)
check "... and vipctl says so ($out)" grep -qi "permission denied\|not permitted" <<<"$out"

# Every namespace has its own table and limit.
ip netns add vip-map-test
at_exit ip netns del vip-map-test
inns() { ip netns exec vip-map-test "$@"; }
check "another namespace starts with an empty table" test "$(inns vipctl -j info | json_field mappings)" = 0
check "its limit can be lowered (to 3)" inns vipctl set max-mappings 3
for i in 1 2 3; do inns vipctl map add 240.1.0.$i via 192.0.2.$i; done
out=$(inns vipctl map add 240.1.0.4 via 192.0.2.4 2>&1); rc=$?
check "a fourth mapping is refused (ENOSPC) and vipctl says why" \
  test $rc -ne 0 -a -n "$(grep -i 'limit allows' <<<"$out")"
check "... the first namespace's limit is untouched" test "$(vipctl -j info | json_field max_mappings)" = 1048576
check "a change within the limit still works" inns vipctl map replace 240.1.0.3 via 192.0.2.33
inns vipctl map flush >/dev/null
inns vipctl set max-mappings 1048576

# Memory accounting: mappings are charged to the memory cgroup of whoever adds them, so a
# user who may add mappings (any user, in a user namespace) cannot pin memory past its
# cgroup's limit. The default kernel has no slab debugging, so the charge is close to the
# object size.
cg=/sys/fs/cgroup/vip-map-test
mkdir "$cg"
at_exit rmdir "$cg"
m=$(scaled 50000)
awk -v m=$m 'BEGIN { for (i = 1; i <= m; i++) printf "map add 240.2.%d.%d via 192.0.2.1\n", int(i / 256), i % 256 }' > /tmp/50k
before=$(cat "$cg/memory.current")
check "$m mappings added from inside a memory cgroup" \
  bash -c "echo \$\$ > $cg/cgroup.procs && exec ip netns exec vip-map-test vipctl batch /tmp/50k"
after=$(cat "$cg/memory.current")
diag "the cgroup's memory grew by $(( (after - before) / 1024 )) KiB"
check "... and are charged to it (at least $m x 128 bytes)" test $((after - before)) -ge $((m * 128))
inns vipctl map flush >/dev/null
# Now a limit 8 MiB (2 on the debug kernel) above what the cgroup uses, and mappings added 2000 at a time (each
# vipctl needs little memory of its own) until the kernel refuses: ENOMEM from the charge,
# or the cgroup's OOM killer ending the process that asked.
echo $(( $(cat "$cg/memory.current") + $(by_kernel 8 2) * 1024 * 1024 )) > "$cg/memory.max"
failure=
for round in $(seq 0 99); do
  awk -v r=$round 'BEGIN { for (i = 0; i < 2000; i++) printf "map add 240.%d.%d.%d via 192.0.2.1\n", 3 + int(r / 32), int((r % 32) * 8 + i / 256), i % 256 }' > /tmp/2k
  out=$(bash -c "echo \$\$ > $cg/cgroup.procs && exec ip netns exec vip-map-test vipctl batch /tmp/2k" 2>&1) && continue
  failure="exit $?: $(tail -1 <<<"$out" | cut -c1-80)"
  break
done
n=$(inns vipctl -j info | json_field mappings)
diag "stopped after $n mappings: $failure"
check "past the cgroup's limit, adding mappings fails ($failure)" test -n "$failure"
check "... having added some, and far fewer than 200000 ($n)" test "$n" -gt 2000 -a "$n" -lt 100000
check "the cgroup hit its limit (memory.events)" test "$(awk '/^max /{print $2}' "$cg/memory.events")" -gt 0
inns vipctl map flush >/dev/null
rm -f /tmp/50k /tmp/2k

# A million mappings in through one pipelined socket, dumped back complete, and flushed in
# batches (no long RCU read section: the debug kernel's stall detector would say so).
n=$(scaled 1000000)
awk -v n=$n 'BEGIN { for (i = 1; i <= n; i++)
  printf "map add 240.%d.%d.%d via 192.0.2.%d\n", int(i / 65536), int(i / 256) % 256, i % 256, i % 250 + 1 }' \
  > /tmp/million
start=$SECONDS
check "$n mappings added in one batch" inns vipctl batch /tmp/million
diag "batch took $((SECONDS - start))s"
check "the table counts $n" test "$(inns vipctl -j info | json_field mappings)" = $n
start=$SECONDS
inns vipctl show > /tmp/million.out
diag "dump took $((SECONDS - start))s"
check "the dump has $n distinct mappings" \
  test "$(cut -d' ' -f1 /tmp/million.out | sort -u | wc -l)" = $n
last=$(awk -v i=$n 'BEGIN { printf "240.%d.%d.%d via 192.0.2.%d", int(i / 65536), int(i / 256) % 256, i % 256, i % 250 + 1 }')
check "a dumped mapping is right ($last)" grep -qx "$last rx 0 pkts 0 bytes (never) tx 0 pkts 0 bytes (never)" /tmp/million.out
start=$SECONDS
check "flush reports $n" bash -c "ip netns exec vip-map-test vipctl map flush | grep -qx 'deleted $n mappings'"
diag "flush took $((SECONDS - start))s"
check "the table is empty after the flush" test "$(inns vipctl -j info | json_field mappings)" = 0
rm -f /tmp/million /tmp/million.out
