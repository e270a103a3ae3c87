"""The hostile vhost-user back-end's ring and header logic on fake guest memory (no QEMU)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pvnet_harness.guest import load_profile, qemu_argv
from pvnet_harness.kernels import KernelTree
from pvnet_harness.vhost_user import (
    CSUM_VARIANTS,
    F_GUEST_CSUM,
    F_GUEST_ECN,
    F_GUEST_TSO4,
    F_GUEST_TSO6,
    F_HASH_REPORT,
    F_MRG_RXBUF,
    F_VERSION_1,
    GSO_NONE,
    GSO_TCPV4,
    GSO_VARIANTS,
    HDR_F_NEEDS_CSUM,
    HDR_HASH_LEN,
    HDR_LEN,
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    TUN_F_TSO_ECN,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    FlatMemory,
    NetDevice,
    NetHdr,
    RingError,
    tap_offloads,
    udp_dport,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

NUM = 16
DESC, AVAIL, USED, BUFS = 0x1000, 0x2000, 0x3000, 0x10000
BUF = 2048
FEATURES = (1 << F_VERSION_1) | (1 << F_MRG_RXBUF) | (1 << F_GUEST_CSUM)


@dataclass
class FakeDriver:
    """The driver's side of two split rings (rx = 0, tx = 1) in one flat memory."""

    mem: FlatMemory = field(default_factory=lambda: FlatMemory(bytearray(0x200000)))
    avail_idx: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    used_seen: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    next_desc: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})

    def base(self, ring: int, what: int) -> int:
        return what + ring * 0x800

    def _desc(self, ring: int, i: int, addr: int, length: int, flags: int, nxt: int = 0) -> None:
        struct.pack_into("<QIHH", self.mem.data, self.base(ring, DESC) + 16 * i, addr, length,
                         flags, nxt)

    def _publish(self, ring: int, head: int) -> None:
        av = self.base(ring, AVAIL)
        struct.pack_into("<H", self.mem.data, av + 4 + 2 * (self.avail_idx[ring] % NUM), head)
        self.avail_idx[ring] += 1
        struct.pack_into("<H", self.mem.data, av + 2, self.avail_idx[ring] & 0xFFFF)

    def post_rx(self, n: int, size: int = BUF) -> list[int]:
        heads = []
        for _ in range(n):
            i = self.next_desc[0] % NUM
            self.next_desc[0] += 1
            self._desc(0, i, BUFS + i * 0x2000, size, VRING_DESC_F_WRITE)
            self._publish(0, i)
            heads.append(i)
        return heads

    def post_rx_chain(self, sizes: list[int]) -> int:
        """One rx buffer made of several descriptors (a ring without mergeable buffers)."""
        first = self.next_desc[0] % NUM
        for k, size in enumerate(sizes):
            i = (first + k) % NUM
            last = k == len(sizes) - 1
            self._desc(0, i, BUFS + i * 0x2000, size,
                       VRING_DESC_F_WRITE | (0 if last else VRING_DESC_F_NEXT), (i + 1) % NUM)
        self.next_desc[0] += len(sizes)
        self._publish(0, first)
        return first

    def post_tx(self, data: bytes) -> int:
        i = self.next_desc[1] % NUM
        self.next_desc[1] += 1
        addr = BUFS + 0x80000 + i * 0x8000
        self.mem.data[addr:addr + len(data)] = data
        self._desc(1, i, addr, len(data), 0)
        self._publish(1, i)
        return i

    def used(self, ring: int) -> list[tuple[int, int]]:
        """Used elements the device published since the last call."""
        u = self.base(ring, USED)
        idx = struct.unpack_from("<H", self.mem.data, u + 2)[0]
        out = []
        while self.used_seen[ring] != idx:
            slot = self.used_seen[ring] % NUM
            out.append(struct.unpack_from("<II", self.mem.data, u + 4 + 8 * slot))
            self.used_seen[ring] = (self.used_seen[ring] + 1) & 0xFFFF
        return out

    def buffer(self, head: int, length: int) -> bytes:
        addr = BUFS + head * 0x2000
        return bytes(self.mem.data[addr:addr + length])


