"""A hostile virtio-net device: a vhost-user-net back-end the tests control.

QEMU keeps the virtio-net-pci device model (config space, control queue) and hands the data
queues to this process over a unix socket (`-netdev vhost-user`): the guest's memory (a shared
memfd), the rings' addresses and the kick/call eventfds. The back-end forwards frames between
the guest's rx/tx rings and a tap of the harness netns (IFF_VNET_HDR: the tap takes and gives
virtio-net headers, so checksum offload and GSO pass through as they are), and on request
misbehaves: a test arms a named scenario over the control socket, the next N frames or
completions are bad, then the device behaves again.

Split rings only; no EVENT_IDX, no indirect descriptors, no packed ring (not offered).

Run as its own process (`python -m pvnet_harness.vhost_user --socket S --control C --tap T`,
inside the netns that holds the tap); `Backend` starts and stops it by PID and is the control
channel's client.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import fcntl
import json
import mmap
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# ------------------------------------------------------------------ virtio constants

F_CSUM = 0
F_GUEST_CSUM = 1
F_MTU = 3
F_MAC = 5
F_GUEST_TSO4 = 7
F_GUEST_TSO6 = 8
F_GUEST_ECN = 9
F_HOST_TSO4 = 11
F_HOST_TSO6 = 12
F_HOST_ECN = 13
F_MRG_RXBUF = 15
F_STATUS = 16
F_CTRL_VQ = 17
F_CTRL_RX = 18
F_CTRL_VLAN = 19
F_GUEST_ANNOUNCE = 21
F_MQ = 22
F_CTRL_MAC_ADDR = 23
F_PROTOCOL_FEATURES = 30  # vhost-user: VHOST_USER_F_PROTOCOL_FEATURES
F_VERSION_1 = 32
F_HASH_REPORT = 57

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1

HDR_F_NEEDS_CSUM = 1
HDR_F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80
HASH_REPORT_MAX = 9  # VIRTIO_NET_HASH_REPORT_UDPv6_EX

HDR_LEN = 12  # struct virtio_net_hdr_v1 (VERSION_1 / MRG_RXBUF)
HDR_HASH_LEN = 20  # struct virtio_net_hdr_v1_hash
MAX_FRAME = 65536 + 14 + 4  # what a tap hands out at most (64 KiB GSO + Ethernet + VLAN)

# The data-path features this back-end implements.
DATA_FEATURES = (
    (1 << F_VERSION_1) | (1 << F_MRG_RXBUF) | (1 << F_CSUM) | (1 << F_GUEST_CSUM)
    | (1 << F_GUEST_TSO4) | (1 << F_GUEST_TSO6) | (1 << F_GUEST_ECN)
    | (1 << F_HOST_TSO4) | (1 << F_HOST_TSO6) | (1 << F_HOST_ECN)
)
# Features QEMU's device model implements itself (config space, control queue): offered so
# that QEMU does not mask them where its vhost-user feature list includes them.
QEMU_FEATURES = (
    (1 << F_MTU) | (1 << F_MAC) | (1 << F_STATUS) | (1 << F_CTRL_VQ) | (1 << F_CTRL_RX)
    | (1 << F_CTRL_VLAN) | (1 << F_GUEST_ANNOUNCE) | (1 << F_CTRL_MAC_ADDR)
)

# ------------------------------------------------------------------ vhost-user protocol

GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_LOG_BASE = 6
SET_LOG_FD = 7
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
MSG_NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int)
             and k.startswith(("GET_", "SET_", "RESET_"))}

FLAG_VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
VRING_NOFD = 1 << 8
VRING_IDX_MASK = 0xFF

PROTO_F_MQ = 0
PROTO_F_REPLY_ACK = 3

HEADER = struct.Struct("<III")
MAX_PAYLOAD = 4096

# ------------------------------------------------------------------ tap

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08


def open_tap(name: str, multi_queue: bool = False) -> int:
    """Attach to an existing (persistent) tap with virtio-net headers of HDR_LEN bytes."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (IFF_MULTI_QUEUE if multi_queue else 0)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", HDR_LEN))
    return fd


def tap_offloads(features: int) -> int:
    """TUNSETOFFLOAD flags for what the guest accepts on rx (GSO frames only where it can)."""
    off = 0
    if features >> F_GUEST_CSUM & 1:
        off |= TUN_F_CSUM
        if features >> F_GUEST_TSO4 & 1:
            off |= TUN_F_TSO4
        if features >> F_GUEST_TSO6 & 1:
            off |= TUN_F_TSO6
        if off & (TUN_F_TSO4 | TUN_F_TSO6) and features >> F_GUEST_ECN & 1:
            off |= TUN_F_TSO_ECN
    return off


# ------------------------------------------------------------------ the virtio-net header


