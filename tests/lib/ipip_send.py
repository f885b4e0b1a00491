#!/usr/bin/env python3
"""Sends hand-made IPIP packets: an inner IPv4 packet from INNER_SRC to INNER_DST (an ICMP
echo request by default), inside an outer IPv4 header (written by the kernel, from this
host's address) to OUTER_DST. With --malformed KIND the inner header is broken on purpose.

Usage: ipip_send.py OUTER_DST INNER_SRC INNER_DST [--malformed version|ihl|length]
           [--inner ipip|udp] [--port PORT] [--payload TEXT] [--count N] [--vary-source]
"""
import argparse
import ipaddress
import socket
import struct


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ipv4(src, dst, protocol, payload, malformed=None):
    version_ihl = 0x45
    total = 20 + len(payload)
    if malformed == "version":
        version_ihl = 0x65
    elif malformed == "ihl":
        version_ihl = 0x43
    elif malformed == "length":
        total += 200
    header = struct.pack("!BBHHHBBH4s4s", version_ihl, 0, total, 0, 0, 64, protocol, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def inner_packet(args, src):
    if args.inner == "udp":
        data = args.payload.encode()
        # Checksum 0: none (allowed for UDP over IPv4).
        udp = struct.pack("!HHHH", 40000, args.port, 8 + len(data), 0) + data
        return ipv4(src, args.inner_dst, socket.IPPROTO_UDP, udp, args.malformed)
    if args.inner == "ipip":
        # A tunnel inside the tunnel: an echo request from 10.0.0.1 to 10.0.0.2 within.
        nested = ipv4("10.0.0.1", "10.0.0.2", socket.IPPROTO_ICMP, echo())
        return ipv4(src, args.inner_dst, socket.IPPROTO_IPIP, nested, args.malformed)
    return ipv4(src, args.inner_dst, socket.IPPROTO_ICMP, echo(), args.malformed)


def echo():
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"vip-test" * 4
    return icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outer_dst")
    parser.add_argument("inner_src")
    parser.add_argument("inner_dst")
    parser.add_argument("--malformed", choices=["version", "ihl", "length"])
    parser.add_argument("--inner", choices=["icmp", "udp", "ipip"], default="icmp")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--payload", default="spoofed")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--vary-source", action="store_true",
                        help="a different inner source for each packet (counting up)")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    source = ipaddress.IPv4Address(args.inner_src)
    for i in range(args.count):
        src = str(source + i) if args.vary_source else args.inner_src
        sock.sendto(inner_packet(args, src), (args.outer_dst, 0))


if __name__ == "__main__":
    main()
