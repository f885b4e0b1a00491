#!/usr/bin/env bash
# vipd against a real BIND 9: names resolve to negotiated VIPs through the stub, both ends
# hold the symmetric mapping, legacy hosts keep their physical addresses, negotiation
# survives a lossy link, keys are pinned, and bad keys or garbage are refused.
# timeout: 600
# duration: 61
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
tap_plan 44

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1 d:2 dns

# (Started outside `check`, whose subshell would lose the process IDs.)
dns_start "a b d" "c"
check "BIND serves vip.test" dns_server_dig a "$DNS_ZONE" SOA
for h in a b d; do
  vipd_start $h
  check "vipd starts on ${h^^}" vipd_running $h
done
check "A's vipd created and configured vip0" bash -c \
  "ip netns exec vip-a ip -br addr show vip0 | grep -q ' 24[0-9]\.\|25[0-5]\.' && ip netns exec vip-a ip route show 240.0.0.0/4 | grep -q vip0"

magic_ok() { [[ $(dns_server_dig a "$MAGIC_PREFIX$1.$DNS_ZONE" A) =~ ^2(4[0-9]|5[0-5])\. ]]; }
check "dig shows A's magic record, a class-E VIP" magic_ok a
check "dig shows B's magic record" magic_ok b
check "dig shows A's address record" \
  bash -c "[ \"\$(ip netns exec vip-a dig +short @$TOPO_DNS_ADDR a.$DNS_ZONE A)\" = $(topo_addr a) ]"

