#!/usr/bin/env bash
# vip.ko loads and unloads cleanly, again and again, and loads itself when first needed.
# kernel-facing: also run on the debug kernel
# duration: 4
source "$(dirname "$0")/lib/common.sh"
tap_plan 11

vip_unload
for round in 1 2 3; do
  check "insmod, round $round" insmod "$VIP_KO"
  check "rmmod, round $round" rmmod vip
done
check "the module announced itself" bash -c 'dmesg | grep -q "vip: version .* loaded"'

# Installed (guest-modules puts it in extra/ and runs depmod), the module loads on demand.
check "modinfo lists the aliases for the link type and the netlink family" env VIP_KO="$VIP_KO" bash -c \
  'modinfo -F alias "$VIP_KO" | sort | tr "\n" " " | grep -qx "net-pf-16-proto-16-family-vip rtnl-link-vip "'
ip netns add vip-autoload
at_exit ip netns del vip-autoload
check "'ip link add vip0 type vip' loads it" bash -c \
  'ip netns exec vip-autoload ip link add vip0 type vip && test -d /sys/module/vip'
ip netns exec vip-autoload ip link del vip0
vip_unload
check "the first netlink request for the family loads it" bash -c 'vipctl version && test -d /sys/module/vip'
vip_unload
check "without any request it stays unloaded" test ! -d /sys/module/vip
