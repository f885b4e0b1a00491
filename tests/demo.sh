#!/usr/bin/env bash
# The demo: hosts A and B behind a router, each running vipd, with BIND 9 serving vip.test.
# A looks B up by name (and gets a negotiated VIP), then moves from LAN1 to LAN2 in the
# middle of a TCP transfer. vipd notices, updates DNS and tells B; the transfer carries on.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
tap_plan 5

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
dns_start "a b"
vipd_start a
vipd_start b
diag "$(vipctl version | tr '\n' ' ')"
diag "A is at $(topo_addr a) (LAN1), B at $(topo_addr b) (LAN2); BIND at $TOPO_DNS_ADDR"
vip_b=$(on a dig +short b.$DNS_ZONE)
diag "A asks its vipd for b.vip.test: $vip_b (negotiated with B's vipd)"
check "A pings B by name" on a ping -c3 -i0.2 b.$DNS_ZONE
diag "A's table: $(on a vipctl show | tr "\n" " ")"
diag "B's table: $(on b vipctl show | tr "\n" " ")"

head -c 4000000 /dev/urandom > /tmp/demo.data
on b socat -u TCP4-LISTEN:7000,reuseaddr OPEN:/tmp/demo.out,creat,trunc &
server=$!
sleep 0.5
diag "A sends 4 MB to b.vip.test, 400 KB a second"
paced_cat /tmp/demo.data 40000 0.1 | on a socat -u - TCP4:b.$DNS_ZONE:7000 &
client=$!
sleep 4
topo_move a 2
diag "A moved: now at $(topo_addr a) (LAN2), nobody touched a mapping by hand"
sleep 1
diag "A's vipd: $(grep -E 'address changed|partners hinted|DNS updated' "$DNS_DIR/a/vipd.log" | sed 's/^[^ ]* *//' | tr '\n' ';')"
diag "B's vipd: $(grep 'partner re-pointed' "$DNS_DIR/b/vipd.log" | sed 's/^[^ ]* *//')"
wait $client
wait $server
check "the transfer carried on across the move" test -s /tmp/demo.out
check "every byte arrived intact (sha256)" \
  test "$(sha256sum < /tmp/demo.out | cut -d' ' -f1)" = "$(sha256sum < /tmp/demo.data | cut -d' ' -f1)"
check "DNS has A's new address" test "$(dns_server_dig b a.$DNS_ZONE)" = "$(topo_addr a)"
check "B's kernel maps A to its new address" bash -c "ip netns exec vip-b vipctl show | grep -q '$(topo_addr a)'"
diag "B's table now: $(on b vipctl show | tr "\n" " ")"
rm -f /tmp/demo.data /tmp/demo.out
