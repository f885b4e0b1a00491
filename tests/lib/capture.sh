# Packet captures for scenario scripts. Sourced after topology.sh.
#   capture HOST IFACE FILE FILTER   tcpdump in HOST, written packet by packet, until
#                                    capture_stop; sets CAPTURE to its pid (not through
#                                    `on`: $! must be tcpdump itself)
#   capture_stop PID...              lets the last packets land, then stops them
#   packets_in FILE [FILTER]         how many packets of FILE (matching FILTER)
#   marker_payload FILE SIZE         SIZE bytes of $MARKER repeated, into FILE; prints their
#                                    sha256 (a capture that holds $MARKER saw plaintext)
capture() {
  ip netns exec "$TOPO_PREFIX$1" tcpdump -U -n -i "$2" -w "$3" "$4" 2> "$3.log" &
  CAPTURE=$!
  eventually 10 grep -q "listening on" "$3.log"
}
capture_stop() { sleep 0.5; kill "$@" 2>/dev/null; wait "$@" 2>/dev/null; return 0; }
packets_in() { tcpdump -n -r "$@" 2>/dev/null | wc -l; }
MARKER=VIP-PLAINTEXT-MARKER-
marker_payload() {
  python3 -c "import sys; sys.stdout.buffer.write((b'$MARKER' * ($2 // ${#MARKER} + 1))[:$2])" > "$1"
  sha256sum < "$1" | cut -d' ' -f1
}
