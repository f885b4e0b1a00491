#!/usr/bin/env bash
# What an unprivileged local user can do with the module: on every distribution kernel
# such a user can create a user namespace, be root there, and reach vip.ko through its own
# network namespace. Everything it may do stays in that namespace, is bounded, and is
# charged to it; nothing reaches the host's table.
# kernel-facing: also run on the debug kernel
# timeout: 600
# duration: 44
source "$(dirname "$0")/lib/common.sh"
tap_plan 14

vip_unload
at_exit vip_unload
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
# userns CMD: CMD as nobody, as root of a new user namespace with a new network namespace.
userns() { "${nobody[@]}" unshare -Urn bash -c "$*"; }
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

check "nobody is not root outside" bash -c "! ${nobody[*]} ip link add vip0 type vip 2>/dev/null"
# The kernel loads rtnetlink link types on demand for anyone who asks for one, as root of a
# user namespace: so can nobody.
check "nobody, as root of its user namespace, can create a vip device (and load vip.ko)" \
  userns 'ip link add vip0 type vip && ip -br link show vip0 | grep -q vip0'
check "... but a second device in its namespace is refused" \
  userns 'ip link add vip0 type vip && ! ip link add vip1 type vip 2>/dev/null'
check "... it can add, show and delete mappings in its namespace" \
  userns 'vipctl map add 240.0.0.2 via 192.0.2.20 && vipctl show | grep -q 240.0.0.2 && vipctl map del 240.0.0.2'
check "... and watch its namespace's events" userns '
  ip link add vip0 type vip && ip addr add 240.0.0.1/32 dev vip0 && ip link set vip0 up &&
  ip route add 240.0.0.0/4 dev vip0 && { vipctl -j monitor > /tmp/userns.events & } &&
  sleep 0.5 && ping -c1 -W1 240.0.0.9 >/dev/null 2>&1; sleep 0.5; kill %1;
  grep -q no_mapping /tmp/userns.events'
check "the host's table saw none of it" test "$(vipctl -j info | json mappings)" = 0

# Bounded: the namespace's limit holds (the user may lower it, not raise it past the
# module's ceiling), and a hundred thousand mappings come and go without trouble.
check "the limit cannot be raised past the module's ceiling" \
  userns '! vipctl set max-mappings 4194305 2>/dev/null && vipctl set max-mappings 4194304'
n=$(scaled 100000)
awk -v n=$n 'BEGIN { for (i = 1; i <= n; i++) printf "map add 240.%d.%d.%d via 192.0.2.1\n", 7 + int(i / 65536), int(i / 256) % 256, i % 256 }' > /tmp/userns.100k
chmod 644 /tmp/userns.100k
check "$n mappings added, counted, dumped and flushed in a user namespace" userns "
  vipctl batch /tmp/userns.100k &&
  test \$(vipctl -j info | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"mappings\"])') = $n &&
  test \$(vipctl show | wc -l) = $n && vipctl map flush | grep -q 'deleted $n'"
check "a limit of 10 holds in a user namespace" userns '
  vipctl set max-mappings 10 && head -10 /tmp/userns.100k | vipctl batch - &&
  ! echo "map add 240.8.0.1 via 192.0.2.1" | vipctl batch - 2>/dev/null'

# Racing device registration (failing, and succeeding then deleted) with packets looping
# through the namespace: pings to 240.0.0.2, mapped to this host, leave through vip0 and
# come back in through the receive hook.
loop_setup='ip link set lo up && ip addr add 192.0.2.1/24 dev lo &&
  vipctl map add 240.0.0.2 via 192.0.2.1 local 240.0.0.1 &&
  vipctl map add 240.0.0.1 via 192.0.2.1 local 240.0.0.2'
vip_up='ip link add vip0 type vip && ip addr add 240.0.0.1/32 dev vip0 && ip link set vip0 up &&
  ip route add 240.0.0.0/4 dev vip0'
check "devices come and go, some failing to register, under traffic" userns "
  $loop_setup &&
  for i in \$(seq 1 $(by_kernel 30 5)); do
    ip link add vip0 index 1 type vip 2>/dev/null && exit 1
    $vip_up && { ping -f -w1 -q 240.0.0.2 >/dev/null 2>&1 & } && sleep 0.2 && ip link del vip0 || exit 1
  done; wait"
# Namespaces with vip devices, mappings and traffic, torn down by the user's exit.
check "namespaces with devices, mappings and traffic go when their owner exits" bash -c "
  for i in \$(seq 1 $(by_kernel 5 2)); do
    ${nobody[*]} unshare -Urn bash -c '$loop_setup && $vip_up && head -1000 /tmp/userns.100k | vipctl batch - &&
      { ping -f -q 240.0.0.2 >/dev/null 2>&1 & sleep 0.3; }' || exit 1
  done"
check "the module still unloads" vip_unload
check "... and loads again" vip_load
check "nobody still cannot change the host's table" bash -c "! ${nobody[*]} vipctl map add 240.0.0.2 via 192.0.2.20 2>/dev/null"
rm -f /tmp/userns.100k /tmp/userns.events
