#!/usr/bin/env bash
# Prompt TCP recovery when a peer moves (the paper's callOnChange for TCP): when a mapping's
# address changes, the namespace's TCP sockets to that VIP that wait out a retransmission
# backoff (or for a SYN's answer) retransmit at once, and those stalled with segments in
# flight before any timeout send a loss probe at once. Checked against TCP's own schedule,
# read from `ss` just before the re-point, rather than against a tight time bound.
# kernel-facing: also run on the debug kernel
# timeout: 450
# duration: 80
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/topology.sh"
source "$(dirname "$0")/lib/vip.sh"
source "$(dirname "$0")/lib/capture.sh"
tap_plan 22

# On the debug kernel (KASAN, lockdep under TCG) every command here runs 5-15 times slower,
# so that from ss's reading of TCP's schedule to the moment data is seen flowing again is
# 10-45 s there, most of it the tooling (ip netns exec, vipctl, the polls). There the
# cases wait for TCP schedules that many times longer (a later try in the backoff, a slower
# ARP, a longer timeout), so each claim (sooner than TCP itself would have) keeps its
# meaning; the kick and probe counters prove the mechanism on both kernels.
backoff_ms=$(by_kernel 2000 40000) syn_ms=$(by_kernel 3000 20000)
arp_ms=$(by_kernel 5000 20000) arp_bound_ms=$(by_kernel 5000 30000)
rto_min_s=$(by_kernel 10 100) stall_ms=$(by_kernel 5000 60000)
resume_s=$(by_kernel 10 60)
vip_unload; vip_load
at_exit vip_unload
topo_create a:1 b:2 c:1
vip_host a 240.0.0.1
vip_host b 240.0.0.2
vip_host c 240.0.0.3
vip_map a b; vip_map b a; vip_map a c; vip_map c a

# tcp_state HOST PEER_VIP:PORT: "BACKOFF TIMER" of HOST's TCP socket to PEER_VIP:PORT, from
# `ss -tino`: its retransmission backoff (0 when none) and the milliseconds to its
# retransmission timer (-1 when none).
tcp_state() {
  on "$1" ss -tino "dst $2" | python3 -c '
import re, sys
text = sys.stdin.read()
b = re.search(r"backoff:(\d+)", text)
# ss prints 2.5 s as "2.500ms", 12 s as "12sec", 70 s as "1min10sec".
t = re.search(r"timer:\(on,(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?,", text)
timer = -1
if t:
    minutes, secs, msecs = (int(g or 0) for g in t.groups())
    timer = (minutes * 60 + secs) * 1000 + msecs
print(b.group(1) if b else 0, timer)'
}
backoff_of() { tcp_state "$@" | cut -d' ' -f1; }
# waiting_out HOST PEER_VIP:PORT MIN_BACKOFF MIN_MS: the socket has backed off at least
# MIN_BACKOFF times and its next try is at least MIN_MS away. Leaves what it saw in
# BACKOFF and TIMER, and in SEEN_AT a time before it looked: TCP's own next try is at
# SEEN_AT + TIMER or later.
waiting_out() {
  SEEN_AT=$(now_ms)
  local state; state=($(tcp_state "$1" "$2"))
  BACKOFF=${state[0]} TIMER=${state[1]}
  [ "$BACKOFF" -ge "$3" ] && [ "$TIMER" -ge "$4" ]
}
now_ms() { date +%s%3N; }

on a vipctl -j monitor > /tmp/kick.events &
monitor=$!

# An unrelated connection from A to C, stalled (C's link is down) so that it too waits out
# a backoff, which must go on undisturbed.
listening() { on "$1" ss -Hltn "sport = :$2" | grep -q .; }
on c socat -u TCP4-LISTEN:6000,bind=240.0.0.3,reuseaddr OPEN:/dev/null &
eventually 5 listening c 6000
head -c 400000 /dev/zero > /tmp/kick.zeros
# The sender keeps its socket open afterwards: closed, it would be an orphan, which TCP
# kills after tcp_orphan_retries tries (the debug kernel's longer waits got there).
{ paced_cat /tmp/kick.zeros 8192 0.05; sleep 900; } | on a socat -u - TCP4:240.0.0.3:6000 &
eventually 5 bash -c "ip netns exec vip-a ss -Htn state established 'dst 240.0.0.3:6000' | grep -q ."
on c ip link set eth1 down

