#!/usr/bin/env bash
# Leases and lease GC with vipd and BIND 9 (paper section 3.2 and the GC policies of 3.1).
# (a) Lease renewal: B moves while A is not one of its active partners, so nobody hints A;
# A keeps sending to B's old address, and once B has been silent for A's lease, A asks DNS
# where B is and follows B's authenticated answer from there. Shown by what reaches a
# listener on B (nothing before the lease ran out, the stream after), A's DNS queries
# counted at the server, and A's table.
# (b) gc = "lease": a pair that carries nothing is dropped from A's kernel table and from
# vipd once idle for gc_idle_secs (not before: a new pair that has carried no packet yet is
# as old as it is idle), a pair in use is kept, and a new lookup pairs again.
# timeout: 600
# duration: 84
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/dns.sh"
tap_plan 22

# Long enough that the stream below starts well before A's lease on B runs out: the
# set-up between A last hearing B and the stream's start takes 13-18 s under TCG.
LEASE_SECS=30
GC_IDLE_SECS=12

vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1 dns
dns_start "a b c"
# A: a short lease (housekeeping every lease / 2). B: only partners active in the last
# second get its hints, so an A that went quiet gets none. (A's lease GC comes in part (b):
# here it would collect the pair while B moves unseen.)
vipd_start a "[mobility]
lease_secs = $LEASE_SECS"
vipd_start b "[mobility]
active_secs = 1"
vipd_start c
check "vipd runs on A, B and C" bash -c "kill -0 ${VIPD_PID[a]} && kill -0 ${VIPD_PID[b]} && kill -0 ${VIPD_PID[c]}"

# FIELD of HOST's kernel mapping for VIP ("None" for a time never set; nothing if no mapping).
mapping_field() {
  on "$1" vipctl -j show | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["peer_vip"] == sys.argv[1]:
        print(m[sys.argv[2]]); break' "$2" "$3"
}
has_mapping() { [ -n "$(mapping_field "$1" "$2" peer_ip4)" ]; }
lacks_mapping() { ! has_mapping "$@"; }
maps_to() { [ "$(mapping_field "$1" "$2" peer_ip4)" = "$3" ]; }
# Both of HOST's packet times toward VIP are at least MS old.
quiet_for() {
  local rx tx
  rx=$(mapping_field "$1" "$2" last_rx) tx=$(mapping_field "$1" "$2" last_tx)
  [[ $rx == None || $rx -ge $3 ]] && [[ $tx == None || $tx -ge $3 ]]
}
# The log's length now, and whether a line matching PATTERN came after that mark.
log_mark() { wc -l < "$DNS_DIR/$1/vipd.log"; }
logged_since() { tail -n +$(($2 + 1)) "$DNS_DIR/$1/vipd.log" | grep -q -- "$3"; }
saved_partner() { # HOST NAME: vipd on HOST lists NAME in its saved partner table
  python3 -c '
import json, sys
assert sys.argv[2] in json.load(open(sys.argv[1]))["by_fqdn"]' "$DNS_DIR/$1/state/peers.json" "$2"
}
a_record_is() { [ "$(dns_server_dig a "$1.$DNS_ZONE" A)" = "$(topo_addr "$1")" ]; }
# Holds CMD true for SECONDS, checked every 0.2 s.
stays() {
  local deadline=$(($(_uptime_cs) + $1 * 100)); shift
  while (($(_uptime_cs) < deadline)); do "$@" || return 1; sleep 0.2; done
}

