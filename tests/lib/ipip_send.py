#!/usr/bin/env python3
"""Sends one hand-made IPIP packet: an inner IPv4 ICMP echo request from INNER_SRC to
INNER_DST, inside an outer IPv4 header (written by the kernel) to OUTER_DST. With
--malformed KIND the inner header is broken on purpose.

Usage: ipip_send.py OUTER_DST INNER_SRC INNER_DST [--malformed version|ihl|length]
"""
import argparse
import socket
import struct


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def inner_packet(src, dst, malformed):
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"vip-test" * 4
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    version_ihl = 0x45
    total = 20 + len(icmp)
    if malformed == "version":
        version_ihl = 0x65
    elif malformed == "ihl":
        version_ihl = 0x43
    elif malformed == "length":
        total += 200
    header = struct.pack("!BBHHHBBH4s4s", version_ihl, 0, total, 0, 0, 64, socket.IPPROTO_ICMP, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outer_dst")
    parser.add_argument("inner_src")
    parser.add_argument("inner_dst")
    parser.add_argument("--malformed", choices=["version", "ihl", "length"])
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    sock.sendto(inner_packet(args.inner_src, args.inner_dst, args.malformed), (args.outer_dst, 0))


if __name__ == "__main__":
    main()
