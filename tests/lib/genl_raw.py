#!/usr/bin/env python3
"""Sends hand-made (often malformed) requests to the vip generic netlink family, for tests
that check the module refuses bad input. Exits 0 when the module answered as expected.

Usage: genl_raw.py CASE   (see CASES below)
"""
import errno
import os
import socket
import struct
import sys

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_CREATE = 0x400
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
NLM_F_CAPPED = 0x100
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
NLM_F_DUMP = 0x300
NETLINK_ADD_MEMBERSHIP = 1
VIP_CMD_GET_VERSION = 1
VIP_CMD_MAP_SET = 2
VIP_CMD_MAP_DEL = 3
VIP_CMD_MAP_GET = 4
VIP_CMD_MAP_FLUSH = 5
VIP_CMD_GET_INFO = 6
VIP_CMD_SET_CONFIG = 10
VIP_A_VERSION = 1
VIP_A_PEER_VIP = 3
VIP_A_PEER_IP4 = 4
VIP_A_LOCAL_VIP = 5
VIP_A_FLAGS = 6
VIP_A_RX_PACKETS = 7
VIP_A_MAX_MAPPINGS = 19
VIP_A_ROAM_LIMIT = 21


def nla(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def attrs(data):
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        if length < 4:
            break
        yield kind & 0x3FFF, data[4:length]
        data = data[(length + 3) & ~3:]


class Genl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.bind((0, 0))
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.seq = 0

    def request(self, family, cmd, payload=b"", version=1, genl_override=None, flags=0):
        """Sends one message, returns the list of (type, payload) answers up to the ack (or
        the end of a dump)."""
        self.seq += 1
        genl = genl_override if genl_override is not None else struct.pack("=BBH", cmd, version, 0)
        body = genl + payload
        header = struct.pack("=IHHII", 16 + len(body), family, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(header + body)
        answers = []
        while True:
            data = self.sock.recv(65536)
            while len(data) >= 16:
                length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", data)
                answers.append((kind, data[16:length], flags))
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    return answers
                data = data[(length + 3) & ~3:]

    def family(self, name):
        """The family's id and its multicast groups by name."""
        answers = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                               nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))
        for kind, payload, _ in answers:
            if kind == GENL_ID_CTRL:
                family, groups = None, {}
                for attr, value in attrs(payload[4:]):
                    if attr == CTRL_ATTR_FAMILY_ID:
                        family = struct.unpack("=H", value[:2])[0]
                    elif attr == CTRL_ATTR_MCAST_GROUPS:
                        for _, group in attrs(value):
                            fields = dict(attrs(group))
                            groups[fields[CTRL_ATTR_MCAST_GRP_NAME].rstrip(b"\0").decode()] = \
                                struct.unpack("=I", fields[CTRL_ATTR_MCAST_GRP_ID])[0]
                if family is not None:
                    return family, groups
        sys.exit(f"no generic netlink family {name!r}: is vip.ko loaded?")

    def family_id(self, name):
        return self.family(name)[0]


def error_of(answers):
    """The error code and extended-ack message of the answer (a dump's end counts)."""
    for kind, payload, flags in answers:
        if kind == NLMSG_DONE:
            return struct.unpack_from("=i", payload)[0], None
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", payload)[0]
            echoed = 16 if flags & NLM_F_CAPPED else struct.unpack_from("=I", payload, 4)[0]
            message = None
            for attr, value in attrs(payload[4 + ((echoed + 3) & ~3):]):
                if attr == NLMSGERR_ATTR_MSG:
                    message = value.rstrip(b"\0").decode()
            return code, message
    return None, None


def expect_error(answers, code, message=None):
    got, got_message = error_of(answers)
    if got != -code:
        sys.exit(f"expected -{errno.errorcode[code]}, got {got} ({got_message})")
    if message is not None and (got_message is None or message not in got_message):
        sys.exit(f"expected a message with {message!r}, got {got_message!r}")
    print(f"refused: {errno.errorcode[code]}: {got_message}")


def addr(text):
    return socket.inet_aton(text)


