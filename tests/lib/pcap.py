"""Reading tcpdump's captures (pcap, Ethernet or Linux cooked): the IPv4 packets and UDP
datagrams in them."""
import struct


def ip_packets(path):
    """Yields every IPv4 packet in the file, from its IP header on."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20}.get(linktype)
    if link_len is None:
        raise SystemExit(f"{path}: link type {linktype} not handled")
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ethertype = frame[12:14] if linktype == 1 else frame[14:16] if linktype == 113 else frame[0:2]
        if ethertype != b"\x08\x00":
            continue
        ip = frame[link_len:]
        if len(ip) >= 20 and ip[0] >> 4 == 4:
            yield bytes(ip)


def udp_datagrams(path):
    """Yields (src, sport, dst, dport, payload) for every IPv4 UDP datagram in the file."""
    for ip in ip_packets(path):
        if ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        udp = ip[ihl:]
        if len(udp) < 8:
            continue
        src = ".".join(map(str, ip[12:16]))
        dst = ".".join(map(str, ip[16:20]))
        sport, dport, length = struct.unpack(">HHH", udp[:6])
        yield src, sport, dst, dport, bytes(udp[8:length])
