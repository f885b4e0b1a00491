#!/usr/bin/env bash
# The netlink fuzzer (userland/vip-fuzz): random and mutated generic netlink messages to the
# vip family, from root in a namespace with a vip device, from an unprivileged user, and
# from an unprivileged user as root of its own user namespace; dumps abandoned halfway,
# changes and flushes between. Afterwards the tables are consistent and the module unloads.
# kernel-facing: also run on the debug kernel
# timeout: 900
# duration: 24
source "$(dirname "$0")/lib/common.sh"
tap_plan 12

count=${VIP_FUZZ_NETLINK:-$(by_kernel 100000 20000)}
seconds=240
vip_unload; vip_load
at_exit vip_unload
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))' "$1"; }
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)

ip netns add vip-fuzz
at_exit ip netns del vip-fuzz
ip netns exec vip-fuzz ip link add vip0 type vip
out=$(ip netns exec vip-fuzz vip-fuzz netlink --count "$count" --seconds $seconds --seed 1); rc=$?
diag "root: $out"
check "root: the fuzzer ran to the end ($(field sent <<<"$out") messages)" \
  test $rc = 0 -a "$(field sent <<<"$out")" -ge "$count"
check "... and the module answered (errors $(field 'sorted(errors)' <<<"$out"))" \
  test "$(field 'answers > 0 and "22" in errors' <<<"$out")" = True
consistent() {
  local n; n=$("$@" vipctl -j info | field mappings) || return 1
  [ "$("$@" vipctl show | wc -l)" = "$n" ] && echo "$n"
}
n=$(consistent ip netns exec vip-fuzz)
check "... its table is consistent: the count matches the dump ($n)" test -n "$n"
check "... and it flushes to empty" bash -c \
  'ip netns exec vip-fuzz vipctl set max-mappings 1048576 && ip netns exec vip-fuzz vipctl map flush >/dev/null &&
   test "$(ip netns exec vip-fuzz vipctl -j info | python3 -c "import json,sys; print(json.load(sys.stdin)[\"mappings\"])")" = 0'

# Unprivileged, in the host's namespace: everything but the version must be refused.
before=$(vipctl -j info)
out=$("${nobody[@]}" vip-fuzz netlink --count $((count / 5)) --seconds $seconds --seed 2); rc=$?
diag "unprivileged: $out"
check "unprivileged: the fuzzer ran to the end ($(field sent <<<"$out") messages)" \
  test $rc = 0 -a "$(field sent <<<"$out")" -ge $((count / 5))
check "... refused with EPERM, and never acked a change" \
  test "$(field '"1" in errors and errors.get("1", 0) > 0' <<<"$out")" = True
check "... and the host's table and limit are untouched" test "$(vipctl -j info)" = "$before"

# As root of its own user namespace, the unprivileged user has the whole family for its
# own namespace: the real attack surface.
out=$("${nobody[@]}" unshare -Urn bash -c "ip link add vip0 type vip && vip-fuzz netlink --count $count --seconds $seconds --seed 3 &&
  vipctl -j info > /tmp/fuzz-userns.info && vipctl show | wc -l > /tmp/fuzz-userns.dump"); rc=$?
diag "user namespace: $out"
check "user namespace: the fuzzer ran to the end ($(field sent <<<"$out") messages)" \
  test $rc = 0 -a "$(field sent <<<"$out")" -ge "$count"
check "... and its table was consistent" \
  test "$(field mappings < /tmp/fuzz-userns.info)" = "$(cat /tmp/fuzz-userns.dump)"
check "the host's table is still untouched" test "$(vipctl -j info)" = "$before"
check "vipctl still works" vipctl version
check "the module unloads after all that" timeout 60 rmmod vip
rm -f /tmp/fuzz-userns.info /tmp/fuzz-userns.dump
