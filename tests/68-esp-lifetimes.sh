#!/usr/bin/env bash
# ESP lifetimes (issue 11): every SA vipd keys carries the kernel's soft and hard lifetimes
# (`[ipsec] sa_lifetime_secs`, 20 s here; the soft one 70-80 % of it). A pair in use
# crosses its soft expiries without losing a packet (200 pings), and a 16 MB TCP transfer
# across one arrives intact without a stall: the kernel's soft-expire event starts a new
# session (make before break), long before the engine's own 120-s rekey. An idle
# pair's SAs reach their hard lifetime and the kernel deletes them, keys and all, while the
# policies stay: a datagram sent then is dropped, never sent in clear. It also makes the
# kernel ask for an SA (an acquire), which starts a new session, and traffic resumes;
# `vipctl peers` shows the new SAs with their packets.
# timeout: 400
# duration: 123
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
source "$(dirname "$0")/lib/capture.sh"
source "$(dirname "$0")/lib/esp.sh"
tap_plan 15

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 dns
dns_start "a b"
lifetime='[ipsec]
sa_lifetime_secs = 20'
vipd_start a "$lifetime"
vipd_start b "$lifetime"
check "vipd runs on A and B" bash -c "kill -0 ${VIPD_PID[a]} && kill -0 ${VIPD_PID[b]}"
work=$(mktemp -d)
at_exit rm -rf "$work"