@dataclass
class Bed:
    drv: FakeDriver
    dev: NetDevice
    tap: list[bytes]
    irqs: list[int]
    now: list[float]


@pytest.fixture
def bed() -> Bed:
    drv = FakeDriver()
    tap: list[bytes] = []
    irqs: list[int] = []
    now = [0.0]
    dev = NetDevice(drv.mem, tap.append, irqs.append, features=FEATURES, clock=lambda: now[0])
    for r in (0, 1):
        ring = dev.ring(r)
        ring.num, ring.desc, ring.avail, ring.used = NUM, drv.base(r, DESC), drv.base(r, AVAIL), \
            drv.base(r, USED)
        ring.started = ring.enabled = True
    return Bed(drv, dev, tap, irqs, now)


def udp_frame(size: int = 100, dport: int = 7777) -> bytes:
    pkt = Ether(src="02:00:00:00:00:01", dst="52:54:00:50:56:01") / IP(
        src="198.18.0.1", dst="198.18.0.2") / UDP(sport=4000, dport=dport)
    raw = bytes(pkt)
    return raw + bytes(max(0, size - len(raw)))


def from_tap(frame: bytes, hdr: NetHdr | None = None) -> bytes:
    return (hdr or NetHdr()).pack() + frame


# ------------------------------------------------------------------ header and helpers


def test_header_round_trip() -> None:
    h = NetHdr(HDR_F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16, 3, 0xDEADBEEF, 2)
    assert len(h.pack()) == HDR_LEN and len(h.pack(HDR_HASH_LEN)) == HDR_HASH_LEN
    assert NetHdr.unpack(h.pack(HDR_HASH_LEN)) == h
    short = NetHdr.unpack(h.pack())
    assert (short.num_buffers, short.hash_value) == (3, 0)


def test_tap_offloads_follow_guest_features() -> None:
    assert tap_offloads(0) == 0
    assert tap_offloads(1 << F_GUEST_TSO4) == 0  # no TSO without checksum offload
    full = (1 << F_GUEST_CSUM) | (1 << F_GUEST_TSO4) | (1 << F_GUEST_TSO6) | (1 << F_GUEST_ECN)
    assert tap_offloads(full) == TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN


def test_udp_dport_of_v4_and_v6_frames() -> None:
    assert udp_dport(udp_frame(dport=1234)) == 1234
    from scapy.layers.inet6 import IPv6

    v6 = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=99))
    assert udp_dport(v6) == 99
    assert udp_dport(b"\0" * 60) is None


# ------------------------------------------------------------------ good behaviour


def test_rx_frame_lands_in_one_buffer_with_its_header(bed: Bed) -> None:
    heads = bed.drv.post_rx(4)
    frame = udp_frame(300)
    bed.dev.receive(from_tap(frame, NetHdr(flags=HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=6)))
    assert bed.dev.flush_rx() == 1
    assert bed.drv.used(0) == [(heads[0], HDR_LEN + len(frame))]
    data = bed.drv.buffer(heads[0], HDR_LEN + len(frame))
    hdr = NetHdr.unpack(data[:HDR_LEN])
    assert (hdr.num_buffers, hdr.flags, hdr.csum_start, hdr.csum_offset) == (1, 1, 34, 6)
    assert data[HDR_LEN:] == frame
    assert bed.irqs == [0]


def test_rx_large_frame_merges_buffers(bed: Bed) -> None:
    heads = bed.drv.post_rx(4)
    frame = udp_frame(5000)
    bed.dev.receive(from_tap(frame))
    bed.dev.flush_rx()
    used = bed.drv.used(0)
    assert [u[0] for u in used] == heads[:3]
    assert [u[1] for u in used] == [BUF, BUF, HDR_LEN + len(frame) - 2 * BUF]
    got = b"".join(bed.drv.buffer(h, n) for h, n in used)
    assert NetHdr.unpack(got).num_buffers == 3 and got[HDR_LEN:] == frame


