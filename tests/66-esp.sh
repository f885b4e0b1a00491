#!/usr/bin/env bash
# ESP between VIPs, keyed by hand (stage 1 of docs/esp-plan.md): the kernel side of issue
# 11 with the library vipd will use (vip-xfrm, through `vip-esp`), before the protocol
# carries SPIs and derives keys. A pair's policies make ESP required both ways; its SAs
# (transport mode, VIP to VIP) are applied before vip0 encapsulates, so the wire carries
# IPIP with ESP inside. Checked: nothing leaves in clear before the SAs exist; with them,
# only ESP crosses the router and the data's marker is nowhere in the capture; plaintext,
# tampered and replayed packets that vip.ko accepts are dropped by XFRM and never
# delivered; TCP through a narrowed path (path MTU with ESP inside IPIP); removal.
# kernel-facing: also run on the debug kernel (ESP's GSO and GRO through vip0)
# timeout: 900
# duration: 34
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
source "$(dirname "$0")/lib/capture.sh"
source "$(dirname "$0")/lib/esp.sh"
tap_plan 24

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_map a b
vip_map b a
B=$(topo_addr b)
work=$(mktemp -d)
at_exit rm -rf "$work"

listening() { on "$1" ss -Hln"$2" "sport = :$3" | grep -q .; }
a_pair=(--local 240.0.0.1 --peer 240.0.0.2)
b_pair=(--local 240.0.0.2 --peer 240.0.0.1)

check "A pings B by VIP in plain IPIP before any ESP" on a ping -c2 -i0.3 -W2 240.0.0.2

# --- Policies first: from then on nothing goes in clear -----------------------------------
esp a policy "${a_pair[@]}"
esp b policy "${b_pair[@]}"
capture r a-eth1 "$work/early.pcap" "ip and host $(topo_addr a)"; dump=$CAPTURE
check_fails "with the policies and no SAs, A's ping to B's VIP gets no answer" \
  on a ping -c2 -i0.3 -W1 240.0.0.2
capture_stop $dump
check "... and not one IP packet left A (the kernel held them for an SA: $(packets_in "$work/early.pcap") seen)" \
  test "$(packets_in "$work/early.pcap")" = 0

# --- Keys: A -> B under k_ab with B's SPI, B -> A under k_ba with A's SPI -----------------
# The kernel keeps a reserved SPI's keyless state 30 s (xfrm_acq_expires): reserved here,
# just before keying (vipd keys within a round trip; the debug kernel is slow).
spi_a=$(esp a spi "${a_pair[@]}")
spi_b=$(esp b spi "${b_pair[@]}")
check "each side reserved an inbound SPI (A $spi_a, B $spi_b), keyless for now" \
  bash -c "[ '$spi_a' -ge 256 ] && [ '$spi_b' -ge 256 ] && \
    ip netns exec vip-a vip-esp list | grep -q '\"spi\":$spi_a,\"larval\":true'"
k_ab=$(key) k_ba=$(key)
esp a sa "${a_pair[@]}" --dir in --spi "$spi_a" --key "$k_ba"
esp a sa "${a_pair[@]}" --dir out --spi "$spi_b" --key "$k_ab"
esp b sa "${b_pair[@]}" --dir in --spi "$spi_b" --key "$k_ab"
esp b sa "${b_pair[@]}" --dir out --spi "$spi_a" --key "$k_ba"
check "with both SAs keyed on both sides, A pings B by VIP" \
  eventually 10 on a ping -c1 -W1 240.0.0.2
keyed_twice() { ! out=$(esp a sa "${a_pair[@]}" --dir out --spi "$spi_b" --key "$k_ab" 2>&1) && grep -q "File exists" <<<"$out"; }
check "an outbound SA cannot be keyed twice (EEXIST: its counter never starts over)" keyed_twice
inbound_twice() { ! out=$(esp a sa "${a_pair[@]}" --dir in --spi "$spi_a" --key "$k_ab" 2>&1) && grep -q "keyed already" <<<"$out"; }
check "... nor an inbound one (UPDSA would keep the old key)" inbound_twice

# --- Only ESP on the wire ---------------------------------------------------------------
size=$(by_kernel 4000000 1000000)
want=$(marker_payload "$work/payload" "$size")
capture r a-eth1 "$work/wire.pcap" "ip"; dump=$CAPTURE
on b socat -u TCP4-LISTEN:6001,bind=240.0.0.2,reuseaddr OPEN:"$work/tcp.out",creat,trunc &
server=$!
eventually 5 listening b t 6001
check "$((size / 1000000)) MB of a marker pattern over TCP from A to B by VIP" \
  on a socat -u OPEN:"$work/payload" TCP4:240.0.0.2:6001
wait $server
capture_stop $dump
check "... arrive intact (sha256)" test "$(sha256sum < "$work/tcp.out" | cut -d' ' -f1)" = "$want"
esp_n=$(packets_in "$work/wire.pcap" "ip proto 4 and ip[29] = 50")
clear_n=$(packets_in "$work/wire.pcap" "not (ip proto 4 and ip[29] = 50)")
check "every IP packet the router saw from or to A was IPIP with ESP inside ($esp_n), none other ($clear_n)" \
  test "$esp_n" -gt 100 -a "$clear_n" = 0
check "the marker is nowhere in the capture" \
  bash -c "! grep -qa '$MARKER' '$work/wire.pcap'"
diag "A's SAs: $(esp a list | tr '\n' ' ')"
check "A's outbound SA counted the transfer" \
  bash -c "ip netns exec vip-a vip-esp list | grep '\"spi\":$spi_b,' | python3 -c '
