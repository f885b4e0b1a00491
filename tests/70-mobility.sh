#!/usr/bin/env bash
# Mobility with vipd and BIND 9: hosts move (one side, both sides, make-before-break,
# break-before-make, with DNS down, onto a lossy link, across a vipd restart) while TCP, UDP
# and ping carry on; a flushed kernel table is repaired from the daemon's.
# timeout: 900
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
tap_plan 37

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
dns_start "a b"
vipd_start a
vipd_start b
check "vipd runs on A and B" bash -c "kill -0 ${VIPD_PID[a]} && kill -0 ${VIPD_PID[b]}"
check "A reaches B by name" on a ping -c2 -i0.2 -W2 b.$DNS_ZONE

head -c 1500000 /dev/urandom > /tmp/mob-payload
want=$(sha256sum < /tmp/mob-payload | cut -d' ' -f1)
port=6000

# transfer_across DESCRIPTION MOVE-COMMAND...: from A to B by name, a paced TCP transfer
# (about 3 s), a numbered UDP sequence (200 datagrams, one every 20 ms) and a ping (every
# 0.1 s), with MOVE-COMMAND run once all three are seen flowing. Checks that every TCP byte
# arrived intact and that the UDP sequence and the ping replies carry on after the move.
transfer_across() {
  local desc=$1; shift
  port=$((port + 1))
  rm -f /tmp/mob-tcp.out /tmp/mob-udp.out /tmp/mob-ping.out
  on b socat -u TCP4-LISTEN:$port,reuseaddr OPEN:/tmp/mob-tcp.out,creat,trunc &
  local server=$!
  on b socat -u UDP4-RECV:$((port + 1000)) OPEN:/tmp/mob-udp.out,creat,trunc &
  local udp_server=$!
  sleep 0.3
  paced_cat /tmp/mob-payload 16384 0.03 | on a socat -u - TCP4:b.$DNS_ZONE:$port &
  local client=$!
  # The UDP sender resolves b's name through A's stub: it runs inside A.
  on a python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = (socket.gethostbyname(sys.argv[1]), int(sys.argv[2]))
for i in range(1, 201):
    s.sendto(b"%d\n" % i, addr); time.sleep(0.02)
' "b.$DNS_ZONE" $((port + 1000)) &
  local udp_client=$!
  on a ping -n -i0.1 -c60 -W1 b.$DNS_ZONE > /tmp/mob-ping.out 2>&1 &
  local ping=$!
  # The move happens while all three streams run, not before one of them has started.
  if ! eventually 20 streams_flowing; then
    diag "$desc: the streams did not all start (tcp $(stat -c %s /tmp/mob-tcp.out 2>/dev/null), udp $(wc -l < /tmp/mob-udp.out 2>/dev/null), ping $(grep -c 'bytes from' /tmp/mob-ping.out))"
  fi
  "$@"
  local deadline=$((SECONDS + 60))
  while kill -0 $client 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill $client 2>/dev/null
  deadline=$((SECONDS + 10))
  while kill -0 $server 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill $server 2>/dev/null
  wait $server 2>/dev/null
  wait $udp_client $ping 2>/dev/null
  sleep 0.3; kill $udp_server 2>/dev/null; wait $udp_server 2>/dev/null
  check "$desc: TCP bytes all arrive, intact" \
    test "$(sha256sum < /tmp/mob-tcp.out | cut -d' ' -f1)" = "$want"
  # The last datagrams and pings leave well after the move: they must arrive.
  check "$desc: the UDP sequence carries on ($(sort -un /tmp/mob-udp.out | wc -l) of 200 arrived)" \
    udp_reached 190
  check "$desc: ping replies carry on ($(grep -c 'bytes from' /tmp/mob-ping.out) of 60)" \
    ping_reached 55
}
streams_flowing() {
  [ -s /tmp/mob-tcp.out ] && [ -s /tmp/mob-udp.out ] && grep -q 'bytes from' /tmp/mob-ping.out
}
udp_reached() { (( $(sort -n /tmp/mob-udp.out | tail -1) >= $1 )); }
ping_reached() { (( $(sed -n 's/.*icmp_seq=\([0-9]*\).*/\1/p' /tmp/mob-ping.out | tail -1) >= $1 )); }

