#!/usr/bin/env bash
# Runs in the VM (one boot per kind, from tests/detectors/run): makes the kernel report one
# kind of problem with splat.ko. The runner's scan must then fail the run.
source "$VIP_ROOT/tests/lib/common.sh"
tap_plan 1
kind=$SPLAT_KIND ko=$VIP_ROOT/tests/detectors/splat.ko
case $kind in
  netdev_ref)
    ip netns add splat
    ip netns exec splat insmod "$ko" what=$kind
    ip netns del splat
    sleep 25 ;;   # unregister_netdevice says it waits after 10 s
  hung_task)
    insmod "$ko" what=$kind & sleep 150 ;;   # 60 s limit, checked every 60 s
  rcu_stall|soft_lockup)
    insmod "$ko" what=$kind; sleep 40 ;;
  *)
    insmod "$ko" what=$kind ;;
esac
ok "made the kernel report: $kind"