@dataclass
class NetHdr:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0
    hash_value: int = 0
    hash_report: int = 0

    _V1 = struct.Struct("<BBHHHHH")
    _HASH = struct.Struct("<IHH")

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> NetHdr:
        h = cls(*cls._V1.unpack_from(data, 0))
        if len(data) >= HDR_HASH_LEN:
            h.hash_value, h.hash_report, _ = cls._HASH.unpack_from(data, HDR_LEN)
        return h

    def pack(self, size: int = HDR_LEN) -> bytes:
        out = self._V1.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size,
                            self.csum_start, self.csum_offset, self.num_buffers)
        if size >= HDR_HASH_LEN:
            out += self._HASH.pack(self.hash_value, self.hash_report, 0)
        return out


# ------------------------------------------------------------------ guest memory


class Memory(Protocol):
    def gpa(self, addr: int, length: int) -> memoryview:
        """Guest physical address range -> a writable view of it."""
        ...

    def uva(self, addr: int, length: int) -> memoryview:
        """QEMU virtual address range (ring addresses) -> a writable view of it."""
        ...


class MemoryError_(RuntimeError):
    """A guest address the memory table does not cover."""


@dataclass
class Region:
    gpa: int
    size: int
    uva: int
    view: memoryview  # the region's bytes


@dataclass
class GuestMemory:
    """The regions of SET_MEM_TABLE, each mmapped from its fd."""

    regions: list[Region] = field(default_factory=list)
    _maps: list[mmap.mmap] = field(default_factory=list)

    def add(self, fd: int, gpa: int, size: int, uva: int, offset: int) -> None:
        mm = mmap.mmap(fd, offset + size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._maps.append(mm)  # kept mapped for the process's life: views may still exist
        self.regions.append(Region(gpa, size, uva, memoryview(mm)[offset:offset + size]))

    def _find(self, addr: int, length: int, uva: bool) -> memoryview:
        for r in self.regions:
            base = r.uva if uva else r.gpa
            if base <= addr and addr + length <= base + r.size:
                return r.view[addr - base:addr - base + length]
        kind = "uva" if uva else "gpa"
        raise MemoryError_(f"{kind} {addr:#x}+{length:#x} is outside the memory table")

    def gpa(self, addr: int, length: int) -> memoryview:
        return self._find(addr, length, uva=False)

    def uva(self, addr: int, length: int) -> memoryview:
        return self._find(addr, length, uva=True)


@dataclass
class FlatMemory:
    """One bytearray as both guest physical and ring address space (unit tests)."""

    data: bytearray

    def gpa(self, addr: int, length: int) -> memoryview:
        if addr < 0 or addr + length > len(self.data):
            raise MemoryError_(f"gpa {addr:#x}+{length:#x} is outside the memory")
        return memoryview(self.data)[addr:addr + length]

    def uva(self, addr: int, length: int) -> memoryview:
        return self.gpa(addr, length)


# ------------------------------------------------------------------ split virtqueue


class RingError(RuntimeError):
    """The driver put something on the ring the device cannot use."""


@dataclass
class Chain:
    head: int
    segs: list[tuple[int, int, bool]]  # (gpa, length, device-writable)

    @property
    def writable(self) -> int:
        return sum(n for _, n, w in self.segs if w)


@dataclass
class Vring:
    index: int
    num: int = 0
    desc: int = 0
    avail: int = 0
    used: int = 0
    last_avail: int = 0
    used_idx: int = 0
    enabled: bool = False
    started: bool = False
    kick: int = -1
    call: int = -1
    err: int = -1

    @property
    def ready(self) -> bool:
        return self.started and self.enabled and self.num > 0 and self.desc != 0

    def _u16(self, mem: Memory, addr: int) -> int:
        return int(struct.unpack("<H", mem.uva(addr, 2))[0])

    def avail_idx(self, mem: Memory) -> int:
        return self._u16(mem, self.avail + 2)

    def avail_flags(self, mem: Memory) -> int:
        return self._u16(mem, self.avail)

    def pending(self, mem: Memory) -> int:
        """Chains the driver made available that the device has not taken."""
        return (self.avail_idx(mem) - self.last_avail) & 0xFFFF

    def chain_at(self, mem: Memory, n: int) -> Chain:
        """The n-th available chain from last_avail, not taken."""
        slot = (self.last_avail + n) % self.num
        head = self._u16(mem, self.avail + 4 + 2 * slot)
        if head >= self.num:
            raise RingError(f"vring {self.index}: avail head {head} >= {self.num}")
        segs: list[tuple[int, int, bool]] = []
        i = head
        for _ in range(self.num):
            addr, length, flags, nxt = struct.unpack("<QIHH", mem.uva(self.desc + 16 * i, 16))
            if flags & VRING_DESC_F_INDIRECT:
                raise RingError(f"vring {self.index}: indirect descriptor (not negotiated)")
            segs.append((addr, length, bool(flags & VRING_DESC_F_WRITE)))
            if not flags & VRING_DESC_F_NEXT:
                return Chain(head, segs)
            if nxt >= self.num:
                raise RingError(f"vring {self.index}: next {nxt} >= {self.num}")
            i = nxt
        raise RingError(f"vring {self.index}: descriptor loop from head {head}")

    def take(self, n: int = 1) -> None:
        self.last_avail = (self.last_avail + n) & 0xFFFF

    def push_used(self, mem: Memory, head: int, length: int) -> None:
        """Write one used element and publish it (element first, then the index)."""
        slot = self.used_idx % self.num
        struct.pack_into("<II", mem.uva(self.used + 4 + 8 * slot, 8), 0, head, length)
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        struct.pack_into("<H", mem.uva(self.used + 2, 2), 0, self.used_idx)

    def sync_used_idx(self, mem: Memory) -> None:
        """Take the used index from the ring (the driver may have reset it)."""
        self.used_idx = self._u16(mem, self.used + 2)

    def wants_interrupt(self, mem: Memory) -> bool:
        return not self.avail_flags(mem) & VRING_AVAIL_F_NO_INTERRUPT


# ------------------------------------------------------------------ scenarios

RX_SCENARIOS = {
    # used.len larger than the buffer the driver posted
    "rx_used_len_overflow",
    # num_buffers larger than the rx ring (one buffer actually used)
    "rx_num_buffers_beyond_ring",
    # a frame over 64 KiB spread over as many buffers as it needs, num_buffers honest
    "rx_num_buffers_over_64k",
    # a used element whose id is not a descriptor of the ring, before the frame
    "rx_used_id_out_of_range",
    # the frame's buffer completed twice
    "rx_used_id_repeated",
    # gso_type/gso_size/hdr_len that do not fit the frame (variants in turn, GSO_VARIANTS)
    "rx_gso_inconsistent",
    # NEEDS_CSUM with csum_start/csum_offset past the end of the frame (CSUM_VARIANTS)
    "rx_csum_past_end",
    # hash_report above VIRTIO_NET_HASH_REPORT_UDPv6_EX (needs HASH_REPORT negotiated)
    "rx_hash_report_out_of_range",
    # the frame copied into every rx buffer the driver has posted, one interrupt for all
    "rx_burst_fill",
}
HELD_SCENARIOS = {
    # the tx avail ring is not consumed: no completions (until the tx ring is stopped by a
    # device/queue reset, or hold_s passes)
    "tx_stuck",
    # no call eventfd is signalled (rings still processed) until a ring is stopped or
    # hold_s passes; then every ring is signalled once
    "irq_stuck",
}
SCENARIOS = RX_SCENARIOS | HELD_SCENARIOS

# (gso_type, gso_size, hdr_len delta over the frame, needs_csum)
GSO_VARIANTS: tuple[tuple[int, int, int, bool], ...] = (
    (GSO_TCPV4, 0, 0, True),  # GSO without a segment size
    (2, 1448, 0, False),  # a gso_type the spec does not define
    # TCPv6 GSO on an IPv4 UDP frame, hdr_len past its end; gso_size small enough that
    # the kernel's virtio_net_hdr_to_skb makes it a (DODGY) GSO skb
    (GSO_TCPV6, 8, 100, True),
)
# (csum_start delta from the frame's end, csum_offset)
CSUM_VARIANTS: tuple[tuple[int, int], ...] = (
    (10, 6),  # csum_start past the end
    (-4, 16),  # start inside, start + offset + 2 past the end
)


@dataclass
class Armed:
    name: str
    count: int
    udp_port: int | None = None
    hold_s: float = 30.0
    done: int = 0
    since: float = 0.0

    def matches(self, frame: bytes) -> bool:
        """Whether a frame (no virtio header) is one this scenario may spoil."""
        if self.udp_port is None:
            return True
        return udp_dport(frame) == self.udp_port


def udp_dport(frame: bytes) -> int | None:
    """The UDP destination port of an untagged IPv4/IPv6 Ethernet frame, else None."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34 and frame[23] == 17:
        ihl = (frame[14] & 0xF) * 4
        off = 14 + ihl
    elif ethertype == 0x86DD and len(frame) >= 54 and frame[20] == 17:
        off = 54
    else:
        return None
    if len(frame) < off + 4:
        return None
    return int.from_bytes(frame[off + 2:off + 4], "big")


# ------------------------------------------------------------------ the device


@dataclass
class Counters:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_no_buffer_drops: int = 0
    rx_too_big_drops: int = 0
    tx_errors: int = 0
    signals: int = 0
    signals_suppressed: int = 0
    vring_starts: int = 0
    vring_stops: int = 0
    ring_errors: int = 0
    held_cleared_by_reset: int = 0
    held_cleared_by_timeout: int = 0
    injected: dict[str, int] = field(default_factory=dict)


@dataclass
class NetDevice:
    """The data path: rings, the frames between them and the tap, and the armed fault.

    I/O goes through callables (tap_write, notify), so unit tests drive it with a
    FlatMemory and lists."""

    mem: Memory
    tap_write: Callable[[bytes], None]
    notify: Callable[[int], None]  # signal vring n's call eventfd
    features: int = 0
    rings: dict[int, Vring] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    armed: Armed | None = None
    pending: deque[tuple[bytes, str | None]] = field(default_factory=deque)
    max_pending: int = 512
    clock: Callable[[], float] = time.monotonic
    # held-scenario state
    tx_stuck: bool = False
    irq_stuck: bool = False
    held_since: float = 0.0
    hold_s: float = 0.0
    variant_seq: int = 0
    batch: int = 0
    batch_deadline: float = 0.0

    # ---------------------------------------------------------------- setup

    def ring(self, index: int) -> Vring:
        if index not in self.rings:
            self.rings[index] = Vring(index)
        return self.rings[index]

    @property
    def hdr_len(self) -> int:
        return HDR_HASH_LEN if self.features >> F_HASH_REPORT & 1 else HDR_LEN

    @property
    def mergeable(self) -> bool:
        return bool(self.features >> F_MRG_RXBUF & 1)

    def rx_ring(self) -> Vring | None:
        """The rx ring frames from the tap go to: pair 0's, else the first ready one."""
        ready = [r for i, r in sorted(self.rings.items()) if i % 2 == 0 and r.ready]
        return ready[0] if ready else None

    # ---------------------------------------------------------------- control

    def arm(self, name: str, count: int = 1, udp_port: int | None = None,
            hold_s: float = 30.0, batch: int = 0) -> None:
        """Spoil the next `count` frames (to `udp_port` if given) the named way, or hold a
        fault for up to hold_s. batch > 0: rx delivery waits until that many frames are
        queued (or 5 s), so a bad frame and the good ones after it reach the ring together."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}")
        if name == "rx_hash_report_out_of_range" and self.hdr_len != HDR_HASH_LEN:
            raise ValueError("rx_hash_report_out_of_range needs VIRTIO_NET_F_HASH_REPORT, "
                             "which the driver did not negotiate")
        if count < 1:
            raise ValueError("count must be >= 1")
        self.armed = Armed(name, count, udp_port, hold_s, since=self.clock())
        self.variant_seq = 0
        self.batch = batch
        self.batch_deadline = self.clock() + 5.0
        if name in HELD_SCENARIOS:
            self.hold_s = hold_s
            self.held_since = self.clock()
            self.tx_stuck = name == "tx_stuck"
            self.irq_stuck = name == "irq_stuck"
            self._count(name)
            self.armed = None

    def disarm(self) -> None:
        self.armed = None
        self.batch = 0
        self._release_held()

    def _count(self, name: str, n: int = 1) -> None:
        self.counters.injected[name] = self.counters.injected.get(name, 0) + n

    def _release_held(self) -> None:
        was_irq = self.irq_stuck
        self.tx_stuck = self.irq_stuck = False
        if was_irq:
            for r in self.rings.values():
                if r.ready:
                    self._signal(r, force=True)
        for r in list(self.rings.values()):
            if r.index % 2 == 1:
                self.process_tx(r)

    def tick(self) -> None:
        """Release a held scenario whose hold time has passed; deliver a batch whose wait
        is over."""
        if self.batch and self.clock() >= self.batch_deadline:
            self.flush_rx()
        if (self.tx_stuck or self.irq_stuck) and self.clock() - self.held_since >= self.hold_s:
            self.counters.held_cleared_by_timeout += 1
            self._release_held()

    def ring_stopped(self, ring: Vring) -> None:
        """GET_VRING_BASE: the driver (through QEMU) stopped a ring, as a reset does."""
        ring.started = False
        self.counters.vring_stops += 1
        if (self.tx_stuck and ring.index % 2 == 1) or self.irq_stuck:
            self.counters.held_cleared_by_reset += 1
            self.tx_stuck = self.irq_stuck = False

    # ---------------------------------------------------------------- notifications

    def _signal(self, ring: Vring, force: bool = False) -> None:
        if self.irq_stuck and not force:
            self.counters.signals_suppressed += 1
            return
        if force or ring.wants_interrupt(self.mem):
            self.counters.signals += 1
            self.notify(ring.index)

    # ---------------------------------------------------------------- tx

    def process_tx(self, ring: Vring) -> int:
        """Send every available tx chain to the tap; returns chains completed."""
        if not ring.ready or self.tx_stuck:
            return 0
        done = 0
        while ring.pending(self.mem):
            try:
                chain = ring.chain_at(self.mem, 0)
                data = b"".join(bytes(self.mem.gpa(a, n)) for a, n, w in chain.segs if not w)
            except (RingError, MemoryError_):
                self.counters.ring_errors += 1
                raise
            ring.take()
            hl = self.hdr_len
            if len(data) >= hl:
                frame = data[:HDR_LEN - 2] + b"\0\0" + data[hl:]
                try:
                    self.tap_write(frame)
                    self.counters.tx_frames += 1
                    self.counters.tx_bytes += len(data) - hl
                except OSError:
                    self.counters.tx_errors += 1
            else:
                self.counters.tx_errors += 1
            ring.push_used(self.mem, chain.head, 0)
            done += 1
        if done:
            self._signal(ring)
        return done

    # ---------------------------------------------------------------- rx

    def receive(self, tap_frame: bytes) -> None:
        """A frame from the tap (HDR_LEN-byte header first): queue it, maybe spoiled, and
        deliver what the rx ring has room for."""
        fault = None
        a = self.armed
        if a is not None and a.name in RX_SCENARIOS and a.matches(tap_frame[HDR_LEN:]):
            fault = a.name
            a.done += 1
            if a.done >= a.count:
                self.armed = None
        if len(self.pending) >= self.max_pending:
            self.counters.rx_no_buffer_drops += 1
            return
        self.pending.append((tap_frame, fault))

    def flush_rx(self) -> int:
        """Deliver pending frames while the rx ring has room; one interrupt at the end."""
        ring = self.rx_ring()
        if ring is None:
            return 0
        if self.batch:
            if len(self.pending) < self.batch and self.clock() < self.batch_deadline:
                return 0
            self.batch = 0
        n = 0
        while self.pending:
            frame, fault = self.pending[0]
            if not self._deliver(ring, frame, fault):
                break
            self.pending.popleft()
            n += 1
        if n:
            self._signal(ring)
        return n

    def _guest_hdr(self, tap_hdr: bytes) -> NetHdr:
        return NetHdr.unpack(tap_hdr[:HDR_LEN])

    def _deliver(self, ring: Vring, tap_frame: bytes, fault: str | None) -> bool:
        """Write one frame into the rx ring. False: not enough buffers yet (try again)."""
        hdr = self._guest_hdr(tap_frame)
        frame = tap_frame[HDR_LEN:]
        if fault == "rx_burst_fill":
            return self._burst(ring, hdr, frame)
        if fault == "rx_num_buffers_over_64k":
            frame = frame + bytes(max(0, 65536 + 1600 - len(frame)))
        elif fault == "rx_gso_inconsistent":
            self._spoil_gso(hdr, len(frame))
        elif fault == "rx_csum_past_end":
            self._spoil_csum(hdr, len(frame))
        elif fault == "rx_hash_report_out_of_range":
            hdr.hash_value = 0x12345678
            hdr.hash_report = 0xFFFF
        chains = self._chains_for(ring, self.hdr_len + len(frame))
        if chains is None:
            return False
        if not chains:  # does not fit what this ring's buffers can hold
            self.counters.rx_too_big_drops += 1
            return True
        hdr.num_buffers = len(chains)
        if fault == "rx_num_buffers_beyond_ring":
            hdr.num_buffers = ring.num + 1
        if fault == "rx_used_id_out_of_range":
            ring.push_used(self.mem, ring.num + 7, 64)
        lens = self._write(chains, hdr.pack(self.hdr_len) + frame)
        if fault == "rx_used_len_overflow":
            lens[0] = chains[0].writable + 4096
        ring.take(len(chains))
        for c, ln in zip(chains, lens, strict=True):
            ring.push_used(self.mem, c.head, ln)
        if fault == "rx_used_id_repeated":
            ring.push_used(self.mem, chains[-1].head, lens[-1])
        if fault is not None:
            self._count(fault)
        self.counters.rx_frames += 1
        self.counters.rx_bytes += len(frame)
        return True

    def _burst(self, ring: Vring, hdr: NetHdr, frame: bytes) -> bool:
        """Copy the frame into every posted rx buffer (each a one-buffer packet)."""
        hdr.num_buffers = 1
        data = hdr.pack(self.hdr_len) + frame
        n = 0
        while ring.pending(self.mem):
            c = ring.chain_at(self.mem, 0)
            if c.writable < len(data):
                break
            lens = self._write([c], data)
            ring.take()
            ring.push_used(self.mem, c.head, lens[0])
            n += 1
        if n == 0:
            return False
        self._count("rx_burst_fill", n)
        self.counters.rx_frames += n
        self.counters.rx_bytes += n * len(frame)
        return True

    def _spoil_gso(self, hdr: NetHdr, frame_len: int) -> None:
        gso_type, gso_size, hdr_delta, csum = GSO_VARIANTS[self._variant() % len(GSO_VARIANTS)]
        hdr.gso_type, hdr.gso_size = gso_type, gso_size
        hdr.hdr_len = min(0xFFFF, frame_len + hdr_delta) if hdr_delta else 54
        if csum:
            hdr.flags = HDR_F_NEEDS_CSUM
            hdr.csum_start, hdr.csum_offset = 34, 16

    def _spoil_csum(self, hdr: NetHdr, frame_len: int) -> None:
        delta, off = CSUM_VARIANTS[self._variant() % len(CSUM_VARIANTS)]
        hdr.flags = HDR_F_NEEDS_CSUM
        hdr.csum_start, hdr.csum_offset = max(0, frame_len + delta), off
        hdr.gso_type = GSO_NONE

    def _variant(self) -> int:
        """Variants in turn, one per spoiled frame (reset when a scenario is armed)."""
        self.variant_seq += 1
        return self.variant_seq - 1

    def _chains_for(self, ring: Vring, size: int) -> list[Chain] | None:
        """The chains a packet of `size` bytes takes: None if the ring has too few now,
        [] if it can never fit (a ring without mergeable buffers and a short chain)."""
        avail = ring.pending(self.mem)
        if not self.mergeable:
            if not avail:
                return None
            c = ring.chain_at(self.mem, 0)
            return [c] if c.writable >= size else []
        chains: list[Chain] = []
        room = 0
        for n in range(min(avail, ring.num)):
            c = ring.chain_at(self.mem, n)
            chains.append(c)
            room += c.writable
            if room >= size:
                return chains
        return None if room < size and avail < ring.num else []

    def _write(self, chains: list[Chain], data: bytes) -> list[int]:
        """Scatter data over the chains' writable segments; bytes written per chain."""
        pos = 0
        lens = []
        for c in chains:
            start = pos
            for addr, n, w in c.segs:
                if not w or pos >= len(data):
                    continue
                k = min(n, len(data) - pos)
                self.mem.gpa(addr, k)[:] = data[pos:pos + k]
                pos += k
            lens.append(pos - start)
        return lens

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            **{k: v for k, v in vars(c).items() if k != "injected"},
            "injected": dict(c.injected),
            "features": self.features,
            "hdr_len": self.hdr_len,
            "armed": None if self.armed is None else {
                "name": self.armed.name, "count": self.armed.count, "done": self.armed.done},
            "tx_stuck": self.tx_stuck,
            "irq_stuck": self.irq_stuck,
            "pending": len(self.pending),
            "rings": {i: {"num": r.num, "ready": r.ready, "last_avail": r.last_avail,
                          "used_idx": r.used_idx} for i, r in self.rings.items()},
        }


