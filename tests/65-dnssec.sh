#!/usr/bin/env bash
# DNSSEC-vouched keys (paper section 3.4; docs/dnssec-plan.md section 4), with a signed BIND 9
# zone and vipd given the zone's key as trust anchor ([dnssec] trust_anchor) on A, B, D, V.
#   1. The zone is signed, and the anchor is its one key (the CSK).
#   2. A first contact whose key record validates is taken without trust on first use, by
#      both ends (trust "dnssec", keys_vouched).
#   3. A key record that does not validate is refused, without a pin: V asks an attacker's
#      resolver (E, an unsigned copy of the zone with forged key records). As initiator V
#      sends E nothing; as responder V does not pair with a forged x.vip.test. A name the
#      signed zone proves has no key record is refused too, but not counted as bogus.
#   4. A key change that validates is a rotation, not a refusal: D is reinstalled (new
#      identity key) and A, which had pinned D's old key, takes the new one as responder
#      (D asks A) and, after a second reinstall, as initiator (A renegotiates on D's NAK cue).
# Plus (plan section 3): an anchor file with a DS record instead of a DNSKEY stops vipd at start.
# Its own script: 62-attacks.sh steps the clock back an hour, and BIND's signatures start an
# hour before they were made (RRSIG inception now - 3600), so the two must not share a run.
# timeout: 900
# duration: 105
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
source "$(dirname "$0")/lib/capture.sh"
tap_plan 43

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:1 d:2 e:1 v:1 dns
# (Started outside `check`, whose subshell would lose the process IDs and DNS_ANCHOR.)
dns_start "a b d v" "" signed
DNSSEC="[dnssec]
trust_anchor = \"${DNS_ANCHOR:-$DNS_DIR/trust-anchor.key}\""
E=$(topo_addr e) V=$(topo_addr v)

