#!/usr/bin/env bash
# ESP keyed by vipd (issue 11, docs/protocol.md "ESP between VIPs"): a pair made by a
# lookup carries its packets in ESP between the VIPs, with SPIs and keys both ends derive
# from their session (nothing about them crosses the wire). Checked: each end's outbound SA
# is the other's inbound SA, same SPI and key; only ESP crosses the router and the data's
# marker is not in the capture; plaintext that vip.ko accepts never reaches a listener;
# a host with ESP off gets no pair with a host that requires it, either way round (the
# name resolves to the address); after vipd is killed the pair keeps working on its SAs,
# the next session replaces them (new SPIs, the old outbound SA gone), and what an earlier
# run left for pairs vipd no longer holds is removed at start, while other IPsec users'
# SAs stay.
# timeout: 600
# duration: 37
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
source "$(dirname "$0")/lib/capture.sh"
source "$(dirname "$0")/lib/esp.sh"
tap_plan 20

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1 dns
dns_start "a b c"
vipd_start a
vipd_start b
vipd_start c '[ipsec]
mode = "off"'
check "vipd runs on A, B and C (C with ESP off)" \
  bash -c "kill -0 ${VIPD_PID[a]} && kill -0 ${VIPD_PID[b]} && kill -0 ${VIPD_PID[c]}"
work=$(mktemp -d)
at_exit rm -rf "$work"

listening() { on "$1" ss -Hln"$2" "sport = :$3" | grep -q .; }