# First contact: the stub negotiates and answers with B's VIP.
vip_b=$(dns_dig a b.$DNS_ZONE A)
in_range() { [[ $1 =~ ^2(4[0-9]|5[0-5])\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }
check "A's stub answers b.vip.test with a VIP ($vip_b)" in_range "$vip_b"
check "getent (the libc resolver) gives the same VIP" \
  bash -c "[ \"\$(ip netns exec vip-a getent ahostsv4 b.$DNS_ZONE | awk 'NR==1{print \$1}')\" = '$vip_b' ]"
check "A pings B by name" on a ping -c3 -i0.2 -W2 b.$DNS_ZONE
# B also has an IPv6 address in DNS: programs that ask for both families must still get
# only the VIP, or they connect around VIP and break on the next move.
on b nsupdate -k "$DNS_DIR/b/b.key" <<EOF
server $TOPO_DNS_ADDR
update add b.$DNS_ZONE 30 AAAA 2001:db8::20
send
EOF
check "DNS has an AAAA record for B" \
  bash -c "[ \"\$(ip netns exec vip-a dig +short @$TOPO_DNS_ADDR b.$DNS_ZONE AAAA)\" = 2001:db8::20 ]"
aaaa_hidden() { # the stub's own answer: NOERROR and no address
  local out; out=$(on a dig +tries=1 +timeout=15 b.$DNS_ZONE AAAA)
  grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0," <<<"$out" || { echo "$out"; return 1; }
}
check "A's stub answers B's AAAA query with no address" aaaa_hidden
check "getent ahosts (both families) gives A only B's VIP" \
  bash -c "[ \"\$(ip netns exec vip-a getent ahosts b.$DNS_ZONE | awk '{print \$1}' | sort -u)\" = '$vip_b' ]"

# The tables are symmetric: A calls B vip_b at B's address; B calls A by the VIP A uses as
# its source toward B, at A's address.
vip_a_at_b=$(on a ip -o route get "$vip_b" | sed -n 's/.* src \([0-9.]*\).*/\1/p')
map_is() { # HOST PEER_VIP ADDR LOCAL_VIP
  on "$1" vipctl -j map get "$2" | python3 -c '
import json, sys; m = json.load(sys.stdin)
assert (m["peer_ip4"], m["local_vip"]) == (sys.argv[1], sys.argv[2]), m' "$3" "$4"
}
check "A maps B's VIP to B's address, with A's VIP as local" map_is a "$vip_b" "$(topo_addr b)" "$vip_a_at_b"
check "B holds the symmetric mapping" map_is b "$vip_a_at_b" "$(topo_addr a)" "$vip_b"

# The control socket: vipctl peers, resolve; only root may use it.
peer_listed() {
  vctl a -j peers | python3 -c '
import json, sys
peers = json.load(sys.stdin)
b = [p for p in peers if p["name"] == sys.argv[1]]
assert len(b) == 1, peers
b = b[0]
assert (b["peer_vip"], b["address"], b["trust"]) == (sys.argv[2], sys.argv[3], "pinned"), b
assert b["session_age_secs"] is not None and b["key"].startswith("v=vip2 "), b' "b.$DNS_ZONE" "$vip_b" "$(topo_addr b)"
}
check "vipctl peers on A lists B: its VIP, where it is, its pinned key, a session" peer_listed
check "vipctl resolve gives B's VIP, and with --physical where B is" bash -c \
  "[ \"\$(ip netns exec vip-a vipctl --socket $DNS_DIR/a/control.sock resolve b.$DNS_ZONE)\" = $vip_b ] &&
   [ \"\$(ip netns exec vip-a vipctl --socket $DNS_DIR/a/control.sock resolve --physical b.$DNS_ZONE)\" = $(topo_addr b) ]"
unprivileged_refused() {
  local out
  out=$(on a setpriv --reuid=65534 --regid=65534 --clear-groups \
    vipctl --socket "$DNS_DIR/a/control.sock" peers 2>&1) && return 1
  echo "$out"; grep -q "Permission denied" <<<"$out"
}
check "an unprivileged user cannot use A's control socket" unprivileged_refused

# TCP and UDP by name.
head -c 2000000 /dev/urandom > /tmp/vipd-payload
on b socat -u TCP4-LISTEN:5001,reuseaddr OPEN:/tmp/vipd-tcp.out,creat,trunc &
sleep 0.5
on a socat -u OPEN:/tmp/vipd-payload TCP4:b.$DNS_ZONE:5001
wait $!
check "a TCP transfer to b.vip.test arrives intact" \
  bash -c "[ \"\$(sha256sum < /tmp/vipd-payload)\" = \"\$(sha256sum < /tmp/vipd-tcp.out)\" ]"
on b socat -u UDP4-RECV:5002 OPEN:/tmp/vipd-udp.out,creat,trunc &
udp=$!
sleep 0.5
for i in $(seq 1 10); do echo "datagram $i"; sleep 0.05; done | on a socat -u - UDP4-SENDTO:b.$DNS_ZONE:5002
sleep 1; kill $udp 2>/dev/null
check "UDP datagrams to b.vip.test arrive" grep -q "datagram 10" /tmp/vipd-udp.out

# Legacy host C: no vipd, no magic record.
check "A's stub answers legacy C with its physical address" \
  bash -c "[ \"\$(ip netns exec vip-a dig +short +tries=1 +timeout=15 c.$DNS_ZONE)\" = $(topo_addr c) ]"
check "A pings legacy C by name" on a ping -c2 -i0.2 -W2 c.$DNS_ZONE
check "legacy C pings A by name (A's published address)" on c ping -c2 -i0.2 -W2 a.$DNS_ZONE

# Other types and negative answers pass through.
check "SOA queries are forwarded" bash -c "ip netns exec vip-a dig +short @127.0.0.53 $DNS_ZONE SOA | grep -q hostmaster"
check "NXDOMAIN passes through" bash -c "ip netns exec vip-a dig @127.0.0.53 nosuch.$DNS_ZONE | grep -q 'status: NXDOMAIN'"

# A second lookup is answered from the daemon's table: even with BIND frozen.
kill -STOP "$DNS_NAMED_PID"
check "a cached lookup needs no DNS server" bash -c "[ \"\$(ip netns exec vip-a dig +short +tries=1 +timeout=3 @127.0.0.53 b.$DNS_ZONE)\" = '$vip_b' ]"
kill -CONT "$DNS_NAMED_PID"

# Negotiation with D over a link that loses 30% of packets both ways.
topo_netem d 2 "loss 30%"
vip_d=$(dns_dig a d.$DNS_ZONE A)
check "negotiation with D completes under 30% loss ($vip_d)" in_range "$vip_d"
if ! in_range "$vip_d"; then
  grep -E "d\.$DNS_ZONE|upstream|lookup failed|never answered" "$DNS_DIR/a/vipd.log" | grep -v stats | tail -12 |
    while IFS= read -r line; do diag "A: $line"; done
  grep -E "a\.$DNS_ZONE|upstream|lookup failed|REFUSED" "$DNS_DIR/d/vipd.log" | grep -v stats | tail -8 |
    while IFS= read -r line; do diag "D: $line"; done
fi
has_peer_at() { on "$1" vipctl -j show | python3 -c '
import json, sys; t = json.load(sys.stdin)
assert any(m["peer_ip4"] == sys.argv[1] for m in t), t' "$2"; }
# D installs on A's confirmation, which the loss may take a retry or two to carry (A
# answered its lookup when it installed, before D acknowledged).
check "D holds the symmetric mapping (within 10 s)" eventually 10 has_peer_at d "$(topo_addr a)"
topo_netem d 2 ""

# Garbage at B's negotiation port changes nothing.
table_of() { on "$1" vipctl -j show | python3 -c '
import json, sys
for m in sorted(json.load(sys.stdin), key=lambda m: m["peer_vip"]):
    print(m["peer_vip"], m["peer_ip4"], m["local_vip"], m["flags"])'; }
before=$(table_of b)
on a python3 - "$(topo_addr b)" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
msgs = [b"", b"\x56", b"\x56\x50\x01\x01", b"\x56\x50\x01\x01" + bytes(4) + os.urandom(60),
        b"\x56\x50\x02\x01" + bytes(100), b"\x56\x50\x01\x09" + bytes(100), os.urandom(1500)]
msgs += [os.urandom(n) for n in range(0, 200, 7)]
for m in msgs:
    s.sendto(m, (sys.argv[1], 4877))
EOF
sleep 1
check "garbage at the negotiation port leaves B running" vipd_running b
check "and B's table unchanged" test "$(table_of b)" = "$before"

# D is reinstalled (new identity key) and asks A again: A refuses the changed key.
vipd_stop d
rm -f "$DNS_DIR/d/state/identity.key" "$DNS_DIR/d/state/peers.json" "$DNS_DIR/d/state/known_peers"
on d ip link del vip0
vipd_start d
answer=$(dns_dig d a.$DNS_ZONE A)
check "A refuses D's changed key, loudly" bash -c "grep -q 'REFUSED.*d.$DNS_ZONE' $DNS_DIR/a/vipd.log"
check "D gets no VIP from A ($answer)" bash -c "! [[ '$answer' =~ ^2(4[0-9]|5[0-5])\\. ]]"
# The administrator of A accepts D's new key: vipctl unpin, and D's next lookup pairs.
pinned_before=$(grep "^d.$DNS_ZONE " "$DNS_DIR/a/state/known_peers")
check "vipctl unpin d.vip.test on A says a key was pinned" \
  bash -c "ip netns exec vip-a vipctl --socket $DNS_DIR/a/control.sock unpin d.$DNS_ZONE | grep -q 'key unpinned'"
answer=$(dns_dig d a.$DNS_ZONE A)
check "... then D gets a VIP from A ($answer)" in_range "$answer"
check "... and A's known_peers holds D's new key instead of the old" bash -c \
  "line=\$(grep '^d.$DNS_ZONE ' $DNS_DIR/a/state/known_peers) && [ -n \"\$line\" ] && [ \"\$line\" != '$pinned_before' ]"

# The same by hand: A's administrator deletes D's line from known_peers and reloads; vipd
# neither keeps the old pin nor writes the line back.
sed -i "/^d.$DNS_ZONE /d" "$DNS_DIR/a/state/known_peers"
reload_out=$(vctl a reload 2>&1)
check "vipctl reload after D's line was deleted by hand: one pinned key removed ($reload_out)" \
  grep -q "0 pinned keys added, 1 removed, 0 changed" <<<"$reload_out"
d_trust() {
  vctl a -j peers | python3 -c '
import json, sys
print([p["trust"] for p in json.load(sys.stdin) if p["name"] == sys.argv[1]][0])' "d.$DNS_ZONE"
}
check "... vipctl peers shows D's key as new, not pinned ($(d_trust))" test "$(d_trust)" = new
# vipd rewrites the file at its next pin or unpin: from the file as read again, not from
# the text it had before (which held D's line).
vctl a unpin b.$DNS_ZONE >/dev/null
neither_b_nor_d() { ! grep -q "^[bd].$DNS_ZONE " "$DNS_DIR/a/state/known_peers"; }
check "... and vipd's next rewrite of the file (an unpin of B) does not bring D's line back" \
  eventually 5 neither_b_nor_d
# SIGHUP: a configuration that does not load changes nothing; a good one is read again.
cp "$DNS_DIR/a/vipd.toml" "$DNS_DIR/a/vipd.toml.good"
echo "no_such_setting = 1" >> "$DNS_DIR/a/vipd.toml"
mark=$(wc -l < "$DNS_DIR/a/vipd.log")
kill -HUP "${VIPD_PID[a]}"
logged() { tail -n +$((mark + 1)) "$DNS_DIR/a/vipd.log" | grep -q "$1"; }
refused_and_running() { logged "reload refused, nothing changed" && vipd_running a; }
check "SIGHUP with a broken configuration: refused, vipd runs on" eventually 10 refused_and_running
mv "$DNS_DIR/a/vipd.toml.good" "$DNS_DIR/a/vipd.toml"
mark=$(wc -l < "$DNS_DIR/a/vipd.log")
kill -HUP "${VIPD_PID[a]}"
check "SIGHUP with the configuration repaired: read again" eventually 10 logged "configuration and known peers read again"

# A wrong TSIG key: start-up fails, saying why.
mkdir -p "$DNS_DIR/wrong"
sed 's/secret "[^"]*"/secret "d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nd3JvbmcK"/' "$DNS_DIR/a/a.key" > "$DNS_DIR/wrong/a.key" 2>/dev/null
chmod 600 "$DNS_DIR/wrong/a.key"
{ vipd_config a | sed "s#$DNS_DIR/a/#$DNS_DIR/wrong/#; s#127.0.0.53:53#127.0.0.54:53#"; echo; } > "$DNS_DIR/wrong/vipd.toml"
sed -i 's/^retransmit_ms = 300/retransmit_ms = 300\nport = 4878/' "$DNS_DIR/wrong/vipd.toml"
wrong_key_refused() {
  local out
  out=$(on c vipd -c "$DNS_DIR/wrong/vipd.toml" 2>&1) && return 1
  echo "$out"
  grep -q "dynamic update" <<<"$out" && grep -q "TSIG key a-key" <<<"$out"
}
check "a wrong TSIG key makes start-up fail with a clear message" wrong_key_refused
check "and leaves no vip device behind" bash -c "! ip netns exec vip-c ip link show vip0 2>/dev/null"
# A key file others may read: refused before anything is sent or touched.
chmod 644 "$DNS_DIR/wrong/a.key"
readable_key_refused() {
  local out
  out=$(on c vipd -c "$DNS_DIR/wrong/vipd.toml" 2>&1) && return 1
  echo "$out"
  grep -q "may be read by others (mode 0644).*chmod 600" <<<"$out"
}
check "a TSIG key file others may read makes start-up fail, saying how to fix it" readable_key_refused