# HOST's vipctl peers: NAME's FIELD ("absent" when NAME is not listed).
peer_field() {
  vctl "$1" -j peers | python3 -c '
import json, sys
print(next((p[sys.argv[2]] for p in json.load(sys.stdin) if p["name"] == sys.argv[1]), "absent"))' "$2" "$3"
}
trust_is() { local t; t=$(peer_field "$1" "$2" trust); echo "trust=$t"; [ "$t" = "$3" ]; }
pinned() { grep -q "^$2 " "$DNS_DIR/$1/state/known_peers" 2>/dev/null; }
pin_line() { grep "^$2 " "$DNS_DIR/$1/state/known_peers" 2>/dev/null; }
# The key (base64) NAME publishes in the signed zone.
published_key() { dns_server_dig e "_vipkey.$1" TXT | sed 's/.*p=//; s/"//'; }
# HOST pins NAME's currently published key.
pins_published() { local k; k=$(published_key "$2") && [ -n "$k" ] && grep -q "^$2 x25519 $k" "$DNS_DIR/$1/state/known_peers"; }
count_log() { grep -c -- "$2" "$DNS_DIR/$1/vipd.log"; }
# HOST logged a line with PATTERN about NAME.
logged_about() { grep -- "$2" "$DNS_DIR/$1/vipd.log" | grep -q -- "$3"; }
log_mark() { wc -l < "$DNS_DIR/$1/vipd.log"; }
# (On failure: what HOST logged about NAME since, the last 20 lines.)
logged_since() {
  local about; about=$(tail -n +$(($2 + 1)) "$DNS_DIR/$1/vipd.log" | grep -- "$4")
  grep -- "$3" <<<"$about" | grep -q . || { tail -20 <<<"$about"; return 1; }
}
table_of() { on "$1" vipctl -j show | python3 -c '
import json, sys
for m in sorted(json.load(sys.stdin), key=lambda m: m["peer_vip"]):
    print(m["peer_vip"], m["peer_ip4"], m["local_vip"], m["flags"])'; }
maps_to() { table_of "$1" | grep -q " $2 "; }
all_running() { local h; for h in "$@"; do vipd_running "$h" || return 1; done; }
# A reinstall (and reboot): a new identity key, no partners, no pins, and nothing in the
# kernel (mappings, SAs, policies), which a mere restart of vipd would keep serving.
reinstall() {
  vipd_stop "$1"
  rm -f "$DNS_DIR/$1/state/identity.key" "$DNS_DIR/$1/state/peers.json" "$DNS_DIR/$1/state/known_peers"
  on "$1" vipctl map flush > /dev/null
  on "$1" ip xfrm state flush
  on "$1" ip xfrm policy flush
  on "$1" ip link del vip0
  vipd_start "$1" "$DNSSEC"
}
# NAME's key record in the zone is KEY's successor: a new key, and signed.
republished_signed() { local k; k=$(published_key "$1.$DNS_ZONE"); [ -n "$k" ] && [ "$k" != "$2" ] && key_signed "$1"; }

# --- 1. The zone is signed; the anchor is its one key --------------------------------------
check "1.1 BIND signs vip.test: the SOA comes with an RRSIG" dns_signed
anchor_is_csk() {
  cat "$DNS_ANCHOR"
  [ "$(wc -l < "$DNS_ANCHOR")" = 1 ] &&
    [ "$(awk '$1 == "vip.test." && $4 == "DNSKEY" && $5 == 257 && $6 == 3 && $7 == 13' "$DNS_ANCHOR" | wc -l)" = 1 ]
}
check "1.2 the anchor is the zone's CSK: one DNSKEY, flags 257, algorithm 13" anchor_is_csk
# hickory marks the whole DNSKEY RRset bogus if one key in it is not an anchor (plan, section 1).
served_is_anchor() {
  [ "$(on dns dig +short +norec "@$TOPO_DNS_ADDR" "$DNS_ZONE" DNSKEY | tr -d ' ' | sort)" = \
    "$(awk '{ k = ""; for (i = 5; i <= NF; i++) k = k $i; print k }' "$DNS_ANCHOR" | sort)" ]
}
check "1.3 the zone's DNSKEY RRset is exactly the anchor" served_is_anchor
for h in a b d; do vipd_start $h "$DNSSEC"; done
# V asks E, the attacker's resolver of part 3 (an unsigned copy of the zone, forged key
# records for b and x, both the attacker's key); its updates still go to the real server.
mkdir -p "$DNS_DIR/e"
forged_key=$(on e vip-attack key --keys "$DNS_DIR/e/attack.key")
dns_start_forged e "b IN A $E
${MAGIC_PREFIX}b IN A 240.66.0.1
_vipkey.b IN TXT \"$forged_key\"
x IN A $E
${MAGIC_PREFIX}x IN A 240.66.0.2
_vipkey.x IN TXT \"$forged_key\"
c IN A $E
${MAGIC_PREFIX}c IN A 240.66.0.3
_vipkey.c IN CNAME _vipkey.b"
VIPD_UPSTREAM[v]=$E:53
vipd_start v "$DNSSEC"
check "1.4 vipd runs on A, B, D and V, with the anchor" all_running a b d v
all_keys_signed() { local h; for h in a b d v; do key_signed $h || { echo "_vipkey.$h unsigned"; return 1; }; done; }
# At once: with inline-signing no, each update is signed in its own transaction.
check "1.5 each host's key record, as vipd published it, is signed" all_keys_signed
check "1.6 BIND's own validator (delv) proves A's key record from the anchor alone" \
  dns_validates "_vipkey.a.$DNS_ZONE" TXT

# --- 2. Validated first contact: no trust on first use -------------------------------------
vip_b=$(dns_dig a b.$DNS_ZONE A)
check "2.1 A's stub answers b.vip.test with a VIP ($vip_b)" in_vip_range "$vip_b"
check "2.2 A pings B by name" on a ping -c2 -i0.2 -W2 b.$DNS_ZONE
check "2.3 vipctl peers on A: B's key is vouched by DNSSEC" trust_is a b.$DNS_ZONE dnssec
check "2.4 vipctl peers on B: A's key too (B validated it as responder)" trust_is b a.$DNS_ZONE dnssec
vouched_both() { vipd_stat_above a keys_vouched 0 && vipd_stat_above b keys_vouched 0; }
check "2.5 keys_vouched > 0 on A and on B" vouched_both
check "2.6 A logged B's key as vouched by DNSSEC" logged_about a "vouched by DNSSEC" b.$DNS_ZONE
check_fails "2.7 ... and not as pinned on first contact (TOFU)" \
  logged_about a "pinned the peer's key on first contact" b.$DNS_ZONE
check "2.8 A pinned B's published key" pins_published a b.$DNS_ZONE

# --- 3. Forged, unsigned key records are refused --------------------------------------------
e_unsigned() {
  local out; out=$(on v dig +dnssec +norec +noall +answer +tries=1 +timeout=2 "@$E" "_vipkey.b.$DNS_ZONE" TXT)
  echo "$out"; grep -q TXT <<<"$out" && ! grep -q RRSIG <<<"$out" && ! dns_validates "_vipkey.b.$DNS_ZONE" TXT "$E"
}
check "3.1 E serves a forged key record for b.vip.test, unsigned (delv does not validate it)" e_unsigned
# 3a. V as initiator.
bogus_before=$(vipd_stat_value v keys_bogus)
capture e eth1 "$DNS_DIR/to-e.pcap" "udp port 4877"; dump=$CAPTURE
answer=$(dns_dig v b.$DNS_ZONE A)
capture_stop $dump
check_fails "3.2 V's stub gives no VIP for b.vip.test ($answer)" in_vip_range "$answer"
check "3.3 V refused, loudly: the key record for b.vip.test does not validate" \
  logged_about v "REFUSED: the key record for b.$DNS_ZONE does not validate" "DNSSEC"
check "3.4 not one negotiation packet reached E ($(packets_in "$DNS_DIR/to-e.pcap"))" \
  test "$(packets_in "$DNS_DIR/to-e.pcap")" = 0
check_fails "3.5 V pinned nothing for b.vip.test" pinned v b.$DNS_ZONE
check "3.6 V's keys_bogus grew (was $bogus_before)" vipd_stat_above v keys_bogus "${bogus_before:-0}"
# 3b. V as responder: E, as x.vip.test (the attacker's key, published only by E), initiates.
v_key=$(dns_server_dig e "_vipkey.v.$DNS_ZONE" TXT)
v_magic=$(dns_server_dig e "${MAGIC_PREFIX}v.$DNS_ZONE" A)
bogus_before=$(vipd_stat_value v keys_bogus)
on e vip-attack partner --keys "$DNS_DIR/e/attack.key" --name x.$DNS_ZONE --addr "$E" \
  --home-vip 240.66.0.2 --peer v.$DNS_ZONE --peer-addr "$V" --peer-key "$v_key" \
  --peer-vip "$v_magic" --claim "$E" --hold 1 > "$DNS_DIR/x.out" 2>&1
rc=$?
diag "vip-attack partner as x.vip.test: exit $rc: $(tail -1 "$DNS_DIR/x.out")"
check "3.7 x.vip.test gets no pair with V" test "$rc" != 0 -a -n "$(grep 'no pair with' "$DNS_DIR/x.out")"
check "3.8 V refused x's handshake: its key record does not validate" \
  logged_about v "REFUSED: the key record for x.$DNS_ZONE does not validate" "DNSSEC"
no_x_at_v() { ! pinned v x.$DNS_ZONE && ! maps_to v "$E" && [ "$(peer_field v x.$DNS_ZONE trust)" = absent ]; }
check "3.9 V has no pin, no partner and no mapping for x.vip.test" no_x_at_v
check "3.10 V's keys_bogus grew again (was $bogus_before)" vipd_stat_above v keys_bogus "${bogus_before:-0}"
# 3c. A validated denial is no attack: E, as nokey.vip.test (no key record in the signed zone),
# initiates to A, which asks the real server. Refused as unpublished, not counted as bogus.
bogus_before=$(vipd_stat_value a keys_bogus)
mark=$(log_mark a)
on e vip-attack partner --keys "$DNS_DIR/e/attack.key" --name nokey.$DNS_ZONE --addr "$E" \
  --home-vip 240.66.0.3 --peer a.$DNS_ZONE --peer-addr "$(topo_addr a)" \
  --peer-key "$(dns_server_dig e "_vipkey.a.$DNS_ZONE" TXT)" \
  --peer-vip "$(dns_server_dig e "${MAGIC_PREFIX}a.$DNS_ZONE" A)" --claim "$E" --hold 1 > "$DNS_DIR/nokey.out" 2>&1
check "3.11 A refused nokey.vip.test's handshake: the signed zone proves it publishes no key" \
  logged_since a "$mark" "not the one DNS publishes" nokey.$DNS_ZONE
check "3.12 ... and did not count it as bogus (keys_bogus=$bogus_before)" vipd_stat_is a "keys_bogus=$bogus_before"
# 3d. A key record answered by an alias, which hickory does not prove: refused (SERVFAIL),
# not taken as "no key" (which would answer E's address: a downgrade to a legacy host).
answer=$(dns_dig v c.$DNS_ZONE A)
check "3.13 a CNAME from E at c's key record name: V's stub answers nothing, not E's address ($answer)" \
  test -z "$answer"
check "3.14 ... V logged the key record's answer as not a TXT record set" \
  logged_about v "not a TXT record set" "_vipkey.c.$DNS_ZONE"
# Control (not a case): without [dnssec], V takes E's forged key on first use and sends E
# its initiation. This is the hole the anchor closes.
vipd_stop v
vipd_start v
capture e eth1 "$DNS_DIR/to-e-tofu.pcap" "udp port 4877"; dump=$CAPTURE
on v dig +short +tries=1 +timeout=5 b.$DNS_ZONE A > /dev/null
capture_stop $dump
diag "control: V without [dnssec] sent E $(packets_in "$DNS_DIR/to-e-tofu.pcap") negotiation packet(s); V's pin for b: $(pin_line v b.$DNS_ZONE | cut -c1-40)"
vipd_stop v

# --- 4. Validated rotation ------------------------------------------------------------------
vip_a_at_d=$(dns_dig d a.$DNS_ZONE A)
check "4.1 D pairs with A ($vip_a_at_d)" in_vip_range "$vip_a_at_d"
check "4.2 A pinned D's key, vouched" trust_is a d.$DNS_ZONE dnssec
d_key=$(published_key d.$DNS_ZONE)
d_pin=$(pin_line a d.$DNS_ZONE)
# 4a. A as responder: D, reinstalled, asks A again.
reinstall d
check "4.3 D, reinstalled, published a new key record, signed" eventually 10 republished_signed d "$d_key"
mark=$(log_mark a)
answer=$(dns_dig d a.$DNS_ZONE A)
check "4.4 D gets a VIP from A again ($answer)" in_vip_range "$answer"
check "4.5 A logged the key rotation of d.vip.test, vouched by DNSSEC" \
  logged_since a "$mark" "key rotation vouched by DNSSEC" d.$DNS_ZONE
changed_pin() { local l; l=$(pin_line a d.$DNS_ZONE); [ -n "$l" ] && [ "$l" != "$d_pin" ] && pins_published a d.$DNS_ZONE; }
check "4.6 A's known_peers holds D's new key instead of the old" eventually 5 changed_pin
check "4.7 vipctl peers on A: D's key is vouched by DNSSEC" trust_is a d.$DNS_ZONE dnssec
check "4.8 A counted one key rotation" vipd_stat_is a "key_rotations=1"
# 4b. A as initiator: D is reinstalled once more while A holds their pair; A's packets to
# D's VIP draw D's NAK cue, and A negotiates again from DNS, finding a key it has not pinned.
vip_d=$(peer_field a d.$DNS_ZONE peer_vip)
d_key=$(published_key d.$DNS_ZONE)
d_pin=$(pin_line a d.$DNS_ZONE)
reinstall d
check "4.9 D, reinstalled again, published another new key record, signed" eventually 10 republished_signed d "$d_key"
mark=$(log_mark a)
reaches_d() { on a ping -c1 -W1 "$vip_d" > /dev/null; }
check "4.10 A reaches D's VIP ($vip_d) again, after D's NAK cue" eventually 30 reaches_d
check "4.11 A negotiated again on the NAK cue, as initiator" logged_since a "$mark" "NAK" d.$DNS_ZONE
check "4.12 A logged a second rotation of d.vip.test, vouched by DNSSEC" \
  logged_since a "$mark" "key rotation vouched by DNSSEC" d.$DNS_ZONE
check "4.13 A's known_peers holds D's newest key" eventually 5 changed_pin
two_rotations() { vipd_stat_is a "key_rotations=2" && trust_is a d.$DNS_ZONE dnssec; }
check "4.14 A counted two key rotations, and vouches for D's newest key" two_rotations

# --- 5. An anchor that is not a DNSKEY (plan section 3) --------------------------------------
# (The plan's item 5, that 60-vipd.sh and 62-attacks.sh stay unsigned, needs no case here.)
# hickory reads DNSKEY anchors only: a DS line must stop vipd at start, naming the file. Run
# on E (no vipd there) with its own stub address, port, state and socket.
mkdir -p "$DNS_DIR/ds"
dnssec-dsfromkey -2 "$DNS_DIR"/named/K$DNS_ZONE.+013+*.key > "$DNS_DIR/ds/anchor.ds"
{
  vipd_config v | sed "s#$DNS_DIR/v/state#$DNS_DIR/ds/state#; s#$DNS_DIR/v/control.sock#$DNS_DIR/ds/control.sock#;
    s#127.0.0.53:53#127.0.0.54:53#; s/^retransmit_ms = 300/retransmit_ms = 300\nport = 4878/"
  printf '[dnssec]\ntrust_anchor = "%s"\n' "$DNS_DIR/ds/anchor.ds"
} > "$DNS_DIR/ds/vipd.toml"
ds_anchor_refused() {
  local out rc
  out=$(on e timeout 20 vipd -c "$DNS_DIR/ds/vipd.toml" 2>&1); rc=$?
  on e ip link del vip0 2>/dev/null
  echo "exit $rc: $out" | tail -5
  ((rc != 0 && rc != 124)) && grep -q "$DNS_DIR/ds/anchor.ds" <<<"$out"
}
check "5.1 a DS record as anchor: vipd refuses to start, naming the file" ds_anchor_refused