check "A reaches B by name" on a ping -c2 -i0.2 -W2 b.$DNS_ZONE
vip_b=$(dns_dig a b.$DNS_ZONE)
vip_a=$(on b vipctl -j show | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peer_vip"])')
first=$(spis a "$vip_a" "$vip_b")
diag "A's VIP $vip_a, B's $vip_b; A's outbound SA $first"
# The lifetimes of A's outbound SA: "soft hard" in seconds.
limits() {
  on a ip -s xfrm state get src "$vip_a" dst "$vip_b" proto esp spi "$1" |
    sed -n 's/.*expire add: soft \([0-9]*\)(sec), hard \([0-9]*\)(sec).*/\1 \2/p'
}
read -r soft hard <<<"$(limits "$first")"
check "A's outbound SA expires: soft after ${soft:-?} s (14-16), hard after ${hard:-?} s" \
  test "${hard:-0}" = 20 -a "${soft:-0}" -ge 14 -a "${soft:-99}" -le 16

# --- In use: the soft expiries renew the keys, nothing is lost ------------------------------
renewals=$(grep -c "ESP keys aged out" "$DNS_DIR/a/vipd.log" "$DNS_DIR/b/vipd.log" | awk -F: '{ n += $2 } END { print n }')
on a ping -q -i0.2 -c200 -W2 "$vip_b" > "$work/ping.out" 2>&1
diag "$(grep -E 'transmitted|rtt' "$work/ping.out" | tr '\n' ' ')"
now_out=$(spis a "$vip_a" "$vip_b")
check "200 pings over 40 s, across two lifetimes of the SAs: none lost" \
  grep -q " 0% packet loss" "$work/ping.out"
renewed=$(grep -c "ESP keys aged out" "$DNS_DIR/a/vipd.log" "$DNS_DIR/b/vipd.log" | awk -F: '{ n += $2 } END { print n }')
check "... the soft expiries started new sessions ($((renewed - renewals)) of them)" \
  test $((renewed - renewals)) -ge 2
check "... and A sends on a new SA ($first -> $now_out), which B receives on" \
  bash -c "[ -n '$now_out' ] && [ '$now_out' != '$first' ] &&
    ip netns exec vip-b ip xfrm state list src $vip_a dst $vip_b | grep -q 'spi $now_out '"

# --- 16 MB over TCP across rekeys: intact, and no stall -------------------------------------
size=$((16 << 20))
want=$(marker_payload "$work/payload" "$size")
# The receiver hashes what arrives and times the longest silence between two reads.
on b bash -c "socat -u TCP4-LISTEN:6004,bind=$vip_b,reuseaddr STDOUT | python3 -c '
import hashlib, json, sys, time
h, n, last, gap = hashlib.sha256(), 0, None, 0.0
while chunk := sys.stdin.buffer.read1(1 << 16):
    now = time.monotonic()
    gap = max(gap, now - last) if last is not None else 0.0
    last = now
    h.update(chunk)
    n += len(chunk)
print(json.dumps({\"bytes\": n, \"sha256\": h.hexdigest(), \"gap_ms\": round(gap * 1000)}))'" \
  > "$work/recv.json" &
server=$!
eventually 5 bash -c "ip netns exec vip-b ss -Hlnt 'sport = :6004' | grep -q ."
before_spi=$(spis a "$vip_a" "$vip_b")
# 256 chunks of 64 KiB, 0.1 s apart: 25.6 s, past a soft expiry.
paced_cat "$work/payload" 65536 0.1 | on a socat -u - TCP4:"$vip_b":6004
wait $server || true
after_spi=$(spis a "$vip_a" "$vip_b")
received() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/recv.json" "$1" 2>/dev/null; }
got=$(received bytes) gap_ms=$(received gap_ms)
check "16 MB over TCP from A to B, sent over 25.6 s across a rekey ($before_spi -> $after_spi), arrives intact (${got:-0} bytes, sha256)" \
  bash -c "[ -n '$after_spi' ] && [ '$after_spi' != '$before_spi' ] && [ '$(received sha256)' = '$want' ]"
check "... without a stall: the receiver's longest silence is ${gap_ms:-?} ms (the sender pauses 100 ms; at most 2000)" \
  test "${gap_ms:-99999}" -le 2000

# --- Idle: the keys go; nothing crosses in clear; the next packet brings new ones ----------
no_sas() {
  [ "$(count sas a "$vip_a" "$vip_b")" = 0 ] && [ "$(count sas a "$vip_b" "$vip_a")" = 0 ] &&
    [ "$(count sas b "$vip_a" "$vip_b")" = 0 ] && [ "$(count sas b "$vip_b" "$vip_a")" = 0 ]
}
check "idle, the pair's SAs reach their hard lifetime at both ends, and the kernel deletes them" \
  eventually 60 no_sas
check "... the policies stay: ESP or nothing" \
  test "$(on a ip xfrm policy list | grep -c "proto esp reqid $((REQID)) mode transport")" -ge 2
capture r a-eth1 "$work/wire.pcap" "ip proto 4 and host $(topo_addr a)"; dump=$CAPTURE
on b socat -u UDP4-RECV:6003,bind="$vip_b" OPEN:"$work/udp.out",creat,trunc &
udp_server=$!
eventually 5 bash -c "ip netns exec vip-b ss -Hlnu 'sport = :6003' | grep -q ."
outnostates=$(xstat a XfrmOutNoStates)
echo "sent with no SA" | on a socat -u - UDP4-SENDTO:"$vip_b":6003
replied() { on a ping -c1 -W1 "$vip_b" > /dev/null 2>&1; }
check "the next packets start a new session: A pings B again" eventually 20 replied
sleep 1
kill $udp_server 2>/dev/null; wait $udp_server 2>/dev/null || true
capture_stop $dump
clear_n=$(packets_in "$work/wire.pcap" "ip[29] != 50")
check "the datagram sent with no SA was dropped ($outnostates -> $(xstat a XfrmOutNoStates) with no state): B's listener got nothing, and nothing left A in clear ($clear_n)" \
  test ! -s "$work/udp.out" -a "$clear_n" = 0 -a "$(xstat a XfrmOutNoStates)" -gt "$outnostates"
check "... the kernel's acquire asked for it (A's log)" grep -q "a packet found no SA" "$DNS_DIR/a/vipd.log"
again=$(spis a "$vip_a" "$vip_b")
check "... and the pair has new SAs both ways ($again)" \
  bash -c "[ -n '$again' ] && [ '$again' != '$now_out' ] &&
    [ \"\$(ip netns exec vip-b ip xfrm state list src $vip_b dst $vip_a | grep -c '^src')\" -ge 1 ]"
# vipctl peers shows the pair's SAs as the kernel counts them.
peers_esp() {
  ip netns exec vip-a vipctl -j --socket "$DNS_DIR/a/control.sock" peers | python3 -c '
import json, sys
peer = next(p for p in json.load(sys.stdin) if p["peer_vip"] == sys.argv[1])
out, inb = peer["esp"]["outbound"], peer["esp"]["inbound"]
print(out[0]["spi"], out[0]["aead"], out[0]["packets"], len(inb))' "$vip_b"
}
read -r shown_spi shown_aead shown_packets shown_in <<<"$(peers_esp)"
check "vipctl peers on A shows the outbound SA ($shown_spi, $shown_aead, $shown_packets packets) and $shown_in inbound" \
  test "$shown_spi" = "$again" -a "${shown_packets:-0}" -gt 0 -a "${shown_in:-0}" -ge 1 -a -n "$shown_aead"