def map_set(genl, family, *parts):
    return genl.request(family, VIP_CMD_MAP_SET, b"".join(parts))


def case_get_version_with_attr(genl, family):
    expect_error(genl.request(family, VIP_CMD_GET_VERSION, nla(VIP_A_VERSION, b"1.0\0")), errno.EINVAL)


def case_truncated_attr(genl, family):
    # An attribute header that claims more bytes than the message has.
    expect_error(genl.request(family, VIP_CMD_GET_VERSION, struct.pack("=HH", 64, VIP_A_VERSION)), errno.EINVAL)


def case_unknown_command(genl, family):
    expect_error(genl.request(family, 250), errno.EOPNOTSUPP)


def case_short_genl_header(genl, family):
    expect_error(genl.request(family, 0, genl_override=b"\x01"), errno.EINVAL)


def case_map_set_not_vip(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("10.0.0.1")), nla(VIP_A_PEER_IP4, addr("192.0.2.9"))),
                 errno.EINVAL, "240.0.0.0/4")


def case_map_set_missing_addr(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9"))), errno.EINVAL, "missing")


def case_map_set_bad_peer(genl, family):
    for bad in ("0.0.0.0", "127.0.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255"):
        expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9")), nla(VIP_A_PEER_IP4, addr(bad))),
                     errno.EINVAL, "unicast")


def case_map_set_bad_local(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9")), nla(VIP_A_PEER_IP4, addr("192.0.2.9")),
                         nla(VIP_A_LOCAL_VIP, addr("192.0.2.1"))), errno.EINVAL, "local VIP")


def case_map_set_bad_flags(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9")), nla(VIP_A_PEER_IP4, addr("192.0.2.9")),
                         nla(VIP_A_FLAGS, struct.pack("=I", 0x80))), errno.EINVAL)


def case_map_set_short_addr(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, b"\xf0\x00"), nla(VIP_A_PEER_IP4, addr("192.0.2.9"))),
                 errno.EINVAL)


def case_map_set_reply_only_attr(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9")), nla(VIP_A_PEER_IP4, addr("192.0.2.9")),
                         nla(VIP_A_RX_PACKETS, struct.pack("=Q", 1))), errno.EINVAL)


def case_map_set_unknown_attr(genl, family):
    expect_error(map_set(genl, family, nla(VIP_A_PEER_VIP, addr("240.0.0.9")), nla(VIP_A_PEER_IP4, addr("192.0.2.9")),
                         nla(200, b"\0\0\0\0")), errno.EINVAL)


def case_map_del_missing(genl, family):
    expect_error(genl.request(family, VIP_CMD_MAP_DEL, nla(VIP_A_PEER_VIP, addr("240.9.9.9"))), errno.ENOENT, "no mapping")


def case_map_del_with_peer_ip4(genl, family):
    # Each command has its own policy: MAP_DEL names a VIP and nothing else.
    expect_error(genl.request(family, VIP_CMD_MAP_DEL, nla(VIP_A_PEER_VIP, addr("240.0.0.9")) +
                              nla(VIP_A_PEER_IP4, addr("192.0.2.9"))), errno.EINVAL)


def case_map_get_with_local(genl, family):
    expect_error(genl.request(family, VIP_CMD_MAP_GET, nla(VIP_A_PEER_VIP, addr("240.0.0.9")) +
                              nla(VIP_A_LOCAL_VIP, addr("240.0.0.1"))), errno.EINVAL)


def case_flush_with_attr(genl, family):
    expect_error(genl.request(family, VIP_CMD_MAP_FLUSH, nla(VIP_A_PEER_VIP, addr("240.0.0.9"))), errno.EINVAL)


def case_info_with_attr(genl, family):
    expect_error(genl.request(family, VIP_CMD_GET_INFO, nla(VIP_A_PEER_VIP, addr("240.0.0.9"))), errno.EINVAL)


def case_set_config_with_peer(genl, family):
    expect_error(genl.request(family, VIP_CMD_SET_CONFIG, nla(VIP_A_PEER_VIP, addr("240.0.0.9"))), errno.EINVAL)