def test_rx_waits_for_buffers(bed: Bed) -> None:
    bed.dev.receive(from_tap(udp_frame()))
    assert bed.dev.flush_rx() == 0 and bed.dev.pending
    bed.drv.post_rx(1)
    assert bed.dev.flush_rx() == 1 and not bed.dev.pending


def test_rx_without_mergeable_buffers_uses_one_chain(bed: Bed) -> None:
    bed.dev.features = 1 << F_VERSION_1
    head = bed.drv.post_rx_chain([HDR_LEN, 1000, 1000])
    frame = udp_frame(1500)
    bed.dev.receive(from_tap(frame))
    bed.dev.flush_rx()
    assert bed.drv.used(0) == [(head, HDR_LEN + len(frame))]


def test_tx_chain_goes_to_the_tap(bed: Bed) -> None:
    frame = udp_frame(200)
    hdr = NetHdr(flags=HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=6).pack()
    head = bed.drv.post_tx(hdr + frame)
    assert bed.dev.process_tx(bed.dev.ring(1)) == 1
    assert bed.tap == [hdr[:HDR_LEN - 2] + b"\0\0" + frame]
    assert bed.drv.used(1) == [(head, 0)]
    assert bed.irqs == [1]


def test_hash_report_header_is_20_bytes(bed: Bed) -> None:
    bed.dev.features = FEATURES | (1 << F_HASH_REPORT)
    head = bed.drv.post_rx(1)[0]
    frame = udp_frame()
    bed.dev.receive(from_tap(frame))
    bed.dev.flush_rx()
    assert bed.drv.used(0) == [(head, HDR_HASH_LEN + len(frame))]
    tx = NetHdr().pack(HDR_HASH_LEN) + frame
    bed.drv.post_tx(tx)
    bed.dev.process_tx(bed.dev.ring(1))
    assert bed.tap == [bytes(HDR_LEN) + frame]


def test_indirect_descriptor_is_refused(bed: Bed) -> None:
    bed.drv._desc(1, 0, BUFS, 100, 4)
    bed.drv._publish(1, 0)
    with pytest.raises(RingError):
        bed.dev.process_tx(bed.dev.ring(1))


# ------------------------------------------------------------------ scenarios


def arm_and_receive(bed: Bed, scenario: str, n: int = 1, size: int = 100) -> list[tuple[int, int]]:
    bed.dev.arm(scenario, count=n, udp_port=7777)
    bed.dev.receive(from_tap(udp_frame(size, dport=1)))  # not the scenario's port: left alone
    for _ in range(n):
        bed.dev.receive(from_tap(udp_frame(size)))
    bed.dev.receive(from_tap(udp_frame(size)))  # after the N: good again
    bed.dev.flush_rx()
    assert bed.dev.counters.injected.get(scenario) == (n if scenario != "rx_burst_fill" else
                                                      bed.dev.counters.injected[scenario])
    return bed.drv.used(0)


def test_batch_delivers_bad_and_good_frames_together(bed: Bed) -> None:
    bed.drv.post_rx(8)
    bed.dev.arm("rx_num_buffers_beyond_ring", count=1, udp_port=7777, batch=3)
    for _ in range(2):
        bed.dev.receive(from_tap(udp_frame()))
        assert bed.dev.flush_rx() == 0
    bed.dev.receive(from_tap(udp_frame()))
    assert bed.dev.flush_rx() == 3 and bed.irqs == [0]  # one interrupt for the three
    bed.dev.receive(from_tap(udp_frame()))
    assert bed.dev.flush_rx() == 1  # batching ends with the batch


def test_batch_gives_up_waiting(bed: Bed) -> None:
    bed.drv.post_rx(8)
    bed.dev.arm("rx_num_buffers_beyond_ring", count=1, batch=3)
    bed.dev.receive(from_tap(udp_frame()))
    bed.dev.tick()
    assert not bed.drv.used(0)
    bed.now[0] = 6
    bed.dev.tick()
    assert len(bed.drv.used(0)) == 1


