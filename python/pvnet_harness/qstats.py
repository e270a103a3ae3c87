"""Read the netdev netlink queue statistics (`qstats-get`, Linux 6.10+) with the stdlib only.

Runs in the guest (Debian's /usr/bin/python3 from the host /usr share, no third-party
packages): `python3 qstats.py IFINDEX` prints one JSON object: {"device": {...}, "queues":
[{"type": "rx"|"tx", "id": N, ...counters}]}.  Exits 3 when the kernel has no such command.
The message building and parsing are plain functions so the unit tests can check them.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from collections.abc import Iterator

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NETDEV_CMD_QSTATS_GET = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

A_IFINDEX, A_QUEUE_TYPE, A_QUEUE_ID, A_SCOPE = 1, 2, 3, 4
SCOPE_QUEUE = 1
# include/uapi/linux/netdev.h, NETDEV_A_QSTATS_*
COUNTERS = {
    8: "rx-packets", 9: "rx-bytes", 10: "tx-packets", 11: "tx-bytes",
    12: "rx-alloc-fail", 13: "rx-hw-drops", 14: "rx-hw-drop-overruns",
    15: "rx-csum-complete", 16: "rx-csum-unnecessary", 17: "rx-csum-none",
    18: "rx-csum-bad", 19: "rx-hw-gro-packets", 20: "rx-hw-gro-bytes",
    21: "rx-hw-gro-wire-packets", 22: "rx-hw-gro-wire-bytes", 23: "rx-hw-drop-ratelimits",
    24: "tx-hw-drops", 25: "tx-hw-drop-errors", 26: "tx-csum-none", 27: "tx-needs-csum",
    28: "tx-hw-gso-packets", 29: "tx-hw-gso-bytes", 30: "tx-hw-gso-wire-packets",
    31: "tx-hw-gso-wire-bytes", 32: "tx-hw-drop-ratelimits", 33: "tx-stop", 34: "tx-wake",
}


class QstatsUnsupported(RuntimeError):
    """The kernel has no netdev family or no qstats-get command."""


def nlattr(kind: int, payload: bytes) -> bytes:
    body = struct.pack("HH", 4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def genl_msg(family: int, cmd: int, flags: int, seq: int, attrs: bytes) -> bytes:
    genl = struct.pack("BBH", cmd, 1, 0)
    return struct.pack("IHHII", 16 + len(genl) + len(attrs), family, flags, seq, 0) + genl + attrs


def parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4: off + length]
        off += (length + 3) & ~3
    return out


def uint(raw: bytes) -> int:
    """A netlink `uint` attribute: 4 or 8 bytes, host order."""
    return int.from_bytes(raw, sys.byteorder)


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload after nlmsghdr) for each netlink message in a datagram."""
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("IH", data, off)
        if length < 16:
            break
        yield mtype, data[off + 16: off + length]
        off += (length + 3) & ~3


def decode_qstats(payload: bytes) -> dict[str, int | str]:
    """One qstats-get reply (genl header + attributes) -> a flat record."""
    attrs = parse_attrs(payload[4:])
    rec: dict[str, int | str] = {}
    if A_QUEUE_TYPE in attrs:
        rec["type"] = "rx" if uint(attrs[A_QUEUE_TYPE]) == 0 else "tx"
        rec["id"] = uint(attrs[A_QUEUE_ID])
    for kind, name in COUNTERS.items():
        if kind in attrs:
            rec[name] = uint(attrs[kind])
    return rec


def _request(sock: socket.socket, msg: bytes) -> list[bytes]:
    """Send one request; return the payloads of its replies (until DONE / the ack)."""
    sock.send(msg)
    replies: list[bytes] = []
    while True:
        data = sock.recv(1 << 16)
        for mtype, payload in messages(data):
            if mtype == NLMSG_ERROR:
                (err,) = struct.unpack_from("i", payload)
                if err == 0:
                    return replies
                raise OSError(-err, os.strerror(-err))
            if mtype == NLMSG_DONE:
                return replies
            replies.append(payload)


def family_id(sock: socket.socket, name: str) -> int:
    msg = genl_msg(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, NLM_F_REQUEST | NLM_F_ACK, 1,
                   nlattr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"))
    try:
        replies = _request(sock, msg)
    except FileNotFoundError as e:
        raise QstatsUnsupported(f"no generic netlink family {name!r}") from e
    attrs = parse_attrs(replies[0][4:])
    return int(struct.unpack("H", attrs[CTRL_ATTR_FAMILY_ID][:2])[0])


def qstats(ifindex: int) -> dict[str, object]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
        sock.bind((0, 0))
        fam = family_id(sock, "netdev")
        ifattr = nlattr(A_IFINDEX, struct.pack("I", ifindex))
        try:
            dev = _request(sock, genl_msg(fam, NETDEV_CMD_QSTATS_GET,
                                          NLM_F_REQUEST | NLM_F_DUMP, 2, ifattr))
            queues = _request(sock, genl_msg(
                fam, NETDEV_CMD_QSTATS_GET, NLM_F_REQUEST | NLM_F_DUMP, 3,
                ifattr + nlattr(A_SCOPE, struct.pack("I", SCOPE_QUEUE))))
        except OSError as e:
            raise QstatsUnsupported(f"qstats-get failed: {e}") from e
    return {"device": decode_qstats(dev[0]) if dev else {},
            "queues": [decode_qstats(q) for q in queues]}


def main(argv: list[str]) -> int:
    try:
        print(json.dumps(qstats(int(argv[1]))))
    except QstatsUnsupported as e:
        print(str(e), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