# The transfer from A to B.
head -c 3000000 /dev/urandom > /tmp/kick.payload
want=$(sha256sum < /tmp/kick.payload | cut -d' ' -f1)
# start_transfer PORT: B listens on PORT and A sends it the payload, paced; returns once
# the transfer is under way (200 kB arrived), with the two ends' pids in server and client.
start_transfer() {
  on b socat -u TCP4-LISTEN:"$1",bind=240.0.0.2,reuseaddr OPEN:/tmp/kick.out,creat,trunc &
  server=$!
  eventually 5 listening b "$1"
  paced_cat /tmp/kick.payload 50000 0.05 | on a socat -u - TCP4:240.0.0.2:"$1" &
  client=$!
  eventually 10 bash -c '[ "$(stat -c %s /tmp/kick.out)" -gt 200000 ]'
}
start_transfer 6001

# Both move at once; nobody tells the mappings yet, so A's retransmissions go to B's old
# address and TCP backs off. Wait until it has backed off four times and its next try is
# at least 2 s away (20 s on the debug kernel).
topo_move a 2; topo_move b 1
# B may learn where A is at once: A's packets still go to B's old address.
vip_map b a
c_backoff=$(backoff_of a 240.0.0.3:6000)
kicks_before=$(vip_stat a tcp_kicks)
eventually "$(by_kernel 40 150)" waiting_out a 240.0.0.2:6001 4 "$backoff_ms"
backoff=$BACKOFF timer=$TIMER start=$SEEN_AT
received=$(stat -c %s /tmp/kick.out)
# A learns where B is: its re-point is the kick.
vip_map a b
eventually "$resume_s" bash -c "[ \$(stat -c %s /tmp/kick.out) -gt $received ]"
resumed=$(( $(now_ms) - start ))
diag "data flowed again ${resumed} ms after ss saw TCP's next try ${timer} ms away (the re-point is in between)"
check "A's connection to B was waiting out a backoff ($backoff; next try in ${timer} ms)" test "$backoff" -ge 4 -a "$timer" -ge "$backoff_ms"
check "A's connection to C was too ($c_backoff)" test "$c_backoff" -ge 1
check "the transfer resumes before TCP's own next try would have ($resumed < $timer ms)" \
  test "$resumed" -lt "$timer"
check "A counted the kick" test "$(vip_stat a tcp_kicks)" -gt "$kicks_before"
check "A's backoff toward B was undone ($(backoff_of a 240.0.0.2:6001) < $backoff)" \
  test "$(backoff_of a 240.0.0.2:6001)" -lt "$backoff"
check "the unrelated connection to C was left alone (backoff $(backoff_of a 240.0.0.3:6000) >= $c_backoff)" \
  test "$(backoff_of a 240.0.0.3:6000)" -ge "$c_backoff"
wait $client; client_rc=$?
wait $server
check "the transfer completes, intact (sha256)" \
  test $client_rc = 0 -a "$(sha256sum < /tmp/kick.out | cut -d' ' -f1)" = "$want"
check "monitor saw the mapping change" grep -q '"mapping_changed","peer_vip":"240.0.0.2"' /tmp/kick.events

# A connect() whose SYN went to where B no longer is: its SYN is sent again every second
# four times (tcp_syn_linear_timeouts), then at 2, 4, 8 s, until the re-point kicks it.
# The re-point comes once the next SYN is at least 3 s away: under emulation, starting
# vipctl and the socat at B's end took more than the 1.5 s that the first wait left. On the
# debug kernel the re-point waits for the 32-s wait (six exponential tries follow the
# linear ones before connect() gives up).
on b socat -u TCP4-LISTEN:6002,bind=240.0.0.2,reuseaddr OPEN:/tmp/kick.syn,creat,trunc &
listener=$!
eventually 5 listening b 6002
on a vipctl map replace 240.0.0.2 via 203.0.113.200 local 240.0.0.1
echo SYN-OK | on a socat -u - TCP4:240.0.0.2:6002,connect-timeout="$(by_kernel 20 120)" &
connector=$!
eventually "$(by_kernel 40 120)" waiting_out a 240.0.0.2:6002 1 "$syn_ms"
timer=$TIMER start=$SEEN_AT
vip_map a b
eventually "$resume_s" grep -q SYN-OK /tmp/kick.syn
connected=$(( $(now_ms) - start ))
diag "connected ${connected} ms after ss saw the next SYN ${timer} ms away (the re-point is in between)"
check "a connect() stuck on SYN retransmissions completes right after the re-point ($connected < $timer ms)" \
  test "$connected" -lt "$timer" -a "$timer" -ge 1500