def test_used_len_overflow(bed: Bed) -> None:
    bed.drv.post_rx(8)
    used = arm_and_receive(bed, "rx_used_len_overflow")
    assert [u[1] for u in used] == [HDR_LEN + 100, BUF + 4096, HDR_LEN + 100]


def test_num_buffers_beyond_ring(bed: Bed) -> None:
    bed.drv.post_rx(8)
    used = arm_and_receive(bed, "rx_num_buffers_beyond_ring")
    nb = [NetHdr.unpack(bed.drv.buffer(h, HDR_LEN)).num_buffers for h, _ in used]
    assert nb == [1, NUM + 1, 1]


def test_num_buffers_over_64k(bed: Bed) -> None:
    bed.drv.post_rx(NUM, size=0x1800)
    bed.dev.arm("rx_num_buffers_over_64k", count=1, udp_port=7777)
    bed.dev.receive(from_tap(udp_frame()))
    bed.dev.flush_rx()
    used = bed.drv.used(0)
    assert sum(n for _, n in used) > 65536 + HDR_LEN
    assert NetHdr.unpack(bed.drv.buffer(used[0][0], HDR_LEN)).num_buffers == len(used) == 11
    assert bed.dev.counters.injected == {"rx_num_buffers_over_64k": 1}


def test_used_id_out_of_range(bed: Bed) -> None:
    heads = bed.drv.post_rx(8)
    used = arm_and_receive(bed, "rx_used_id_out_of_range")
    assert used == [(heads[0], HDR_LEN + 100), (NUM + 7, 64), (heads[1], HDR_LEN + 100),
                    (heads[2], HDR_LEN + 100)]


def test_used_id_repeated(bed: Bed) -> None:
    heads = bed.drv.post_rx(8)
    used = arm_and_receive(bed, "rx_used_id_repeated")
    assert [u[0] for u in used] == [heads[0], heads[1], heads[1], heads[2]]


def test_gso_inconsistent_variants(bed: Bed) -> None:
    bed.drv.post_rx(8)
    n = len(GSO_VARIANTS)
    used = arm_and_receive(bed, "rx_gso_inconsistent", n=n)
    hdrs = [NetHdr.unpack(bed.drv.buffer(h, HDR_LEN)) for h, _ in used]
    assert hdrs[0].gso_type == GSO_NONE and hdrs[-1].gso_type == GSO_NONE
    for h, (gso_type, gso_size, delta, csum) in zip(hdrs[1:-1], GSO_VARIANTS, strict=True):
        assert (h.gso_type, h.gso_size) == (gso_type, gso_size)
        assert bool(h.flags & HDR_F_NEEDS_CSUM) == csum
        if delta:
            assert h.hdr_len > 100


def test_csum_past_end_variants(bed: Bed) -> None:
    bed.drv.post_rx(8)
    used = arm_and_receive(bed, "rx_csum_past_end", n=len(CSUM_VARIANTS))
    for h, _ in used[1:-1]:
        hdr = NetHdr.unpack(bed.drv.buffer(h, HDR_LEN))
        assert hdr.flags & HDR_F_NEEDS_CSUM
        assert hdr.csum_start + hdr.csum_offset + 2 > 100  # past the 100-byte frame


def test_hash_report_out_of_range_needs_the_feature(bed: Bed) -> None:
    with pytest.raises(ValueError, match="HASH_REPORT"):
        bed.dev.arm("rx_hash_report_out_of_range")
    bed.dev.features |= 1 << F_HASH_REPORT
    bed.drv.post_rx(4)
    used = arm_and_receive(bed, "rx_hash_report_out_of_range")
    assert NetHdr.unpack(bed.drv.buffer(used[1][0], HDR_HASH_LEN)).hash_report == 0xFFFF