def case_set_config_zero(genl, family):
    expect_error(genl.request(family, VIP_CMD_SET_CONFIG, nla(VIP_A_MAX_MAPPINGS, struct.pack("=I", 0))),
                 errno.EINVAL, "limit on mappings")


def case_set_config_too_big(genl, family):
    expect_error(genl.request(family, VIP_CMD_SET_CONFIG,
                              nla(VIP_A_MAX_MAPPINGS, struct.pack("=I", (1 << 22) + 1))),
                 errno.EINVAL, "limit on mappings")


# A bad roam limit beside a good limit on mappings: neither takes effect.
def case_set_config_roam_too_big(genl, family):
    expect_error(genl.request(family, VIP_CMD_SET_CONFIG,
                              nla(VIP_A_MAX_MAPPINGS, struct.pack("=I", 5)) +
                              nla(VIP_A_ROAM_LIMIT, struct.pack("=I", 100001))),
                 errno.EINVAL, "roam limit")


# What an unprivileged user (no CAP_NET_ADMIN over the namespace) gets: EPERM for everything
# but the version, including reads (they reveal where peers are) and the events group.
def case_unprivileged(genl, family):
    probe = nla(VIP_A_PEER_VIP, addr("240.0.0.2"))
    for what, answers in [
        ("MAP_GET", genl.request(family, VIP_CMD_MAP_GET, probe)),
        ("MAP_GET dump", genl.request(family, VIP_CMD_MAP_GET, flags=NLM_F_DUMP)),
        ("GET_INFO", genl.request(family, VIP_CMD_GET_INFO)),
        ("MAP_SET", genl.request(family, VIP_CMD_MAP_SET, probe + nla(VIP_A_PEER_IP4, addr("192.0.2.9")))),
        ("MAP_DEL", genl.request(family, VIP_CMD_MAP_DEL, probe)),
        ("MAP_FLUSH", genl.request(family, VIP_CMD_MAP_FLUSH)),
        ("SET_CONFIG", genl.request(family, VIP_CMD_SET_CONFIG, nla(VIP_A_MAX_MAPPINGS, struct.pack("=I", 5)))),
    ]:
        code, _ = error_of(answers)
        if code != -errno.EPERM:
            sys.exit(f"{what}: expected -EPERM, got {code}")
        print(f"{what}: EPERM")
    _, groups = genl.family("vip")
    try:
        genl.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, groups["events"])
    except PermissionError:
        print("events group: EPERM")
    else:
        sys.exit("joined the events group without CAP_NET_ADMIN")
    code, _ = error_of(genl.request(family, VIP_CMD_GET_VERSION))
    if code != 0:
        sys.exit(f"GET_VERSION: expected success, got {code}")
    print("GET_VERSION: allowed")


CASES = {
    "map-del-with-peer-ip4": case_map_del_with_peer_ip4,
    "map-get-with-local": case_map_get_with_local,
    "flush-with-attr": case_flush_with_attr,
    "info-with-attr": case_info_with_attr,
    "set-config-with-peer": case_set_config_with_peer,
    "set-config-zero": case_set_config_zero,
    "set-config-too-big": case_set_config_too_big,
    "set-config-roam-too-big": case_set_config_roam_too_big,
    "unprivileged": case_unprivileged,
    "map-set-not-vip": case_map_set_not_vip,
    "map-set-missing-addr": case_map_set_missing_addr,
    "map-set-bad-peer": case_map_set_bad_peer,
    "map-set-bad-local": case_map_set_bad_local,
    "map-set-bad-flags": case_map_set_bad_flags,
    "map-set-short-addr": case_map_set_short_addr,
    "map-set-reply-only-attr": case_map_set_reply_only_attr,
    "map-set-unknown-attr": case_map_set_unknown_attr,
    "map-del-missing": case_map_del_missing,
    "get-version-with-attr": case_get_version_with_attr,
    "truncated-attr": case_truncated_attr,
    "unknown-command": case_unknown_command,
    "short-genl-header": case_short_genl_header,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} {{{'|'.join(CASES)}}}")
    genl = Genl()
    CASES[sys.argv[1]](genl, genl.family_id("vip"))
