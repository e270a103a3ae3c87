"""The stdlib netlink client for netdev qstats-get: message building and reply decoding."""

from __future__ import annotations

import struct

from pvnet_harness import qstats


def _reply(attrs: bytes, mtype: int = 0x20) -> bytes:
    genl = struct.pack("BBH", qstats.NETDEV_CMD_QSTATS_GET, 1, 0)
    return struct.pack("IHHII", 16 + len(genl) + len(attrs), mtype, 2, 3, 0) + genl + attrs


def test_nlattr_is_padded_to_four_bytes() -> None:
    a = qstats.nlattr(qstats.CTRL_ATTR_FAMILY_NAME, b"netdev\0")
    assert len(a) == 12 and struct.unpack_from("HH", a) == (11, 2)


def test_genl_msg_header_length_matches() -> None:
    m = qstats.genl_msg(0x10, 3, 5, 7, qstats.nlattr(2, b"abc\0"))
    length, family, flags, seq, _ = struct.unpack_from("IHHII", m)
    assert (length, family, flags, seq) == (len(m), 0x10, 5, 7)


def test_decode_queue_record_with_4_and_8_byte_counters() -> None:
    attrs = (qstats.nlattr(qstats.A_IFINDEX, struct.pack("I", 2))
             + qstats.nlattr(qstats.A_QUEUE_TYPE, struct.pack("I", 1))
             + qstats.nlattr(qstats.A_QUEUE_ID, struct.pack("I", 3))
             + qstats.nlattr(10, struct.pack("I", 1234))
             + qstats.nlattr(11, struct.pack("Q", 1 << 40))
             + qstats.nlattr(33, struct.pack("Q", 5)))
    msgs = list(qstats.messages(_reply(attrs) + _reply(b"", qstats.NLMSG_DONE)))
    assert [t for t, _ in msgs] == [0x20, qstats.NLMSG_DONE]
    rec = qstats.decode_qstats(msgs[0][1])
    assert rec == {"type": "tx", "id": 3, "tx-packets": 1234, "tx-bytes": 1 << 40, "tx-stop": 5}


def test_decode_device_record_has_no_queue_fields() -> None:
    attrs = qstats.nlattr(qstats.A_IFINDEX, struct.pack("I", 2)) + qstats.nlattr(
        8, struct.pack("Q", 99))
    rec = qstats.decode_qstats(next(iter(qstats.messages(_reply(attrs))))[1])
    assert rec == {"rx-packets": 99}
