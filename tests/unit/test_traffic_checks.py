from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from pvnet_harness.traffic import (
    CapturedFrame,
    checksum_problems,
    complete_partial_csum,
    make_payload,
    pseudo_header_seed,
    udp_flood_frames,
)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw


def _partial(pkt: Ether, l4: type) -> tuple[bytes, int, int]:
    """What a guest stack hands a CSUM-offloading driver: pseudo-header sum, not inverted."""
    raw = bytearray(bytes(pkt))
    start = len(pkt) - len(pkt[l4])
    off = 16 if l4 is TCP else 6
    raw[start + off : start + off + 2] = struct.pack("!H", pseudo_header_seed(bytes(raw), start))
    return bytes(raw), start, off


@pytest.mark.parametrize("l3", ["v4", "v6"])
@pytest.mark.parametrize("l4", [TCP, UDP])
def test_partial_completion_gives_valid_checksum(l3: str, l4: type) -> None:
    net = IP(src="198.18.0.2", dst="198.18.0.1") if l3 == "v4" else IPv6(
        src="2001:db8::2", dst="2001:db8::1")
    pkt = Ether(bytes(Ether(src="52:54:00:50:56:01") / net / l4() / Raw(b"pvnet" * 37)))
    raw, start, off = _partial(pkt, l4)
    assert checksum_problems(raw)  # partial as left by the stack: not a valid wire frame
    frame = CapturedFrame(raw, True, start, off)
    assert checksum_problems(frame.wire()) == []
    # a driver that got csum_offset wrong produces a broken frame
    wrong = CapturedFrame(raw, True, start, 2)
    assert checksum_problems(wrong.wire())


def test_complete_rejects_out_of_frame() -> None:
    with pytest.raises(ValueError):
        complete_partial_csum(b"\0" * 20, 18, 6)


def test_make_payload_hash(tmp_path: Path) -> None:
    want = make_payload(tmp_path / "p", 100_001, b"s")
    data = (tmp_path / "p").read_bytes()
    assert len(data) == 100_001 and hashlib.sha256(data).hexdigest() == want
    assert make_payload(tmp_path / "q", 100_001, b"s") == want


def test_udp_flood_frames_distinct_and_valid() -> None:
    frames = udp_flood_frames("02:00:00:00:00:01", "52:54:00:50:56:01", "198.18.0.1",
                              "198.18.0.2", 50)
    assert len({bytes(f) for f in frames}) == 50
    assert all(checksum_problems(bytes(f)) == [] for f in frames)
    with pytest.raises(ValueError):
        udp_flood_frames("02:00:00:00:00:01", "52:54:00:50:56:01", "198.18.0.1", "10.0.0.1", 1)


def test_fragments_check_only_what_they_carry() -> None:
    from scapy.layers.inet import fragment
    from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6

    v4 = IP(src="198.18.0.2", dst="198.18.0.1") / UDP() / Raw(b"a" * 3000)
    for frag in fragment(v4, 1400):
        assert checksum_problems(bytes(Ether() / frag)) == []
    v6 = IPv6(src="2001:db8::2", dst="2001:db8::1") / IPv6ExtHdrFragment() / UDP() / Raw(b"b" * 3000)
    for frag in fragment6(v6, 1400):
        assert checksum_problems(bytes(Ether() / frag)) == []
    bad = bytearray(bytes(Ether() / fragment(v4, 1400)[0]))
    bad[24] ^= 0xFF  # IPv4 header checksum still checked on a fragment
    assert checksum_problems(bytes(bad))