def test_burst_fills_every_buffer_with_one_interrupt(bed: Bed) -> None:
    heads = bed.drv.post_rx(NUM)
    bed.dev.arm("rx_burst_fill", count=1, udp_port=7777)
    bed.dev.receive(from_tap(udp_frame()))
    bed.dev.flush_rx()
    assert [u[0] for u in bed.drv.used(0)] == heads
    assert bed.dev.counters.injected == {"rx_burst_fill": NUM}
    assert bed.irqs == [0]


def test_unknown_scenario_is_refused(bed: Bed) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        bed.dev.arm("rx_nonsense")


def test_tx_stuck_until_the_ring_is_reset(bed: Bed) -> None:
    bed.dev.arm("tx_stuck", hold_s=30)
    bed.drv.post_tx(bytes(HDR_LEN) + udp_frame())
    assert bed.dev.process_tx(bed.dev.ring(1)) == 0 and bed.drv.used(1) == []
    bed.now[0] = 10
    bed.dev.tick()
    assert bed.dev.tx_stuck
    bed.dev.ring_stopped(bed.dev.ring(1))  # GET_VRING_BASE: a device or queue reset
    assert not bed.dev.tx_stuck and bed.dev.counters.held_cleared_by_reset == 1


def test_tx_stuck_released_after_hold(bed: Bed) -> None:
    bed.dev.arm("tx_stuck", hold_s=5)
    head = bed.drv.post_tx(bytes(HDR_LEN) + udp_frame())
    bed.dev.process_tx(bed.dev.ring(1))
    bed.now[0] = 6
    bed.dev.tick()
    assert bed.drv.used(1) == [(head, 0)] and len(bed.tap) == 1
    assert bed.dev.counters.held_cleared_by_timeout == 1


def test_irq_stuck_suppresses_then_signals_every_ring(bed: Bed) -> None:
    bed.dev.arm("irq_stuck", hold_s=5)
    bed.drv.post_rx(2)
    bed.dev.receive(from_tap(udp_frame()))
    bed.dev.flush_rx()
    assert bed.drv.used(0) and bed.irqs == []  # the ring moved, nobody was told
    assert bed.dev.counters.signals_suppressed == 1
    bed.now[0] = 5
    bed.dev.tick()
    assert sorted(bed.irqs) == [0, 1]


# ------------------------------------------------------------------ QEMU arguments


def _tree(tmp_path: Path) -> KernelTree:
    return KernelTree("6.1", "6.1.192-2", "6.1.0-56-amd64", tmp_path, tmp_path / "vmlinux")


def test_hostile_profile_renders_vhost_user(tmp_path: Path) -> None:
    prof = load_profile("hostile").variant(socket="/tmp/x/vhost.sock")
    argv = qemu_argv(prof, _tree(tmp_path), tmp_path / "i.gz", tmp_path, tmp_path / "q.sock",
                     "tcg")
    assert argv[argv.index("-object") + 1] == "memory-backend-memfd,id=mem,size=1024M,share=on"
    assert argv[argv.index("-numa") + 1] == "node,memdev=mem"
    assert argv[argv.index("-chardev") + 1] == "socket,id=dutnetchr,path=/tmp/x/vhost.sock"
    nets = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert nets[0] == "vhost-user,id=dutnet,chardev=dutnetchr,queues=1"
    assert nets[1].startswith("tap,id=peernet,ifname=tappeer,")


def test_vhost_user_nic_needs_a_socket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="socket"):
        qemu_argv(load_profile("hostile"), _tree(tmp_path), tmp_path / "i.gz", tmp_path,
                  tmp_path / "q.sock", "tcg")


def test_tap_profiles_have_no_shared_memory(tmp_path: Path) -> None:
    argv = qemu_argv(load_profile("standard"), _tree(tmp_path), tmp_path / "i.gz", tmp_path,
                     tmp_path / "q.sock", "tcg")
    assert "-object" not in argv and "-numa" not in argv and "-chardev" not in argv