a_record_is() { [ "$(dns_server_dig b "$1.$DNS_ZONE" A)" = "$(topo_addr "$1")" ]; }
peer_addr_is() { # HOST PEER: HOST's kernel maps PEER to PEER's current address
  on "$1" vipctl -j show | python3 -c '
import json, sys; t = json.load(sys.stdin)
assert any(m["peer_ip4"] == sys.argv[1] for m in t), t' "$(topo_addr "$2")"
}

# 1. One-sided, break-before-make.
transfer_across "one-sided move of A (break-before-make)" topo_move a 2 break
check "dig shows A's new address" eventually 5 a_record_is a
check "B's kernel maps A to A's new address" peer_addr_is b a
check "A's hint was acknowledged" bash -c "grep -q 'all active partners hinted.*acked=1' $DNS_DIR/a/vipd.log"

# 2. Both move at the same moment.
both_move() {
  topo_move a 1 & local pa=$!
  topo_move b 1 & local pb=$!
  wait $pa $pb
  _topo_host_lan[a]=1 _topo_host_lan[b]=1 # (the moves ran in subshells)
}
transfer_across "two-sided move (A and B at once)" both_move
both_records() { a_record_is a && a_record_is b; }
both_follow() { peer_addr_is a b && peer_addr_is b a; }
check "dig shows both new addresses" eventually 5 both_records
check "each maps the other to its new address" both_follow

# 3. Make-before-break.
transfer_across "one-sided move of A (make-before-break)" topo_move a 2 make
check "B follows A (make-before-break)" peer_addr_is b a
check "dig shows A's new address (make-before-break)" eventually 5 a_record_is a

# 4. DNS unreachable: the hint alone carries a one-sided move.
kill -STOP "$DNS_NAMED_PID"
transfer_across "move with the DNS server frozen" topo_move a 1
check "B follows A without DNS" peer_addr_is b a
kill -CONT "$DNS_NAMED_PID"
check "A's record catches up once DNS is back" eventually 15 a_record_is a

# 5. A lossy new link: the move must get through the loss (hints are retransmitted); the
# loss is lifted once B follows, since TCP itself crawls at 30% loss.
lossy_move() {
  topo_move a 2
  eventually 30 peer_addr_is b a
  lossy_followed=$?
  topo_netem a 2 "delay 0ms"
}
topo_netem a 2 "loss 30%"
transfer_across "move onto a link with 30% loss" lossy_move
check "B followed A on the lossy link" test "$lossy_followed" = 0
check "dig shows A's new address (lossy link)" eventually 10 a_record_is a

# 6. vipd killed with SIGKILL during a transfer, restarted, then A moves.
restart_then_move() {
  kill -9 "${VIPD_PID[a]}"; wait "${VIPD_PID[a]}" 2>/dev/null; unset "VIPD_PID[a]"
  vipd_start a
  topo_move a 1
}
transfer_across "vipd kill -9, restart and a move during one transfer" restart_then_move
check "the restarted vipd recovered its partner from the kernel table" \
  grep -q "recovered partners from the kernel table partners=1" "$DNS_DIR/a/vipd.log"
check "B follows A after the restart" peer_addr_is b a
check "dig shows A's new address (after the restart)" eventually 5 a_record_is a

# 7. B's kernel loses its table while its daemon holds the pairs: A's next packets make B
# reinstall what it holds. (A host that lost its daemon's state too: tests/62-attacks.sh.)
on b vipctl map flush > /dev/null
check "after B's table is flushed, A reaches B again" eventually 20 on a ping -c1 -W1 b.$DNS_ZONE
check "B reinstalled the mapping it held" grep -q "the kernel lost a mapping we hold" "$DNS_DIR/b/vipd.log"
check "... pointing at A" peer_addr_is b a