# ------------------------------------------------------------------ the server


@dataclass
class Server:
    """The back-end process: vhost-user socket, control socket, tap, event loop."""

    socket_path: Path
    control_path: Path
    tap_name: str
    queues: int = 1
    offer_hash: bool = False
    tap_fd: int = -1
    listener: socket.socket | None = None
    conn: socket.socket | None = None
    ctl_listener: socket.socket | None = None
    ctl_conns: list[socket.socket] = field(default_factory=list)
    ctl_bufs: dict[int, bytes] = field(default_factory=dict)
    dev: NetDevice = field(init=False)
    mem: GuestMemory = field(default_factory=GuestMemory)
    protocol_features: int = 0
    running: bool = True
    verbose: bool = False

    def __post_init__(self) -> None:
        self.dev = NetDevice(self.mem, self._tap_write, self._notify)

    # ---------------------------------------------------------------- I/O callbacks

    def _tap_write(self, frame: bytes) -> None:
        os.write(self.tap_fd, frame)

    def _notify(self, index: int) -> None:
        fd = self.dev.ring(index).call
        if fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.write(fd, (1).to_bytes(8, "little"))

    # ---------------------------------------------------------------- features

    def device_features(self) -> int:
        f = DATA_FEATURES | QEMU_FEATURES | (1 << F_PROTOCOL_FEATURES)
        if self.queues > 1:
            f |= 1 << F_MQ
        if self.offer_hash:
            f |= 1 << F_HASH_REPORT
        return f

    # ---------------------------------------------------------------- messages

    def handle(self, req: int, flags: int, payload: bytes, fds: list[int]) -> bytes | None:
        """One front-end message -> the reply payload (None: no reply of its own)."""
        dev = self.dev
        if req == GET_FEATURES:
            return struct.pack("<Q", self.device_features())
        if req == SET_FEATURES:
            (dev.features,) = struct.unpack_from("<Q", payload)
            fcntl.ioctl(self.tap_fd, TUNSETOFFLOAD, tap_offloads(dev.features))
            return None
        if req == GET_PROTOCOL_FEATURES:
            pf = 1 << PROTO_F_REPLY_ACK
            if self.queues > 1:
                pf |= 1 << PROTO_F_MQ
            return struct.pack("<Q", pf)
        if req == SET_PROTOCOL_FEATURES:
            (self.protocol_features,) = struct.unpack_from("<Q", payload)
            return None
        if req == GET_QUEUE_NUM:
            return struct.pack("<Q", self.queues)
        if req in (SET_OWNER, SET_LOG_BASE, SET_LOG_FD):
            return None
        if req == RESET_OWNER:
            for r in dev.rings.values():
                r.started = False
            return None
        if req == SET_MEM_TABLE:
            self._set_mem_table(payload, fds)
            fds.clear()
            return None
        if req in (SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE):
            index, num = struct.unpack_from("<II", payload)
            ring = dev.ring(index)
            if req == SET_VRING_NUM:
                ring.num = num
            elif req == SET_VRING_BASE:
                ring.last_avail = num
            elif req == SET_VRING_ENABLE:
                ring.enabled = bool(num)
                self._kick(ring)
            else:
                dev.ring_stopped(ring)
                return struct.pack("<II", index, ring.last_avail)
            return None
        if req == SET_VRING_ADDR:
            index, _flags, desc, used, avail, _log = struct.unpack_from("<IIQQQQ", payload)
            ring = dev.ring(index)
            ring.desc, ring.used, ring.avail = desc, used, avail
            ring.sync_used_idx(self.mem)
            return None
        if req in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            (u,) = struct.unpack_from("<Q", payload)
            ring = dev.ring(u & VRING_IDX_MASK)
            fd = -1 if u & VRING_NOFD or not fds else fds.pop(0)
            attr = {SET_VRING_KICK: "kick", SET_VRING_CALL: "call", SET_VRING_ERR: "err"}[req]
            old = getattr(ring, attr)
            if old >= 0:
                os.close(old)
            if fd >= 0:
                os.set_blocking(fd, False)
            setattr(ring, attr, fd)
            if req == SET_VRING_KICK:
                ring.started = True
                if not self.protocol_features_on:
                    ring.enabled = True
                dev.counters.vring_starts += 1
                self._kick(ring)
            return None
        log(f"unhandled vhost-user request {req}")
        return None

    @property
    def protocol_features_on(self) -> bool:
        return bool(self.dev.features >> F_PROTOCOL_FEATURES & 1)

    def _set_mem_table(self, payload: bytes, fds: list[int]) -> None:
        (nregions,) = struct.unpack_from("<I", payload)
        mem = GuestMemory()
        for i in range(nregions):
            gpa, size, uva, off = struct.unpack_from("<QQQQ", payload, 8 + 32 * i)
            mem.add(fds[i], gpa, size, uva, off)
        for fd in fds:
            os.close(fd)
        # keep the old maps alive (views into them may remain), use the new table
        self.mem._maps.extend(mem._maps)
        self.mem.regions = mem.regions

    def _kick(self, ring: Vring) -> None:
        if not ring.ready:
            return
        try:
            if ring.index % 2 == 1:
                self.dev.process_tx(ring)
            else:
                self.dev.flush_rx()
        except (RingError, MemoryError_) as err:
            log(f"ring {ring.index}: {err}")

    # ---------------------------------------------------------------- socket plumbing

    def _recv_msg(self, sock: socket.socket) -> tuple[int, int, bytes, list[int]] | None:
        fds = array.array("i")
        msg, anc, _flags, _addr = sock.recvmsg(HEADER.size, socket.CMSG_LEN(8 * fds.itemsize))
        if not msg:
            return None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        while len(msg) < HEADER.size:
            more = sock.recv(HEADER.size - len(msg))
            if not more:
                return None
            msg += more
        req, flags, size = HEADER.unpack(msg)
        payload = b""
        while len(payload) < size:
            more = sock.recv(size - len(payload))
            if not more:
                return None
            payload += more
        return req, flags, payload, list(fds)

    def _on_vhost(self) -> None:
        assert self.conn is not None
        got = self._recv_msg(self.conn)
        if got is None:
            log("front-end disconnected")
            self._drop_conn()
            return
        req, flags, payload, fds = got
        if self.verbose:
            log(f"<- {MSG_NAMES.get(req, req)} flags={flags:#x} {payload.hex()} fds={fds}")
        reply = self.handle(req, flags, payload, fds)
        for fd in fds:  # fds a message carried that its handler did not take
            os.close(fd)
        if reply is None and flags & FLAG_NEED_REPLY and self.protocol_features >> PROTO_F_REPLY_ACK & 1:
            reply = struct.pack("<Q", 0)
        if reply is not None:
            self.conn.sendall(HEADER.pack(req, FLAG_VERSION | FLAG_REPLY, len(reply)) + reply)

    def _drop_conn(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for r in self.dev.rings.values():
            for attr in ("kick", "call", "err"):
                fd = getattr(r, attr)
                if fd >= 0:
                    os.close(fd)
                setattr(r, attr, -1)
            r.started = False
        self.dev.rings.clear()
        self.dev.pending.clear()

    def _on_control(self, sock: socket.socket) -> None:
        data = sock.recv(65536)
        if not data:
            self.ctl_conns.remove(sock)
            self.ctl_bufs.pop(sock.fileno(), None)
            sock.close()
            return
        buf = self.ctl_bufs.get(sock.fileno(), b"") + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                resp = self.control(json.loads(line))
            except (ValueError, KeyError, TypeError) as err:
                resp = {"ok": False, "error": str(err)}
            sock.sendall(json.dumps(resp).encode() + b"\n")
        self.ctl_bufs[sock.fileno()] = buf

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        if op == "ping":
            return {"ok": True, "connected": self.conn is not None}
        if op == "arm":
            self.dev.arm(str(req["scenario"]), int(req.get("count", 1)),
                         req.get("udp_port"), float(req.get("hold_s", 30.0)),
                         int(req.get("batch", 0)))
            return {"ok": True}
        if op == "disarm":
            self.dev.disarm()
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "stats": self.dev.stats()}
        if op == "stop":
            self.running = False
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")

    def _read_tap(self) -> None:
        for _ in range(64):
            try:
                frame = os.read(self.tap_fd, HDR_LEN + MAX_FRAME)
            except BlockingIOError:
                break
            self.dev.receive(frame)
        try:
            self.dev.flush_rx()
        except (RingError, MemoryError_) as err:
            log(f"rx: {err}")

    def serve(self) -> None:
        self.tap_fd = open_tap(self.tap_name)
        self.listener = _listen(self.socket_path)
        self.ctl_listener = _listen(self.control_path)
        log(f"listening on {self.socket_path}, control {self.control_path}, tap {self.tap_name}")
        while self.running:
            self._loop_once()

    def _loop_once(self) -> None:
        assert self.listener is not None and self.ctl_listener is not None
        rd: list[Any] = [self.ctl_listener, *self.ctl_conns]
        rd.append(self.conn if self.conn is not None else self.listener)
        kicks = {r.kick: r for r in self.dev.rings.values() if r.kick >= 0}
        rd.extend(kicks)
        rx = self.dev.rx_ring()
        if rx is not None and (len(self.dev.pending) < 64 or self.dev.batch):
            rd.append(self.tap_fd)
        ready, _, _ = select.select(rd, [], [], 0.1)
        for obj in ready:
            if obj is self.listener:
                self.conn, _ = self.listener.accept()
                log("front-end connected")
            elif obj is self.ctl_listener:
                c, _ = self.ctl_listener.accept()
                self.ctl_conns.append(c)
            elif obj is self.conn:
                self._on_vhost()
            elif isinstance(obj, socket.socket):
                self._on_control(obj)
            elif obj == self.tap_fd:
                self._read_tap()
            elif obj in kicks:
                ring = kicks[obj]
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(obj, 8)
                self._kick(ring)
        self.dev.tick()


