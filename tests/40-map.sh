#!/usr/bin/env bash
# The mapping table through netlink: vipctl's map commands, validation, permissions,
# namespaces, and a million mappings in and out.
# timeout: 900
source "$(dirname "$0")/lib/common.sh"
tap_plan 30

vip_unload; vip_load
at_exit vip_unload
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

size=$(vipctl -j info | json_field mapping_size)
diag "bytes per mapping: $size"
check "a mapping takes at most 128 bytes ($size)" test "$size" -le 128
check "the table starts empty" test "$(vipctl -j info | json_field mappings)" = 0

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
    map-set-short-addr map-set-reply-only-attr map-set-unknown-attr map-del-missing; do
  check "the module refuses: $case" python3 "$VIP_ROOT/tests/lib/genl_raw.py" "$case"
done
check "after all that, still exactly one mapping" test "$(vipctl -j info | json_field mappings)" = 1

# Changes need CAP_NET_ADMIN; reading does not.
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups vipctl map add 240.0.0.4 via 192.0.2.40 2>&1)
check "an unprivileged user cannot add ($out)" grep -q "permission denied" <<<"$out"
check "an unprivileged user can show" setpriv --reuid=65534 --regid=65534 --clear-groups vipctl show

# Every namespace has its own table.
ip netns add vip-map-test
at_exit ip netns del vip-map-test
check "another namespace starts with an empty table" \
  test "$(ip netns exec vip-map-test vipctl -j info | json_field mappings)" = 0

# A million mappings in through one pipelined socket, and dumped back complete (a tenth
# of that on the debug kernel, whose KASAN and kmemleak make it ten times slower).
n=1000000
[ "${VIP_KERNEL_VARIANT:-}" = debug ] && n=100000
awk -v n=$n 'BEGIN { for (i = 1; i <= n; i++)
  printf "map add 240.%d.%d.%d via 192.0.2.%d\n", int(i / 65536), int(i / 256) % 256, i % 256, i % 250 + 1 }' \
  > /tmp/million
start=$SECONDS
check "$n mappings added in one batch" ip netns exec vip-map-test vipctl batch /tmp/million
diag "batch took $((SECONDS - start))s"
check "the table counts $n" test "$(ip netns exec vip-map-test vipctl -j info | json_field mappings)" = $n
start=$SECONDS
ip netns exec vip-map-test vipctl show > /tmp/million.out
diag "dump took $((SECONDS - start))s"
check "the dump has $n distinct mappings" \
  test "$(cut -d' ' -f1 /tmp/million.out | sort -u | wc -l)" = $n
last=$(awk -v i=$n 'BEGIN { printf "240.%d.%d.%d via 192.0.2.%d", int(i / 65536), int(i / 256) % 256, i % 256, i % 250 + 1 }')
check "a dumped mapping is right ($last)" grep -qx "$last rx 0 pkts 0 bytes (never) tx 0 pkts 0 bytes (never)" /tmp/million.out
check "flush reports $n" bash -c "ip netns exec vip-map-test vipctl map flush | grep -qx 'deleted $n mappings'"
rm -f /tmp/million /tmp/million.out