wait $connector
# Re-pointing C to where it already is changes nothing, and kicks nothing, though A's
# connection to C still waits out its backoff.
c_backoff=$(backoff_of a 240.0.0.3:6000) kicks_before=$(vip_stat a tcp_kicks)
vip_map a c
sleep 0.5
check "a re-point to the same address kicks nothing (backoff $(backoff_of a 240.0.0.3:6000) >= $c_backoff)" \
  test "$c_backoff" -ge 1 -a "$(backoff_of a 240.0.0.3:6000)" -ge "$c_backoff" \
  -a "$(vip_stat a tcp_kicks)" = "$kicks_before"

# Both move back, so that B's old address is on A's new link: A's retransmissions wait in
# the unresolved ARP entry of that address, and TCP will not send a segment again while its
# last copy is queued in the host. The re-point must free them (the entry is failed), or
# the kick is void until ARP gives up; A's ARP is slowed down so that giving up would take
# 15 s (3 probes 5 s apart; 60 s on the debug kernel) and cannot be confused with the kick.
on a sysctl -qw net.ipv4.neigh.eth1.retrans_time_ms="$arp_ms"
start_transfer 6003
left=$(topo_addr b)
# B leaves first: had A arrived while B still held the address, A's ARP would have
# resolved it to B's interface, and A's packets would leave (to be dropped by B) instead
# of waiting.
topo_move b 2; topo_move a 1
vip_map b a
unresolved() { on a ip neigh show "$left" dev eth1 | grep -q INCOMPLETE; }
held() { unresolved && [ "$(backoff_of a 240.0.0.2:6003)" -ge 1 ]; }
released_before=$(vip_stat a neigh_released)
eventually "$(by_kernel 10 30)" held
start=$(now_ms) received=$(stat -c %s /tmp/kick.out)
check "A's retransmissions to B wait in the unresolved ARP entry of B's old address ($left)" unresolved
vip_map a b
eventually "$(by_kernel 20 60)" bash -c "[ \$(stat -c %s /tmp/kick.out) -gt $received ]"
resumed=$(( $(now_ms) - start ))
diag "data flowed again ${resumed} ms after the re-point; ARP would have held A's packets about $((3 * arp_ms / 1000)) s"
check "the transfer resumes within $((arp_bound_ms / 1000)) s of the re-point, long before ARP gives up ($resumed ms)" \
  test "$resumed" -lt "$arp_bound_ms"
check "A failed the entry of the address B left ($(vip_stat a neigh_released) > $released_before)" \
  test "$(vip_stat a neigh_released)" -gt "$released_before"
wait $client; client_rc=$?
wait $server
check "that transfer completes too, intact (sha256)" \
  test $client_rc = 0 -a "$(sha256sum < /tmp/kick.out | cut -d' ' -f1)" = "$want"

# A window full of lost segments before any timeout: while A's mapping of B points nowhere,
# A fills its congestion window with segments that are lost, and its tail loss probe goes
# the same way; then it can only wait for its retransmission timeout, made 10 s here by
# the route's rto_min (100 s on the debug kernel). The re-point has it send a loss probe at
# once instead, whose SACK lets TCP repair the rest. Proven stalled first: data queued that the window does not let
# out (notsent), no timeout fired yet (backoff 0), the timer seconds away.
on a ip route add 240.0.0.2/32 dev vip0 src 240.0.0.1 rto_min "${rto_min_s}s"
# stall PORT: a transfer to B on PORT, stalled as above, and the counters and bytes
# received once the move away's own walk (which found the socket still acked) is over;
# leaves TIMER, SEEN_AT, probes_before, kicks_before and received.
notsent() { on a ss -tino "dst 240.0.0.2:$1" | sed -n 's/.*notsent:\([0-9]*\).*/\1/p'; }
stalled() { waiting_out a "240.0.0.2:$1" 0 "$stall_ms" && [ "$BACKOFF" = 0 ] && [ "$(notsent "$1")" -gt 0 ]; }
stall() {
  start_transfer "$1"
  on a vipctl map replace 240.0.0.2 via 203.0.113.200 local 240.0.0.1
  eventually "$(by_kernel 20 60)" stalled "$1"
  sleep 0.5
  probes_before=$(vip_stat a tcp_probes) kicks_before=$(vip_stat a tcp_kicks)
  received=$(stat -c %s /tmp/kick.out)
}
# finish: waits for the transfer's two ends; intact: it ended well, with the payload whole.
finish() { wait $client; client_rc=$?; wait $server; }
intact() { test $client_rc = 0 -a "$(sha256sum < /tmp/kick.out | cut -d' ' -f1)" = "$want"; }
stall 6004
timer=$TIMER start=$SEEN_AT
check "A's connection to B stalled with a full window and no timeout fired (next try in ${timer} ms, $(notsent 6004) bytes not sent)" \
  test "$timer" -ge "$stall_ms"