import json, sys; s = json.loads(sys.stdin.read()); assert s[\"bytes\"] > $size, s'"
# The guard of docs/esp-plan.md 4.3: a GSO packet whose ESP the offload path has not applied
# yet is dropped and counted at vip0, never sent (in clear inside IPIP).
xfrm_pending() { on a vipctl -j info | python3 -c 'import json, sys; print(json.load(sys.stdin)["stats"]["tx_xfrm_pending"])'; }
check "no packet reached vip0 with its ESP still to apply (tx_xfrm_pending, reported: $(xfrm_pending))" \
  test "$(xfrm_pending)" = 0

# --- What vip.ko accepts, XFRM still refuses -----------------------------------------------
# From A's own address (so that B's vip.ko takes the outer packet): plaintext UDP, then a
# captured ESP packet made fresh but tampered with, then captured packets intact again.
on b socat -u UDP4-RECV:6002,bind=240.0.0.2 OPEN:"$work/udp.out",creat,trunc &
udp_server=$!
eventually 5 listening b u 6002
mismatch=$(xstat b XfrmInTmplMismatch)
on a python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$B" 240.0.0.1 240.0.0.2 --inner udp --port 6002 \
  --payload "plaintext injected" --count 5
sleep 1
check "5 plaintext datagrams in IPIP from A's address: XFRM refused them (XfrmInTmplMismatch $mismatch -> $(xstat b XfrmInTmplMismatch))" \
  test "$(xstat b XfrmInTmplMismatch)" -ge $((mismatch + 5))
proto_err=$(xstat b XfrmInStateProtoError)
sent=$(on a python3 "$VIP_ROOT/tests/lib/esp_replay.py" "$work/wire.pcap" "$B" --count 3 --tamper)
sleep 1
check "3 captured ESP packets with a new sequence number and a flipped byte fail authentication ($sent sent; XfrmInStateProtoError $proto_err -> $(xstat b XfrmInStateProtoError))" \
  test "$sent" = 3 -a "$(xstat b XfrmInStateProtoError)" -ge $((proto_err + 3))
seq_err=$(xstat b XfrmInStateSeqError)
sent=$(on a python3 "$VIP_ROOT/tests/lib/esp_replay.py" "$work/wire.pcap" "$B" --count 3 --last)
sleep 1
check "3 captured ESP packets replayed intact are refused as replays (XfrmInStateSeqError $seq_err -> $(xstat b XfrmInStateSeqError))" \
  test "$sent" = 3 -a "$(xstat b XfrmInStateSeqError)" -ge $((seq_err + 3))
kill $udp_server 2>/dev/null; wait $udp_server 2>/dev/null || true
check "B's listener received none of it" test ! -s "$work/udp.out"
# The same refusals, counted by reason on the SA itself (what `vipctl peers` shows).
sa_drops() { esp b list | python3 -c '
import json, sys
s = [s for s in map(json.loads, sys.stdin) if s["spi"] == int(sys.argv[1])][0]
print(s["integrity_failed"], s["replayed"], s["too_old"])' "$spi_b"; }
read -r integrity replayed too_old < <(sa_drops)
check "B's inbound SA counts them by reason: $integrity failing authentication, $replayed replayed, $too_old too old" \
  test "$integrity" -ge 3 -a "$replayed" -ge 3

# --- Path MTU: the path to B narrowed to 1400 bytes -----------------------------------------
on r ip link set b-eth2 mtu 1400
on b ip link set eth2 mtu 1400
on b socat -u TCP4-LISTEN:6003,bind=240.0.0.2,reuseaddr OPEN:"$work/tcp3.out",creat,trunc &
server=$!
eventually 5 listening b t 6003
check "through a 1400-byte path, the transfer still completes" \
  timeout 120 ip netns exec vip-a socat -u OPEN:"$work/payload" TCP4:240.0.0.2:6003
wait $server
check "... intact" test "$(sha256sum < "$work/tcp3.out" | cut -d' ' -f1)" = "$want"
check "... and A learned the path's MTU ($(on a ip route get "$B" | grep -o 'mtu [0-9]*'))" \
  bash -c "ip netns exec vip-a ip route get $B | grep -q 'mtu 1400'"

# --- Removal --------------------------------------------------------------------------------
esp a remove "${a_pair[@]}"
esp b remove "${b_pair[@]}"
check "after removal neither side has an SA or a policy of ours left" \
  bash -c "[ -z \"\$(ip netns exec vip-a vip-esp list)\" ] && [ -z \"\$(ip netns exec vip-b vip-esp list)\" ] && \
    [ -z \"\$(ip netns exec vip-a ip xfrm policy)\" ] && [ -z \"\$(ip netns exec vip-b ip xfrm policy)\" ]"
check "... and the pair works in plain IPIP again" on a ping -c2 -i0.3 -W2 240.0.0.2
# The injection of before, without the policies, is delivered: the listener that got
# nothing above would have heard it.
on b socat -u UDP4-RECV:6004,bind=240.0.0.2 OPEN:"$work/udp2.out",creat,trunc &
udp_server=$!
eventually 5 listening b u 6004
on a python3 "$VIP_ROOT/tests/lib/ipip_send.py" "$B" 240.0.0.1 240.0.0.2 --inner udp --port 6004 \
  --payload "plaintext injected" --count 5
check "without the policies the same injection reaches B's listener" \
  eventually 5 grep -q "plaintext injected" "$work/udp2.out"
kill $udp_server 2>/dev/null; wait $udp_server 2>/dev/null || true
