#!/usr/bin/env bash
# The packet fuzzer (userland/vip-fuzz): a million malformed and odd packets at B from C,
# an attacker on B's LAN (broken outer and inner headers, every truncation, options, outer
# and inner fragments, nested IPIP, VIP and non-VIP addresses, TTL 0 and 1, every ECN and
# DSCP value, forged outer sources), while a real TCP transfer runs from A to B. The
# transfer keeps its sha256, and B's drop counters account for what was sent.
# kernel-facing: also run on the debug kernel
# timeout: 900
# duration: 120
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
tap_plan 10

count=${VIP_FUZZ_PACKETS:-$(scaled 1000000)}
seconds=${VIP_FUZZ_SECONDS:-300}
vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:2
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b; vip_map b a
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))' "$1"; }
stats() { on b vipctl -j info; }
link_stat() { on "$1" ip -j -s link show "$2" | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(eval(sys.argv[1], {}, s))' "$3"; }

# The transfer: paced, so that it runs for as long as the fuzzer may (it is stopped once
# the fuzzer is done, and must then have arrived intact up to where it got): 64 MiB at up
# to 640 KiB/s, or on the debug kernel, whose fuzzer takes about a minute after a minute of
# setting up, 8 MiB at 40 KiB/s.
head -c $(($(by_kernel 64 8) * 1024 * 1024)) /dev/urandom > /tmp/fuzz.payload
on b socat -u TCP4-LISTEN:7000,bind=240.0.0.2,reuseaddr OPEN:/tmp/fuzz.out,creat,trunc &
server=$!
eventually 30 bash -c "ip netns exec vip-b ss -ltn 'sport = :7000' | grep -q LISTEN"
paced_cat /tmp/fuzz.payload "$(by_kernel 65536 4096)" 0.1 | on a socat -u - TCP4:240.0.0.2:7000 &
client=$!
eventually 30 test -s /tmp/fuzz.out

before=$(stats)
rx_before=$(link_stat b eth2 'rx["packets"]')
drops_before=$(( $(link_stat b eth2 'rx["dropped"]') + $(link_stat c eth2 'tx["dropped"]') ))
out=$(on c vip-fuzz packets --ifname eth2 --target-mac "$(on b cat /sys/class/net/eth2/address)" \
  --target "$(topo_addr b)" --target-vip 240.0.0.2 --peer-vip 240.0.0.1 --peer "$(topo_addr a)" \
  --count "$count" --seconds "$seconds" --seed 7); rc=$?
# Whether the transfer outlasted the fuzzer, seen at once (what follows takes seconds).
kill -0 $client 2>/dev/null; outlasted=$?
diag "fuzzer: $out"
sleep 2
after=$(stats)
drops=$(( $(link_stat b eth2 'rx["dropped"]') + $(link_stat c eth2 'tx["dropped"]') - drops_before ))
check "the fuzzer sent $(field sent <<<"$out") packets" test $rc = 0 -a "$(field sent <<<"$out")" -ge "$count"
check "the transfer was still running when it finished" test $outlasted = 0
delta() { echo $(( $(field "stats['$1']" <<<"$after") - $(field "stats['$1']" <<<"$before") )); }
sent() { field "by_class.get('$1', 0)" <<<"$out"; }
diag "drops before the stack: $drops; B's counters moved: malformed $(delta rx_malformed), unknown $(delta rx_unknown), moved $(delta rx_moved), wrong local $(delta rx_wrong_local)"
# Exact unless frames were dropped before the stack (counted, and allowed for).
accounts() { # COUNTER SENT [EXTRA]: the counter moved by SENT, up to EXTRA more, less any drops
  local moved; moved=$(delta "$1")
  (( moved <= $2 + ${3:-0} && moved >= $2 - drops ))
}
check "every broken inner header is counted ($(delta rx_malformed) of $(sent malformed))" accounts rx_malformed "$(sent malformed)"
check "every unknown sender is counted ($(delta rx_unknown) of $(sent unknown))" accounts rx_unknown "$(sent unknown)"
check "every forged source is counted as moved ($(delta rx_moved) of $(sent moved), plus up to $(sent moved_fragmented) reassembled)" \
  accounts rx_moved "$(sent moved)" "$(sent moved_fragmented)"
check "every wrong local VIP is counted ($(delta rx_wrong_local) of $(sent wrong_local))" accounts rx_wrong_local "$(sent wrong_local)"
check "B's link saw them all (less $drops dropped before the stack)" \
  test $(( $(link_stat b eth2 'rx["packets"]') - rx_before )) -ge $(( $(field sent <<<"$out") - drops ))
kill $client 2>/dev/null; wait $client 2>/dev/null
sleep 1; kill $server 2>/dev/null; wait $server 2>/dev/null
got=$(stat -c %s /tmp/fuzz.out 2>/dev/null || echo 0)
check "the transfer's $((got / 1024)) KiB arrived intact" \
  test "$got" -gt 0 -a "$(head -c "$got" /tmp/fuzz.payload | sha256sum)" = "$(sha256sum < /tmp/fuzz.out)"
check "A and B still talk by VIP" on a ping -c2 -i0.2 -W2 240.0.0.2
check "the module unloads" bash -c "ip netns pids vip-a | xargs -r kill; ip netns pids vip-b | xargs -r kill; sleep 0.5; timeout 60 rmmod vip"
rm -f /tmp/fuzz.payload /tmp/fuzz.out
