"""Checks the nonces of the VIP control protocol on the wire: in each capture, no transport
message repeats a (receiver index, counter) pair, and every session whose handshake is in
the capture counts its messages from 0 in each direction, and the captures hold at least
one transport message between them. Exits non-zero otherwise; the last line is a total.

    python3 nonces.py CAPTURE.pcap...
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pcap import udp_datagrams  # noqa: E402

bad = 0
total = 0
for path in sys.argv[1:]:
    seen = {}
    started = set()  # session indices whose handshake response is in the capture
    for src, _, dst, _, p in udp_datagrams(path):
        if len(p) < 4 or p[:3] != b"VP\x02":
            continue
        if p[3] == 2 and len(p) >= 12:  # response: sender (responder) and receiver (initiator)
            started.update(struct.unpack(">II", p[4:12]))
        if p[3] == 4 and len(p) >= 16:
            index, counter = struct.unpack(">IQ", p[4:16])
            seen.setdefault(index, []).append(counter)
    repeats = sum(len(c) - len(set(c)) for c in seen.values())
    not_from_zero = [i for i in started if i in seen and min(seen[i]) != 0]
    messages = sum(len(c) for c in seen.values())
    print(f"{os.path.basename(path)}: {messages} transport messages in {len(seen)} session directions, "
          f"{len(started & set(seen))} of them begun in the capture; repeated (index, counter) pairs: {repeats}; "
          f"begun but not counting from 0: {len(not_from_zero)}")
    total += messages
    if repeats or not_from_zero:
        bad = 1
print(f"total: {total} transport messages, {'some nonce repeated' if bad else 'no nonce repeated'}")
sys.exit(1 if bad or not total else 0)