def _listen(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(4)
    return s


def log(msg: str) -> None:
    print(f"vhost-user[{os.getpid()}] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr,
          flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", type=Path, required=True, help="vhost-user socket to listen on")
    ap.add_argument("--control", type=Path, required=True, help="control socket to listen on")
    ap.add_argument("--tap", required=True, help="existing tap (in this netns) to forward to")
    ap.add_argument("--queues", type=int, default=1)
    ap.add_argument("--hash-report", action="store_true", help="offer VIRTIO_NET_F_HASH_REPORT")
    ap.add_argument("--verbose", action="store_true", help="log every vhost-user message")
    args = ap.parse_args(argv)
    srv = Server(args.socket, args.control, args.tap, args.queues, args.hash_report,
                 verbose=args.verbose)
    signal.signal(signal.SIGTERM, lambda *_: setattr(srv, "running", False))
    try:
        srv.serve()
    finally:
        for p in (args.socket, args.control):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return 0


# ------------------------------------------------------------------ the harness's side


class BackendError(RuntimeError):
    """The back-end refused a control request or is not running."""


@dataclass
class Backend:
    """The back-end process seen from the harness: started in a netns, stopped by PID."""

    netns: str
    socket_path: Path
    control_path: Path
    tap: str
    log_path: Path
    queues: int = 1
    hash_report: bool = False
    proc: subprocess.Popen[bytes] | None = None
    _ctl: socket.socket | None = None
    _buf: bytes = b""

    def start(self, timeout: float = 20) -> Backend:
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "pvnet_harness.vhost_user",
                "--socket", str(self.socket_path), "--control", str(self.control_path),
                "--tap", self.tap, "--queues", str(self.queues)]
        if self.hash_report:
            argv.append("--hash-report")
        if os.environ.get("PVNET_VHOST_VERBOSE"):
            argv.append("--verbose")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BackendError(f"vhost-user back-end exited {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.socket_path.exists() and self.control_path.exists():
                try:
                    self.request("ping")
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise BackendError(f"vhost-user back-end did not listen: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        if self._ctl is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(str(self.control_path))
            self._ctl = s
        self._ctl.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        while b"\n" not in self._buf:
            more = self._ctl.recv(65536)
            if not more:
                self._close_ctl()
                raise BackendError("control connection closed")
            self._buf += more
        line, self._buf = self._buf.split(b"\n", 1)
        resp: dict[str, Any] = json.loads(line)
        if not resp.get("ok"):
            raise BackendError(f"{op} {args}: {resp.get('error')}")
        return resp

    def arm(self, scenario: str, count: int = 1, udp_port: int | None = None,
            hold_s: float = 30.0, batch: int = 0) -> None:
        self.request("arm", scenario=scenario, count=count, udp_port=udp_port, hold_s=hold_s,
                     batch=batch)

    def disarm(self) -> None:
        self.request("disarm")

    def stats(self) -> dict[str, Any]:
        return dict(self.request("stats")["stats"])

    def _close_ctl(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
            self._buf = b""

    def stop(self) -> None:
        self._close_ctl()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # `ip netns exec` execs the interpreter: proc.pid is the back-end itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for p in (self.socket_path, self.control_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def backend(netns: str, workdir: Path, tap: str, **kw: Any) -> Iterator[Backend]:
    b = Backend(netns, workdir / f"vhost-{tap}.sock", workdir / f"vhost-{tap}.ctl", tap,
                workdir / f"vhost-{tap}.log", **kw)
    with b:
        yield b


if __name__ == "__main__":
    sys.exit(main())
