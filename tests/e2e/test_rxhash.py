"""Hash reports (VIRTIO_NET_F_HASH_REPORT; QEMU's `hash=on`, off by default): pvnet negotiates the
20-byte header in both directions, gives the device the kernel's RSS key (shown by `ethtool -x`),
turns each reported Toeplitz hash into skb->hash (`ethtool -K rxhash`) and, where the build found
probe xdp_metadata_rx_hash, into what the XDP rx-hash kfunc bpf_xdp_metadata_rx_hash() returns.

The kfunc test sends numbered UDP frames over IPv4 and IPv6 with 600 different source ports from
the host into the DUT's tap; tests/bpf/xdp_rx_hash.c, loaded bound to the DUT (load_bound), stores
the kfunc's result per frame, and every hash must equal the Toeplitz hash of the frame's
addresses and ports under the key `ethtool -x` shows. Kernels without the kfunc (no
xdp_metadata_rx_hash probe in the build) must refuse to load the program.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from pvnet_harness.bpf import BpfPrograms, build_all
from pvnet_harness.guest import load_profile
from pvnet_harness.netlab import check_test_address
from pvnet_harness.testbed import (
    DUT_V4,
    DUT_V6,
    HOST_V4,
    HOST_V6,
    TestBed,
    parse_ethtool_features,
)
from pvnet_harness.traffic import send_frames
from pvnet_harness.transfer import start_both_ways
from pvnet_harness.xdp import XDP_TEST_PORT, GuestXdp, parse_rss_key, toeplitz
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

pytestmark = pytest.mark.qemu

MIB = 1 << 20
N = 600  # frames per family and round: 3 rounds of 2 x 600 fit the map's 4096 slots
ENODATA = 61
# enum xdp_rss_hash_type (include/net/xdp.h): L3_IPV4|L3_IPV6 = bits 0|1, L4 = bit 3, UDP = bit 5
RSS_TYPE_L4_UDP = {4: 0b101001, 6: 0b101010}
VIRTIO_NET_F_HASH_REPORT = 57


@pytest.fixture(scope="module")
def progs() -> BpfPrograms:
    return build_all()


@pytest.fixture(scope="module")
def bed_hash(make_bed: Callable[..., TestBed], progs: BpfPrograms) -> Iterator[TestBed]:
    with make_bed(profile=load_profile().variant(props={"hash": "on"})) as tb:
        GuestXdp(tb.g, progs).install()
        yield tb


def _frames(bed: TestBed, first: int) -> list[Packet]:
    """N numbered UDP frames to XDP_TEST_PORT over IPv4 then N over IPv6 (sequence numbers
    from `first`), source ports 40000..40000+N-1."""
    frames: list[Packet] = []
    for version, src, dst in ((4, HOST_V4, DUT_V4), (6, HOST_V6, DUT_V6)):
        check_test_address(dst)
        ip = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
        for i in range(N):
            seq = first + len(frames)
            frames.append(Ether(src="02:00:00:00:00:01", dst=bed.dut_mac) / ip
                          / UDP(sport=40000 + i, dport=XDP_TEST_PORT)
                          / Raw(seq.to_bytes(4, "big").ljust(18, b"\0")))
    return frames


def _flow(frame: Packet) -> tuple[int, bytes]:
    """(IP version, the Toeplitz input of a UDP frame: source and destination address, source
    and destination port)."""
    ip = frame[IP] if IP in frame else frame[IPv6]
    version = 4 if IP in frame else 6
    data = ip_address(ip.src).packed + ip_address(ip.dst).packed
    return version, data + frame[UDP].sport.to_bytes(2, "big") + frame[UDP].dport.to_bytes(2, "big")


def _send_and_collect(bed: TestBed, read: Callable[[], dict[int, tuple[int, int, int, int]]],
                      first: int) -> tuple[list[Packet], dict[int, tuple[int, int, int, int]]]:
    """Send a round of frames; wait until the program (its map read by `read`) saw them all."""
    frames = _frames(bed, first)
    send_frames(bed.net, bed.dut_tap, frames)
    want = set(range(first, first + len(frames)))
    deadline = time.monotonic() + 60
    while True:
        got = read()
        if want <= set(got) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = sorted(want - set(got))
    assert not missing, f"{len(missing)} frames never reached the program: {missing[:10]}..."
    return frames, got


def test_hash_reports_negotiated_and_shown(bed_hash: TestBed) -> None:
    """Feature bit 57 negotiated; receive-hashing on and switchable; `ethtool -x` shows a
    40-byte Toeplitz key; `ethtool -n rx-flow-hash` names the hashed fields."""
    bed, dev = bed_hash, bed_hash.dut_if()
    features = bed.g.sh(f"cat /sys/bus/virtio/devices/{bed.nic_virtio()}/features")
    assert features[VIRTIO_NET_F_HASH_REPORT] == "1", features
    assert parse_ethtool_features(bed.g.sh(f"ethtool -k {dev}"))["receive-hashing"].on
    rss = bed.g.sh(f"ethtool -x {dev}")
    assert len(parse_rss_key(rss)) == 40, rss
    assert re.search(r"toeplitz:\s+on", rss), rss
    for flow in ("udp4", "tcp6"):
        out = bed.g.sh(f"ethtool -n {dev} rx-flow-hash {flow}")
        for field in ("IP SA", "IP DA", "L4 bytes 0 & 1", "L4 bytes 2 & 3"):
            assert field in out, out
    bed.g.sh(f"ethtool -K {dev} rxhash off")
    try:
        assert parse_ethtool_features(bed.g.sh(f"ethtool -k {dev}"))["receive-hashing"].on is False
        out = bed.g.sh(f"ethtool -n {dev} rx-flow-hash udp4")
        assert "IP SA" not in out, out
    finally:
        bed.g.sh(f"ethtool -K {dev} rxhash on")


def test_traffic_byte_exact_with_the_20_byte_header(bed_hash: TestBed, tmp_path: Path) -> None:
    """TCP both ways at once, byte for byte, with hash reports on: the header grew to 20 bytes
    on transmit and receive."""
    start_both_ways(bed_hash, tmp_path, 8 * MIB, tag="hash")()


def _mismatches(key: bytes, frames: list[Packet], got: dict[int, tuple[int, int, int, int]],
                first: int, fields: slice) -> list[tuple[int, object, object]]:
    """(seq, recorded, wanted) of every frame whose record differs from (0, the Toeplitz hash,
    the UDP rss type, seen once) in `fields`; frames are numbered from `first`."""
    wrong: list[tuple[int, object, object]] = []
    for seq, frame in enumerate(frames, first):
        version, data = _flow(frame)
        want = (0, toeplitz(key, data), RSS_TYPE_L4_UDP[version], 1)
        rec: tuple[int, ...] = got.get(seq, ())
        if rec[fields] != want[fields]:
            wrong.append((seq, rec or None, want))
    return wrong


def _records_with_rxhash_off(bed: TestBed,
                             read: Callable[[], dict[int, tuple[int, int, int, int]]],
                             first: int) -> list[tuple[int, int, int, int]]:
    """The program's records of a round of frames (numbered from `first`) sent while
    `ethtool -K rxhash off`; rxhash is on again after."""
    dev = bed.dut_if()
    bed.g.sh(f"ethtool -K {dev} rxhash off")
    try:
        _, recs = _send_and_collect(bed, read, first)
    finally:
        bed.g.sh(f"ethtool -K {dev} rxhash on")
    return [rec for seq, rec in recs.items() if seq >= first]


def test_xdp_rx_hash_kfunc_is_the_toeplitz_hash(bed_hash: TestBed, progs: BpfPrograms) -> None:
    """With probe xdp_metadata_rx_hash: bpf_xdp_metadata_rx_hash() returns, for every frame,
    the Toeplitz hash of its addresses and ports under the key of `ethtool -x` and the
    UDP/IPv4 or UDP/IPv6 type; with `rxhash off` -ENODATA; after `rxhash on` and a change of
    queue pairs (the device drops its hash configuration at VQ_PAIRS_SET) hashes again.
    Without it the kernel has no such kfunc: the program is refused."""
    bed, x = bed_hash, GuestXdp(bed_hash.g, progs)
    dev = bed.dut_if()
    res = x.attach_bound(dev, "xdp_rx_hash")
    if not bed.has("xdp_metadata_rx_hash"):
        assert res.rc != 0, f"a metadata kfunc program loaded without xdp_metadata_rx_hash: {res.out}"
        assert "bpf_xdp_metadata_rx_hash" in res.out, res.out
        return
    assert res.rc == 0, res.out
    try:
        key = parse_rss_key(bed.g.sh(f"ethtool -x {dev}"))
        map_id = x.map_id(dev, "rx_hashes")

        def read() -> dict[int, tuple[int, int, int, int]]:
            return x.rx_hashes(map_id)

        frames, got = _send_and_collect(bed, read, 0)
        wrong = _mismatches(key, frames, got, 0, slice(0, 4))
        assert not wrong, f"{len(wrong)} of {len(frames)} hashes wrong (seq, got, want): {wrong[:5]}"
        assert len({h for _, h, _, _ in got.values()}) > len(frames) * 0.9, "hashes barely differ"

        rets = {r for r, _, _, _ in _records_with_rxhash_off(bed, read, len(frames))}
        assert rets == {-ENODATA}, f"with rxhash off the kfunc returned {rets}"

        bed.g.sh(f"ethtool -L {dev} combined 1 && ethtool -L {dev} combined 2")
        frames2, again = _send_and_collect(bed, read, 2 * len(frames))
        wrong = _mismatches(key, frames2, again, 2 * len(frames), slice(0, 3))
        assert not wrong, f"{len(wrong)} hashes wrong after rxhash on and ethtool -L: {wrong[:5]}"
    finally:
        x.detach(dev)


def test_skb_hash_is_the_toeplitz_hash(bed_hash: TestBed, progs: BpfPrograms) -> None:
    """Every line: the skb of each frame reaches tc ingress with skb->hash = the Toeplitz hash
    of its addresses and ports under the key of `ethtool -x`; with `rxhash off` the driver sets
    none (0: RPS is off, so nothing computed one before tc)."""
    bed, x = bed_hash, GuestXdp(bed_hash.g, progs)
    dev = bed.dut_if()
    bed.g.sh(f"tc qdisc replace dev {dev} clsact && "
             f"tc filter add dev {dev} ingress bpf direct-action obj {x.obj('tc_skb_hash')} sec tc")
    try:
        key = parse_rss_key(bed.g.sh(f"ethtool -x {dev}"))
        map_id = x.prog_map_id("tc_skb_hash", "rx_hashes")

        def read() -> dict[int, tuple[int, int, int, int]]:
            return x.rx_hashes(map_id)

        frames, got = _send_and_collect(bed, read, 0)
        wrong = _mismatches(key, frames, got, 0, slice(1, 2))
        assert not wrong, f"{len(wrong)} of {len(frames)} skb hashes wrong (seq, got, want): " \
                          f"{wrong[:5]}"
        hashes = {h for _, h, _, _ in _records_with_rxhash_off(bed, read, len(frames))}
        assert hashes == {0}, f"with rxhash off skb->hash was {sorted(hashes)[:5]}..."
    finally:
        bed.g.sh(f"tc qdisc del dev {dev} clsact")
