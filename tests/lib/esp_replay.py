#!/usr/bin/env python3
"""Sends again the inner packets of captured ESP-in-IPIP packets, inside a new IPIP header
that the kernel writes from this host's address (run it on the host whose packets were
captured: the receiver's vip.ko then accepts the outer packet and hands ESP to XFRM).
With --tamper, each one's sequence number is moved far ahead (so that the replay check,
which the kernel makes before authenticating, lets it through) and one byte of its
ciphertext is flipped: it then fails authentication.

With --last, the capture's last N such packets rather than its first (a replay must be
within the receiver's window: with ESN, one far behind it is taken for the next epoch and
fails authentication instead).

With --ahead K (and --last), the sequence numbers are those the sender will use K packets
after the capture's last one (a forgery of what it has not sent yet; it fails
authentication).

With --bad-checksum, the inner IP header's checksum is broken: the receiver's IP layer
drops the packet before IPsec sees it.

Usage: esp_replay.py CAPTURE.pcap OUTER_DST [--count N] [--tamper] [--last] [--ahead K]
           [--bad-checksum]
Prints how many it sent.
"""
import argparse
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pcap import ip_packets  # noqa: E402

ESP = 50
IPIP = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("capture")
    parser.add_argument("outer_dst")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--tamper", action="store_true")
    parser.add_argument("--last", action="store_true")
    parser.add_argument("--ahead", type=int)
    parser.add_argument("--bad-checksum", action="store_true")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    chosen = []
    for outer in ip_packets(args.capture):
        # Only what went to OUTER_DST (the capture holds both directions).
        if outer[9] != IPIP or socket.inet_ntoa(outer[16:20]) != args.outer_dst:
            continue
        inner = bytearray(outer[(outer[0] & 15) * 4:])
        if len(inner) < 20 or inner[9] != ESP:
            continue
        ihl = (inner[0] & 15) * 4
        # ESP: SPI (4), sequence number (4), IV (8), then ciphertext; the ICV is the last 16.
        if len(inner) < ihl + 16 + 1 + 16:
            continue
        chosen.append(inner)
    last_seq = None
    if chosen:
        ihl = (chosen[-1][0] & 15) * 4
        last_seq = struct.unpack("!I", chosen[-1][ihl + 4:ihl + 8])[0]
    chosen = chosen[-args.count:] if args.last else chosen[:args.count]
    sent = 0
    for inner in chosen:
        ihl = (inner[0] & 15) * 4
        if args.ahead is not None:
            inner[ihl + 4:ihl + 8] = struct.pack("!I", last_seq + args.ahead + sent)
        elif args.tamper:
            inner[ihl + 4:ihl + 8] = struct.pack("!I", 0x40000000 + sent)
        if args.tamper:
            inner[ihl + 16] ^= 0x01
        if args.bad_checksum:
            inner[10] ^= 0xFF
        sock.sendto(bytes(inner), (args.outer_dst, 0))
        sent += 1
    print(sent)


if __name__ == "__main__":
    main()
