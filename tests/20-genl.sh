#!/usr/bin/env bash
# The generic netlink family answers from userland, in every network namespace.
# kernel-facing: also run on the debug kernel
# duration: 6
source "$(dirname "$0")/lib/common.sh"
tap_plan 10

module_version=$(sed -n 's/.*VERSION: &CStr = c_str!("\(.*\)");/\1/p' "$VIP_ROOT/vip_mod.rs")

# With module loading turned off, the family cannot appear: vipctl says why.
vip_unload
modprobe_path=$(cat /proc/sys/kernel/modprobe)
echo /bin/false > /proc/sys/kernel/modprobe
out=$(vipctl version 2>&1); rc=$?
echo "$modprobe_path" > /proc/sys/kernel/modprobe
if [ $rc -ne 0 ] && [[ $out == *"module is not loaded"* ]]; then
  ok "without the module, vipctl says it is not loaded"
else
  not_ok "without the module, vipctl says it is not loaded (exit $rc: $out)"
fi

vip_load
out=$(vipctl version)
check "vipctl version reports module $module_version" grep -q "^module $module_version (netlink protocol 1)$" <<<"$out"
json=$(vipctl -j version)
check "vipctl -j version is JSON with the same answer" python3 -c '
import json, sys
v = json.loads(sys.argv[1])
assert v["module"] == sys.argv[2] and v["genl_version"] == 1, v' "$json" "$module_version"

ip netns add vip-genl-test
at_exit ip netns del vip-genl-test
check "the family answers in another network namespace" \
  ip netns exec vip-genl-test vipctl version

# A request with an attribute the command does not take is refused, not crashed on.
check_fails "vipctl rejects an unknown subcommand" vipctl frobnicate
check "a request with an unexpected attribute is refused" python3 "$VIP_ROOT/tests/lib/genl_raw.py" get-version-with-attr
for case in truncated-attr unknown-command short-genl-header; do
  check "malformed request refused: $case" python3 "$VIP_ROOT/tests/lib/genl_raw.py" "$case"
done
check "the module still answers after all that" vipctl version