vip_map a b
# What A's socket did meanwhile (ss, every poll), shown if the resumption took seconds.
trace=()
flowed() {
  trace+=("$(( $(now_ms) - start )) ms: $(on a ss -tino 'dst 240.0.0.2:6004' | grep -oE '(timer|backoff|unacked|retrans|lost|sacked|notsent|cwnd):[^ ]*' | tr '\n' ' ')")
  [ "$(stat -c %s /tmp/kick.out)" -gt "$received" ]
}
eventually "$resume_s" flowed
resumed=$(( $(now_ms) - start ))
((resumed < 5000)) || for line in "${trace[@]}"; do diag "$line"; done
diag "data flowed again ${resumed} ms after ss saw the timeout ${timer} ms away (the re-point is in between)"
check "the transfer resumes long before the timeout would have fired ($resumed < $timer ms)" \
  test "$resumed" -lt "$timer"
# The counters are added once the walk over every socket is done, which can end after
# the data flows (seconds on the debug kernel).
probed() { [ "$(vip_stat a tcp_probes)" -gt "$probes_before" ]; }
eventually 20 probed
check "A counted a loss probe, not a retransmission kick ($(vip_stat a tcp_probes) > $probes_before, kicks $(vip_stat a tcp_kicks) = $kicks_before)" \
  test "$(vip_stat a tcp_probes)" -gt "$probes_before" -a "$(vip_stat a tcp_kicks)" = "$kicks_before"
finish
check "that transfer completes too, intact (sha256)" intact

# Where TCP itself would send no loss probe, the re-point sends none either: a connection
# without SACK (TCP's probe needs the SACK of it to repair the rest), and any connection
# while RACK loss detection is off. Each stalls as above; then for 2 s after the re-point
# not one packet from A reaches B's link (a capture there, while TCP's own timeout is
# still seconds away), and then that timeout resumes the transfer.
no_probe_when() { # no_probe_when PORT WHAT
  stall "$1"
  local timer=$TIMER seen=$SEEN_AT
  capture b "eth${_topo_host_lan[b]}" /tmp/kick.pcap "ip proto 4 and src $(topo_addr a)"
  local capturing=$CAPTURE
  vip_map a b
  local repointed; repointed=$(now_ms)
  sleep 2
  capture_stop "$capturing"
  local walked=$(( $(now_ms) - repointed )) sent; sent=$(packets_in /tmp/kick.pcap)
  diag "$2: $sent packets from A on B's link in the ${walked} ms after the re-point; the timeout was $((seen + timer - repointed)) ms away then"
  # The capture must have ended before TCP's own timeout, whose retransmission it would
  # have seen; the counters may be read later.
  check "$2: the re-point sent no loss probe ($sent packets from A in $walked ms, probes $(vip_stat a tcp_probes) = $probes_before, kicks $(vip_stat a tcp_kicks) = $kicks_before)" \
    test "$sent" = 0 -a "$(vip_stat a tcp_probes)" = "$probes_before" \
    -a "$(vip_stat a tcp_kicks)" = "$kicks_before" -a $((seen + timer - repointed)) -gt "$walked"
  finish
  check "$2: TCP's own timeout resumes it, and it completes intact" intact
}
on a sysctl -qw net.ipv4.tcp_sack=0
no_probe_when 6005 "a connection without SACK"
on a sysctl -qw net.ipv4.tcp_sack=1
on a sysctl -qw net.ipv4.tcp_recovery=0
no_probe_when 6006 "with RACK off"
on a sysctl -qw net.ipv4.tcp_recovery=1
on a ip route del 240.0.0.2/32 dev vip0
kill $monitor $listener 2>/dev/null
rm -f /tmp/kick.pcap /tmp/kick.pcap.log /tmp/kick.payload /tmp/kick.out /tmp/kick.events /tmp/kick.syn /tmp/kick.zeros