# ---- (a) lease renewal ----
check "A reaches B by name" on a ping -c2 -i0.2 -W2 b.$DNS_ZONE
vip_b=$(dns_dig a b.$DNS_ZONE)
# A's DNS queries, counted where they arrive.
kmod nf_tables
on dns nft -f - <<NFT
table ip dnswatch {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr $(topo_addr a) udp dport 53 counter
  }
}
NFT
a_queries() { on dns nft list chain ip dnswatch input | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'; }

# A's stream to B (10 datagrams a second, each with its send time) and B's listener.
rm -f /tmp/lease-udp.out /tmp/lease-stop
on b socat -u UDP4-RECV:7001 OPEN:/tmp/lease-udp.out,creat,trunc &
listener=$!
eventually 5 bash -c "ip netns exec ${TOPO_PREFIX}b ss -Hlnu 'sport = :7001' | grep -q ."
lease_stream() {
  on a python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(1, 601):
    if os.path.exists("/tmp/lease-stop"):
        break
    s.sendto(b"%d %.3f\n" % (i, time.time()), (sys.argv[1], 7001))
    time.sleep(0.1)
' "$vip_b"
}

# B moves once its pair with A has been quiet for longer than B's active window; A starts
# sending right after (what comes between eats into the lease, which is slow under TCG).
vip_a_at_b=$(dns_dig b a.$DNS_ZONE)
b_hints=$(vipd_stat_value b hints_sent)
eventually 10 quiet_for b "$vip_a_at_b" 1500
mark_a=$(log_mark a) mark_b=$(log_mark b)
queries_before=$(a_queries)
topo_move b 1
# When A last heard from B, by the clock the sender stamps its datagrams with.
silence_ms=$(mapping_field a "$vip_b" last_rx)
heard_at=$(python3 -c "print($EPOCHREALTIME - ${silence_ms:-0} / 1000)")
started=$EPOCHREALTIME
lease_stream &
sender=$!
check "B's new address reaches DNS" eventually 10 a_record_is b
check "B hinted no one: A was not an active partner" \
  logged_since b "$mark_b" 'all active partners hinted partners=0'
check "B sent no hint (hints_sent stays $b_hints)" vipd_stat_is b "hints_sent=$b_hints"
# The lease runs out LEASE_SECS after A last heard B; housekeeping looks every lease / 2.
check "A's stream reaches B's listener once A's lease on B ran out" \
  eventually $((LEASE_SECS + 25)) test -s /tmp/lease-udp.out
touch /tmp/lease-stop
wait $sender
kill $listener 2>/dev/null; wait $listener 2>/dev/null
# Until the lease ran out A still sent to B's old address: nothing sent then may arrive
# (half a second allowed for the kernel's coarse packet times). That proves something only
# if the stream started well before the lease ran out.
lease_out=$(python3 -c "print(round($heard_at + $LEASE_SECS - 0.5, 3))")
first_sent=$(awk 'NR == 1 || $2 < m { m = $2 } END { print m }' /tmp/lease-udp.out)
check "nothing A sent before its lease ran out reached B (A last heard B ${silence_ms} ms before sending; first arrival sent $(python3 -c "print(round(${first_sent:-0} - $heard_at, 1))") s after that)" \
  python3 -c "import sys; sys.exit(not ($lease_out >= $started + 1 and ${first_sent:-0} >= $lease_out))"
queries_after=$(a_queries)
check "A asked DNS where B is ($((queries_after - queries_before)) queries)" test "$queries_after" -gt "$queries_before"
check "A was re-pointed by B's authenticated answer from its new address" \
  logged_since a "$mark_a" "partner re-pointed.*peer=b.$DNS_ZONE .*new=$(topo_addr b)"
check "A's kernel maps B to B's new address" maps_to a "$vip_b" "$(topo_addr b)"
on dns nft delete table ip dnswatch

# ---- (b) gc = "lease" ----
# A's vipd again, now with lease GC (housekeeping every min(lease, idle) / 2 = 6 s); it
# takes its partners back from the kernel table and looks at them at once. A keeps its
# pair with B busy (a ping every half second, from before the restart: the pair carries
# packets while vipd is down) while a new pair with C, made by a lookup alone, carries
# nothing. (Started after the restart, the ping would race the first look, which rightly
# collects a pair that has been idle longer than gc_idle_secs.)
on a ping -n -i0.5 -c120 -W1 "$vip_b" > /tmp/lease-busy.out 2>&1 &
busy=$!
eventually 10 grep -q 'bytes from' /tmp/lease-busy.out
vipd_stop a
restart_mark=$(($(log_mark a) + 1))
vipd_start a "gc = \"lease\"
gc_idle_secs = $GC_IDLE_SECS
[mobility]
lease_secs = $LEASE_SECS"
mark_a=$(log_mark a)
vip_c=$(dns_dig a c.$DNS_ZONE)
check "A's lookup of C gives a VIP ($vip_c), a pair that carries no packet" in_vip_range "$vip_c"
check "C's unused pair is kept while younger than gc_idle_secs ($GC_IDLE_SECS s)" \
  stays $((GC_IDLE_SECS - 3)) has_mapping a "$vip_c"
check "... and leaves A's kernel table once idle that long" \
  eventually $((GC_IDLE_SECS + 20)) lacks_mapping a "$vip_c"
check "A's vipd logged the collection of C" \
  logged_since a "$mark_a" "idle mapping collected peer=c.$DNS_ZONE "
not_saved() { ! saved_partner "$@"; }
check "... and dropped C from its partners" eventually 5 not_saved a c.$DNS_ZONE
# ESP (on by default): the collected pair's policies and SAs went with it, B's stayed.
check "... and removed the pair's ESP policies and SAs, keeping B's" \
  bash -c "out=\$(ip netns exec vip-a ip xfrm policy list; ip netns exec vip-a ip xfrm state list);
    ! grep -q '$vip_c' <<<\"\$out\" && grep -q '$vip_b' <<<\"\$out\""
check "the busy pair with B is kept in A's kernel" maps_to a "$vip_b" "$(topo_addr b)"
check "... and in A's vipd" saved_partner a b.$DNS_ZONE
if ! saved_partner a b.$DNS_ZONE; then
  diag "A's log since its restart, about B, ESP and collections:"
  tail -n +"$restart_mark" "$DNS_DIR/a/vipd.log" | grep -E "b\.$DNS_ZONE|$vip_b|confirmation|collected|ESP|SA|WARN|ERROR" |
    tail -40 | while IFS= read -r line; do diag "  $line"; done
fi
check_fails "... which never collected it" \
  logged_since a "$mark_a" "idle mapping collected peer=b.$DNS_ZONE "
kill $busy 2>/dev/null; wait $busy 2>/dev/null
# Replies every half second: no two consecutive ones more than 2 s apart in sequence.
answered=$(grep -c 'bytes from' /tmp/lease-busy.out)
longest=$(sed -n 's/.*bytes from.*icmp_seq=\([0-9]*\).*/\1/p' /tmp/lease-busy.out |
  awk 'NR > 1 && $1 - p > g { g = $1 - p } { p = $1 } END { print g + 0 }')
check "B answered A's pings all along ($answered answered, longest run of missing replies $((longest > 0 ? longest - 1 : 0)))" \
  test "$answered" -ge 20 -a "$longest" -le 4
# A new lookup after the collection pairs A and C again (C still held the pair).
vip_c=$(dns_dig a c.$DNS_ZONE)
check "a new lookup of C gives a VIP again ($vip_c)" in_vip_range "$vip_c"
check "... and A reaches C by name" on a ping -c2 -i0.2 -W2 c.$DNS_ZONE
rm -f /tmp/lease-udp.out /tmp/lease-stop /tmp/lease-busy.out
