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
VIP_CMD_GET_VERSION = 1
VIP_A_VERSION = 1


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
        self.seq = 0

    def request(self, family, cmd, payload=b"", version=1, genl_override=None):
        """Sends one message, returns the list of (type, payload) answers up to the ack."""
        self.seq += 1
        genl = genl_override if genl_override is not None else struct.pack("=BBH", cmd, version, 0)
        body = genl + payload
        header = struct.pack("=IHHII", 16 + len(body), family, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0)
        self.sock.send(header + body)
        answers = []
        while True:
            data = self.sock.recv(65536)
            while len(data) >= 16:
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
                answers.append((kind, data[16:length]))
                if kind == NLMSG_ERROR:
                    return answers
                data = data[(length + 3) & ~3:]

    def family_id(self, name):
        answers = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                               nla(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))
        for kind, payload in answers:
            if kind == GENL_ID_CTRL:
                for attr, value in attrs(payload[4:]):
                    if attr == CTRL_ATTR_FAMILY_ID:
                        return struct.unpack("=H", value[:2])[0]
        sys.exit(f"no generic netlink family {name!r}: is vip.ko loaded?")


def error_code(answers):
    for kind, payload in answers:
        if kind == NLMSG_ERROR:
            return struct.unpack_from("=i", payload)[0]
    return None


def expect_error(answers, code):
    got = error_code(answers)
    if got != -code:
        sys.exit(f"expected -{errno.errorcode[code]}, got {got}")


def case_get_version_with_attr(genl, family):
    expect_error(genl.request(family, VIP_CMD_GET_VERSION, nla(VIP_A_VERSION, b"1.0\0")), errno.EINVAL)


def case_truncated_attr(genl, family):
    # An attribute header that claims more bytes than the message has.
    expect_error(genl.request(family, VIP_CMD_GET_VERSION, struct.pack("=HH", 64, VIP_A_VERSION)), errno.EINVAL)


def case_unknown_command(genl, family):
    expect_error(genl.request(family, 250), errno.EOPNOTSUPP)


def case_short_genl_header(genl, family):
    expect_error(genl.request(family, 0, genl_override=b"\x01"), errno.EINVAL)


CASES = {
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
