"""Device-side GSO segmentation (traffic.segment_gso) and TCP stream reassembly, checked on
scapy-built frames shaped like what a guest stack hands a TSO/USO-offloading driver."""

from __future__ import annotations

import struct

import pytest
from pvnet_harness.traffic import (
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    CapturedFrame,
    checksum_problems,
    pseudo_header_seed,
    reassemble_tcp,
    segment_gso,
)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

SRC4, DST4, SRC6, DST6 = "198.18.0.2", "198.18.0.1", "2001:db8::2", "2001:db8::1"
PAYLOAD = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: 8 segments of 1448, the last short


def _gso_frame(net: Packet, l4: Packet, mss: int = 1448) -> CapturedFrame:
    """A GSO frame as the guest stack leaves it: L4 checksum = pseudo-header seed over the
    whole frame's L4 length (not inverted), NEEDS_CSUM at the transport header."""
    pkt = Ether(bytes(Ether(src="52:54:00:50:56:01", dst="02:00:00:00:00:01") / net / l4
                      / Raw(PAYLOAD)))
    raw = bytearray(bytes(pkt))
    start = len(raw) - len(pkt[TCP if TCP in pkt else UDP])
    off = 16 if TCP in pkt else 6
    raw[start + off : start + off + 2] = struct.pack("!H", pseudo_header_seed(bytes(raw), start))
    tcp = TCP in pkt
    gso = (GSO_TCPV4 if IP in pkt else GSO_TCPV6) if tcp else GSO_UDP_L4
    hlen = start + (pkt[TCP].dataofs * 4 if tcp else 8)
    return CapturedFrame(bytes(raw), True, start, off, gso, mss, hlen)


def _tcp(flags: str = "PA", seq: int = 0xFFFFF000) -> Packet:
    # seq near the wrap: segment seqs must wrap modulo 2**32
    return TCP(sport=40000, dport=5001, seq=seq, ack=1, flags=flags,
               options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])


@pytest.mark.parametrize(("net", "mss"), [(IP(src=SRC4, dst=DST4, id=0xFFFE), 1448),
                                           (IPv6(src=SRC6, dst=DST6), 1428)], ids=["v4", "v6"])
def test_tcp_segments_valid_and_exact(net: Packet, mss: int) -> None:
    """An MSS-sized cut of a 1500-MTU stream (timestamps on): every segment fits the MTU."""
    cf = _gso_frame(net, _tcp("FPA"), mss)
    assert checksum_problems(cf.frame)  # the seed is not a finished checksum
    segs = cf.segments()
    assert len(segs) == 8
    hdr = cf.hdr_len
    for i, raw in enumerate(segs):
        assert checksum_problems(raw) == [], i
        assert len(raw) - 14 <= 1500
        pkt = Ether(raw)
        assert raw[:hdr][:14] == cf.frame[:14]
        assert pkt[TCP].seq == (0xFFFFF000 + i * mss) & 0xFFFFFFFF
        assert bytes(pkt[TCP].payload) == PAYLOAD[i * mss : (i + 1) * mss]
        last = i == len(segs) - 1
        assert bool(pkt[TCP].flags.F) == last and bool(pkt[TCP].flags.P) == last
        assert pkt[TCP].options == Ether(cf.frame)[TCP].options
        if IP in pkt:
            assert pkt[IP].id == (0xFFFE + i) & 0xFFFF
            assert pkt[IP].len == len(raw) - 14
        else:
            assert pkt[IPv6].plen == len(raw) - 54


def test_cwr_only_on_first_segment() -> None:
    cf = _gso_frame(IP(src=SRC4, dst=DST4), _tcp("CA"))
    cf = CapturedFrame(cf.frame, True, cf.csum_start, cf.csum_offset, GSO_TCPV4 | GSO_ECN,
                       cf.gso_size, cf.hdr_len)
    flags = [Ether(raw)[TCP].flags for raw in cf.segments()]
    assert flags[0].C and not any(f.C for f in flags[1:])
    assert all(f.A for f in flags)


def test_udp_l4_segments() -> None:
    cf = _gso_frame(IPv6(src=SRC6, dst=DST6), UDP(sport=1, dport=7000))
    segs = cf.segments()
    assert len(segs) == 8
    for i, raw in enumerate(segs):
        assert checksum_problems(raw) == []
        pkt = Ether(raw)
        assert pkt[UDP].len == len(raw) - 54
        assert bytes(pkt[UDP].payload) == PAYLOAD[i * 1448 : (i + 1) * 1448]


def test_wrong_seed_or_type_detected() -> None:
    cf = _gso_frame(IP(src=SRC4, dst=DST4), _tcp())
    # a driver that left the seed over the wrong length: every segment's checksum is wrong
    bad = bytearray(cf.frame)
    pos = cf.csum_start + cf.csum_offset
    bad[pos : pos + 2] = struct.pack("!H", pseudo_header_seed(cf.frame, cf.csum_start, 1448))
    segs = segment_gso(bytes(bad), GSO_TCPV4, 1448, cf.csum_start, cf.csum_offset)
    assert all(checksum_problems(raw) for raw in segs)
    with pytest.raises(ValueError):
        segment_gso(cf.frame, GSO_TCPV6, 1448, cf.csum_start, cf.csum_offset)
    with pytest.raises(ValueError):
        CapturedFrame(cf.frame, True, cf.csum_start, cf.csum_offset, GSO_TCPV4, 1448).wire()
    with pytest.raises(ValueError):
        CapturedFrame(cf.frame, False, 0, 0, GSO_TCPV4, 1448).segments()


def test_reassemble_tcp_with_retransmission() -> None:
    syn = bytes(Ether() / IP(src=SRC4, dst=DST4) / _tcp("S", seq=0xFFFFFFF0))
    cf = _gso_frame(IP(src=SRC4, dst=DST4), _tcp(seq=0xFFFFFFF1))
    segs = cf.segments()
    other = bytes(Ether() / IP(src=DST4, dst=SRC4) / TCP(sport=5001, dport=40000) / Raw(b"x"))
    # out of order, a duplicate, a retransmission that starts inside an earlier segment
    partial_rtx = segment_gso(cf.frame, GSO_TCPV4, 1000, cf.csum_start, cf.csum_offset)[3]
    frames = [syn, other, *segs[4:], *segs[:4], segs[2], partial_rtx]
    assert reassemble_tcp(frames, SRC4, DST4, 5001) == PAYLOAD
    with pytest.raises(ValueError):
        reassemble_tcp(segs, SRC4, DST4, 5001)  # no SYN
    tampered = bytearray(segs[1])
    tampered[-1] ^= 1
    with pytest.raises(ValueError):
        reassemble_tcp([syn, *segs, bytes(tampered)], SRC4, DST4, 5001)
