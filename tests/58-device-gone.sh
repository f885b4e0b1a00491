#!/usr/bin/env bash
# The vip device going from under a running vipd: first `ip link del vip0` on A, then
# `rmmod vip` (which deletes every vip device) with vipd running on A and B. Each time the
# daemons exit within seconds with a non-zero status and a line that says why (what
# systemd's Restart=on-failure acts on), and nothing else is left running; started again
# once the module is back, they create their devices anew and A reaches B by name again.
# timeout: 300
# duration: 22
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
tap_plan 14

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
dns_start "a b"
vipd_start a
vipd_start b
check "vipd runs on A and B, and A reaches B by name" bash -c \
  "kill -0 ${VIPD_PID[a]} && kill -0 ${VIPD_PID[b]} && ip netns exec ${TOPO_PREFIX}a ping -c2 -W2 -i0.3 b.$DNS_ZONE"

WHY="the vip device vip0 was deleted"
exited() { ! kill -0 "$1" 2>/dev/null; }
device_is_vip() { on "$1" ip -d link show vip0 | grep -qw vip; }

# --- 1. ip link del on A --------------------------------------------------------------------
pid_a=${VIPD_PID[a]}
on a ip link del vip0
check "A's vipd exits once its device is deleted" eventually 15 exited "$pid_a"
wait "$pid_a"; rc=$? # (vipd is this shell's child: not in a $(...) subshell)
check "... with a non-zero status ($rc), so that systemd restarts it" test "$rc" -ne 0
check "... saying why" grep -q "$WHY" "$DNS_DIR/a/vipd.log"
check "B's vipd carries on" vipd_running b
unset "VIPD_PID[a]"
vipd_start a
check "started again, A's vipd creates vip0 anew" device_is_vip a
check "A reaches B by name again" eventually 30 on a ping -c1 -W2 b.$DNS_ZONE

# --- 2. rmmod under both daemons --------------------------------------------------------------
pid_a=${VIPD_PID[a]} pid_b=${VIPD_PID[b]}
marks=$(grep -c "$WHY" "$DNS_DIR/a/vipd.log")
check "the module unloads under both daemons" rmmod vip
both_exited() { exited "$pid_a" && exited "$pid_b"; }
check "both daemons exit" eventually 15 both_exited
wait "$pid_a"; rc_a=$?
wait "$pid_b"; rc_b=$?
check "... with non-zero statuses (A $rc_a, B $rc_b)" test "$rc_a" -ne 0 -a "$rc_b" -ne 0
said() { (($(grep -c "$WHY" "$DNS_DIR/a/vipd.log") > marks)) && grep -q "$WHY" "$DNS_DIR/b/vipd.log"; }
check "... each saying why" said
unset "VIPD_PID[a]" "VIPD_PID[b]"
check "no vipd is left running" bash -c "! pgrep -x vipd"
vip_load
vipd_start a
vipd_start b
check "with the module back, both daemons create their devices anew" bash -c \
  "ip netns exec ${TOPO_PREFIX}a ip -d link show vip0 | grep -qw vip && ip netns exec ${TOPO_PREFIX}b ip -d link show vip0 | grep -qw vip"
check "A reaches B by name again, and B holds A in its table" bash -c \
  "ip netns exec ${TOPO_PREFIX}a ping -c2 -W2 -i0.3 b.$DNS_ZONE && ip netns exec ${TOPO_PREFIX}b vipctl -j show | grep -q peer_vip"