check "A reaches B by name" on a ping -c2 -i0.2 -W2 b.$DNS_ZONE
vip_a=$(on b vipctl -j show | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peer_vip"])')
vip_b=$(dns_dig a b.$DNS_ZONE)
diag "A's VIP $vip_a, B's $vip_b"
check "A has one SA each way with B, of our reqid" \
  test "$(count sas a "$vip_a" "$vip_b")" = 1 -a "$(count sas a "$vip_b" "$vip_a")" = 1
# The sender's one SA from SRC to DST is among the receiver's (same SPI, algorithm and
# key: compared, never printed); the receiver keeps a few older inbound SAs after a rekey.
same_sa() {
  local from to out
  if [ "$1" = "$vip_a" ]; then from=a to=b; else from=b to=a; fi
  out=$(sas $from "$1" "$2")
  [ "$(grep -c . <<<"$out")" = 1 ] && grep -qxF "$out" <<<"$(sas $to "$1" "$2")"
}
check "A's outbound SA is B's inbound SA: SPI $(spis a "$vip_a" "$vip_b"), same AEAD and key" \
  same_sa "$vip_a" "$vip_b"
check "B's outbound SA is A's inbound SA: SPI $(spis b "$vip_b" "$vip_a")" same_sa "$vip_b" "$vip_a"
check "the two directions have different keys" \
  test "$(sas a "$vip_a" "$vip_b" | cut -d' ' -f2-)" != "$(sas a "$vip_b" "$vip_a" | cut -d' ' -f2-)"
check "A's policies for B require ESP both ways" \
  test "$(on a ip xfrm policy list | grep -c "proto esp reqid $((REQID)) mode transport")" -ge 2

# --- Only ESP on the wire ---------------------------------------------------------------
size=1000000
want=$(marker_payload "$work/payload" "$size")
capture r a-eth1 "$work/wire.pcap" "ip and host $(topo_addr a)"; dump=$CAPTURE
on b socat -u TCP4-LISTEN:6001,bind="$vip_b",reuseaddr OPEN:"$work/tcp.out",creat,trunc &
server=$!
eventually 5 listening b t 6001
check "1 MB of a marker pattern over TCP from A to B by name" \
  on a socat -u OPEN:"$work/payload" TCP4:b.$DNS_ZONE:6001
wait $server || true
capture_stop $dump
check "... arrives intact (sha256)" test "$(sha256sum < "$work/tcp.out" | cut -d' ' -f1)" = "$want"
esp_n=$(packets_in "$work/wire.pcap" "ip proto 4 and ip[29] = 50")
clear_n=$(packets_in "$work/wire.pcap" "ip proto 4 and ip[29] != 50")
check "every IPIP packet between A and the router carried ESP ($esp_n), none anything else ($clear_n)" \
  test "$esp_n" -gt 100 -a "$clear_n" = 0
check "the marker is nowhere in the capture" bash -c "! grep -qa '$MARKER' '$work/wire.pcap'"

# --- Plaintext that vip.ko takes (A's own address outside), XFRM refuses -------------------
on b socat -u UDP4-RECV:6002,bind="$vip_b" OPEN:"$work/udp.out",creat,trunc &
udp_server=$!
eventually 5 listening b u 6002
mismatch=$(xstat b XfrmInTmplMismatch)
on a python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$(topo_addr b)" "$vip_a" "$vip_b" --inner udp \
  --port 6002 --payload "plaintext injected" --count 5
sleep 2
kill $udp_server 2>/dev/null; wait $udp_server 2>/dev/null || true
check "5 plaintext datagrams in IPIP from A's address: B's listener got none" \
  test ! -s "$work/udp.out"
check "... XFRM refused them (XfrmInTmplMismatch $mismatch -> $(xstat b XfrmInTmplMismatch))" \
  test "$(xstat b XfrmInTmplMismatch)" -ge $((mismatch + 5))

# --- ESP off meets ESP required: no pair, either way round ----------------------------------
check "A (ESP required) looking up C (ESP off) gets C's address, not a VIP" \
  bash -c "[ \"\$(ip netns exec vip-a dig +short +tries=1 +timeout=15 c.$DNS_ZONE)\" = $(topo_addr c) ]"
check "C (ESP off) looking up A gets A's address: A ended the negotiation" \
  bash -c "[ \"\$(ip netns exec vip-c dig +short +tries=1 +timeout=15 a.$DNS_ZONE)\" = $(topo_addr a) ] &&
    grep -q 'does not offer ESP' '$DNS_DIR/a/vipd.log'"

# --- A killed: its pair goes on; the next session replaces the SAs; left-overs go ---------
old_out=$(spis a "$vip_a" "$vip_b")
# What a crash could leave: a reqid-R SA and policy for a pair vipd does not hold; and
# another IPsec user's SA, which must stay.
key=0x$(head -c 36 /dev/urandom | od -An -tx1 | tr -d ' \n')
on a ip xfrm state add src 240.9.9.9 dst "$vip_a" proto esp spi 0x999 reqid $REQID mode transport \
  aead 'rfc4106(gcm(aes))' "$key" 128
on a ip xfrm policy add src 240.9.9.9/32 dst 0.0.0.0/0 dir in \
  tmpl src 240.9.9.9 dst "$vip_a" proto esp reqid $REQID mode transport
on a ip xfrm state add src 240.9.9.8 dst "$vip_a" proto esp spi 0x998 reqid 7 mode transport \
  aead 'rfc4106(gcm(aes))' "$key" 128
kill -9 "${VIPD_PID[a]}"; wait "${VIPD_PID[a]}" 2>/dev/null || true
check "with A's vipd dead, A still pings B over the pair's SAs" on a ping -c2 -i0.3 -W2 "$vip_b"
vipd_start a
check "restarted, A's vipd removed the left-over SA and policy of our reqid, kept reqid 7's" \
  bash -c "! ip netns exec vip-a ip xfrm state list | grep -q 'spi 0x00000999' &&
    ! ip netns exec vip-a ip xfrm policy list | grep -q 240.9.9.9 &&
    ip netns exec vip-a ip xfrm state list | grep -q 'spi 0x00000998'"
# Pinging keeps the pair active, so the adopted pair (no session) is rekeyed at the next
# look at the table.
on a ping -q -i0.5 -w60 "$vip_b" > /dev/null 2>&1 &
pinger=$!
new_out() { local s; s=$(spis a "$vip_a" "$vip_b"); [ -n "$s" ] && [ "$s" != "$old_out" ]; }
check "a new session replaced A's outbound SA ($old_out -> $(eventually 40 new_out; spis a "$vip_a" "$vip_b" | tr '\n' ' '))" \
  new_out
kill $pinger 2>/dev/null; wait $pinger 2>/dev/null || true
new_out || {
  diag "A's table: $(on a vipctl -j show)"
  vipd_stats a; sleep 1
  for h in a b; do diag "$h's log, last lines:"; tail -n 25 "$DNS_DIR/$h/vipd.log" | cut -c1-240 | sed 's/^/#   /'; done
}
one_shared_out() { same_sa "$vip_a" "$vip_b" && [ "$(count sas a "$vip_a" "$vip_b")" = 1 ]; }
check "... B receives on it (same SPI and key), and A keeps one outbound SA to B" eventually 5 one_shared_out
check "... and A pings B on the new SAs" on a ping -c2 -i0.3 -W2 "$vip_b"
diag "A's SAs: $(on a ip xfrm state list | grep -c '^src') states; XfrmInNoStates $(xstat a XfrmInNoStates), XfrmOutNoStates $(xstat a XfrmOutNoStates)"
