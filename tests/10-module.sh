#!/usr/bin/env bash
# vip.ko loads and unloads cleanly, again and again.
source "$(dirname "$0")/lib/common.sh"
tap_plan 7

vip_unload
for round in 1 2 3; do
  check "insmod, round $round" insmod "$VIP_KO"
  check "rmmod, round $round" rmmod vip
done
check "the module announced itself" bash -c 'dmesg | grep -q "vip: version .* loaded"'
