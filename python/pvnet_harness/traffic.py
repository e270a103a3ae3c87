"""Host-side traffic: TCP byte-exact transfers, scapy builders and checksum checkers.

All sockets are opened inside the harness netns (NetLab.entered()) and only ever address
198.18.0.0/15 or 2001:db8::/64.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from .netlab import NetLab, check_test_address

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
VNET_HDR_LEN = 10  # struct virtio_net_hdr as AF_PACKET hands it out
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
# virtio_net_hdr gso_type values (VIRTIO 1.2, 5.1.6)
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80


def make_payload(path: Path, size: int, seed: bytes = b"pvnet") -> str:
    """Write `size` pseudo-random bytes (sha256 counter stream) and return their sha256."""
    h = hashlib.sha256()
    block = b""
    with path.open("wb") as f:
        written, n = 0, 0
        while written < size:
            block = hashlib.sha256(seed + n.to_bytes(8, "little")).digest() * 2048  # 64 KiB
            chunk = block[: size - written]
            f.write(chunk)
            h.update(chunk)
            written += len(chunk)
            n += 1
    return h.hexdigest()


@dataclass
class TcpSink:
    """A one-shot TCP server in the netns that hashes what it receives."""

    lab: NetLab
    addr: str
    port: int
    sha256: str | None = None
    nbytes: int = 0
    error: BaseException | None = None
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    def start(self) -> TcpSink:
        check_test_address(self.addr)
        fam = socket.AF_INET6 if ":" in self.addr else socket.AF_INET
        with self.lab.entered():
            s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.addr, self.port))
        s.listen(1)
        self._sock = s
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
            h = hashlib.sha256()
            with conn:
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    h.update(data)
                    self.nbytes += len(data)
            self.sha256 = h.hexdigest()
        except BaseException as err:  # reported by wait()
            self.error = err

    def wait(self, timeout: float) -> str:
        assert self._thread is not None and self._sock is not None
        self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise TimeoutError(f"TCP sink {self.addr}:{self.port} got {self.nbytes} bytes in {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.sha256 is not None
        return self.sha256


def tcp_send_file(lab: NetLab, addr: str, port: int, path: Path, timeout: float = 300) -> int:
    """Connect (retrying while the guest's listener comes up) and send a file; returns bytes."""
    check_test_address(addr)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    deadline = time.monotonic() + 30
    while True:
        with lab.entered():
            s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            break
        except (ConnectionRefusedError, TimeoutError, OSError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with s, path.open("rb") as f:
        sent = s.sendfile(f)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # wait for the peer's close: all bytes were read
    return sent


def udp_flood_frames(
    src_mac: str, dst_mac: str, src: str, dst: str, count: int, dport: int = 9, size: int = 64
) -> list[Packet]:
    """`count` distinct UDP frames (sequence number in the payload)."""
    check_test_address(dst)
    frames: list[Packet] = []
    base = Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=64)
    for i in range(count):
        payload = struct.pack("!I", i).ljust(size, b"\x00")
        frames.append(base / UDP(sport=40000 + (i % 1000), dport=dport) / Raw(payload))
    return frames


def _packet_socket(lab: NetLab, iface: str) -> socket.socket:
    """A raw AF_PACKET socket bound to an interface of the netns (opened inside it)."""
    with lab.entered():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((iface, 0))
    return s


def send_frames(lab: NetLab, iface: str, frames: list[Packet]) -> int:
    """Send frames out of a host-side interface of the netns; returns how many were sent."""
    raw = [bytes(f) for f in frames]
    with _packet_socket(lab, iface) as s:
        for frame in raw:
            s.send(frame)
    return len(raw)


def l2_exchange(
    lab: NetLab, iface: str, frame: Packet, want: Callable[[Packet], bool], timeout: float = 5
) -> Packet | None:
    """Send one frame and return the first received frame for which want() is true."""
    with _packet_socket(lab, iface) as s:
        s.settimeout(0.2)
        s.send(bytes(frame))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            pkt = Ether(data)
            if want(pkt):
                return pkt
    return None


# ---------------------------------------------------------------- checksums


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return _fold(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def complete_partial_csum(frame: bytes, csum_start: int, csum_offset: int) -> bytes:
    """Finish a CHECKSUM_PARTIAL frame the way a virtio device must (spec 5.1.6.2).

    The stack left the pseudo-header sum at csum_start + csum_offset; the device sums
    everything from csum_start to the end and stores the complement there.
    """
    pos = csum_start + csum_offset
    if csum_start >= len(frame) or pos + 2 > len(frame):
        raise ValueError(f"csum_start {csum_start}/offset {csum_offset} outside a {len(frame)}-byte frame")
    csum = (~ones_sum(frame[csum_start:])) & 0xFFFF
    if csum == 0 and csum_offset == 6:
        csum = 0xFFFF  # UDP (checksum at offset 6) transmits a zero sum as 0xffff
    return frame[:pos] + struct.pack("!H", csum) + frame[pos + 2 :]


def _csum_field(layer: Packet) -> str | None:
    for name in ("chksum", "cksum"):
        if any(f.name == name for f in layer.fields_desc):
            return name
    return None


def checksum_problems(frame: bytes) -> list[str]:
    """Checksums of an Ethernet frame (IPv4 header, TCP, UDP, ICMP, ICMPv6) that differ
    from what scapy recomputes over the same bytes."""
    pkt = Ether(frame)
    problems: list[str] = []
    layer: Packet | None = pkt.payload
    depth = 0
    while isinstance(layer, Packet) and not isinstance(layer, Raw) and layer.name != "NoPayload":
        if layer.name == "IPv6 Extension Header - Fragmentation header":
            break  # an L4 checksum covers the whole datagram, not one fragment
        fld = _csum_field(layer)
        if fld is not None and layer.getfieldval(fld) is not None:
            got = layer.getfieldval(fld)
            legal_zero = isinstance(layer, UDP) and IP in pkt and got == 0
            clone = pkt.copy()
            target = clone.getlayer(depth + 1)
            assert target is not None
            target.setfieldval(fld, None)
            rebuilt = Ether(bytes(clone)).getlayer(depth + 1)
            assert rebuilt is not None
            want = rebuilt.getfieldval(fld)
            if got != want and not legal_zero:
                problems.append(f"{layer.name} checksum {got:#06x} != {want:#06x}: {pkt.summary()}")
        if isinstance(layer, IP) and (layer.flags.MF or layer.frag):
            break
        layer = layer.payload
        depth += 1
    return problems


def ipv4_header_csum(header: bytes) -> int:
    """The checksum an IPv4 header (with its checksum field zeroed) must carry."""
    return (~ones_sum(header[:10] + b"\0\0" + header[12:])) & 0xFFFF


def l3_offset(frame: bytes) -> int:
    """Offset of the network header of an Ethernet frame (after any VLAN tags)."""
    l3 = 14
    while struct.unpack("!H", frame[l3 - 2 : l3])[0] in (0x8100, 0x88A8):
        l3 += 4
    return l3


@dataclass(frozen=True)
class GsoLayout:
    """Where the headers of a GSO frame are: network header, transport header, payload."""

    l3: int
    l4: int
    payload: int
    ipv4: bool
    tcp: bool


def gso_layout(frame: bytes, gso_type: int, csum_start: int) -> GsoLayout:
    """Header offsets of a GSO frame; the transport header starts at csum_start (NEEDS_CSUM)."""
    base = gso_type & ~GSO_ECN
    if base not in (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4):
        raise ValueError(f"gso_type {gso_type:#x}: not a TCP/USO type this helper segments")
    l3 = l3_offset(frame)
    version = frame[l3] >> 4
    if version != (6 if base == GSO_TCPV6 else 4 if base == GSO_TCPV4 else version):
        raise ValueError(f"gso_type {gso_type:#x} on an IPv{version} packet")
    tcp = base != GSO_UDP_L4
    l4 = csum_start
    thl = (frame[l4 + 12] >> 4) * 4 if tcp else 8
    if l4 <= l3 or l4 + thl > len(frame):
        raise ValueError(f"csum_start {csum_start} does not point at a transport header")
    return GsoLayout(l3, l4, l4 + thl, version == 4, tcp)


def segment_gso(frame: bytes, gso_type: int, gso_size: int, csum_start: int,
                csum_offset: int) -> list[bytes]:
    """Segment a GSO frame the way a virtio device must (VIRTIO 1.2, 5.1.6.2) and return the
    wire frames: headers replicated, payload cut into gso_size pieces, IPv4 id incremented
    and header checksum recomputed, IP lengths fixed, TCP seq advanced, FIN/PSH kept on the
    last segment only and CWR on the first only (UDP: the UDP length fixed).

    The L4 checksum is completed from the partial sum the driver left (the pseudo-header
    over the whole frame's L4 length, as Linux writes it): the length is swapped for the
    segment's, then the sum is finished as for any NEEDS_CSUM frame. A wrong seed from the
    driver therefore gives segments with bad checksums.
    """
    if gso_size <= 0:
        raise ValueError("gso_size must be positive")
    lay = gso_layout(frame, gso_type, csum_start)
    hdr, payload = frame[: lay.payload], frame[lay.payload :]
    pos = csum_start + csum_offset
    seed = struct.unpack("!H", frame[pos : pos + 2])[0]
    old_l4len = len(frame) - lay.l4
    chunks = [payload[i : i + gso_size] for i in range(0, len(payload), gso_size)] or [b""]
    out: list[bytes] = []
    for i, chunk in enumerate(chunks):
        seg = bytearray(hdr + chunk)
        l4len = len(seg) - lay.l4
        if lay.ipv4:
            ihl = (seg[lay.l3] & 0xF) * 4
            ip_id = (struct.unpack("!H", seg[lay.l3 + 4 : lay.l3 + 6])[0] + i) & 0xFFFF
            struct.pack_into("!HH", seg, lay.l3 + 2, len(seg) - lay.l3, ip_id)
            struct.pack_into("!H", seg, lay.l3 + 10, 0)
            struct.pack_into("!H", seg, lay.l3 + 10, ipv4_header_csum(bytes(seg[lay.l3 : lay.l3 + ihl])))
        else:
            struct.pack_into("!H", seg, lay.l3 + 4, len(seg) - lay.l3 - 40)
        if lay.tcp:
            seq = (struct.unpack("!I", seg[lay.l4 + 4 : lay.l4 + 8])[0] + i * gso_size) & 0xFFFFFFFF
            struct.pack_into("!I", seg, lay.l4 + 4, seq)
            if i != len(chunks) - 1:
                seg[lay.l4 + 13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
            if i != 0:
                seg[lay.l4 + 13] &= ~TCP_CWR & 0xFF
        else:
            struct.pack_into("!H", seg, lay.l4 + 4, l4len)
        # seed - old length + new length, in ones' complement arithmetic
        new_seed = _fold(seed + (~old_l4len & 0xFFFF) + l4len)
        struct.pack_into("!H", seg, pos, new_seed)
        out.append(complete_partial_csum(bytes(seg), csum_start, csum_offset))
    return out


def pseudo_header_seed(frame: bytes, csum_start: int, l4len: int | None = None) -> int:
    """The partial checksum Linux leaves in an L4 header for NEEDS_CSUM: the folded (not
    complemented) pseudo-header sum over the addresses, protocol and L4 length."""
    l3 = l3_offset(frame)
    length = len(frame) - csum_start if l4len is None else l4len
    if frame[l3] >> 4 == 4:
        addrs, proto = frame[l3 + 12 : l3 + 20], frame[l3 + 9]
    else:
        addrs, proto = frame[l3 + 8 : l3 + 40], frame[l3 + 6]
    return ones_sum(addrs + struct.pack("!HH", proto, length))


def reassemble_tcp(frames: list[bytes], src: str, dst: str, dport: int) -> bytes:
    """The byte stream one TCP connection (src -> dst:dport) carried in these wire frames,
    from the byte after the SYN; retransmitted data must match what was sent before."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6

    isn: int | None = None
    data: dict[int, bytes] = {}
    for raw in frames:
        pkt = Ether(raw)
        ip = pkt[IP] if IP in pkt else pkt[IPv6] if IPv6 in pkt else None
        if ip is None or TCP not in pkt or ip.src != src or ip.dst != dst:
            continue
        tcp = pkt[TCP]
        if tcp.dport != dport:
            continue
        if tcp.flags.S:
            isn = tcp.seq
            continue
        l4len = ip.len - ip.ihl * 4 if IP in pkt else ip.plen
        body = bytes(tcp.payload)[: l4len - tcp.dataofs * 4]  # without Ethernet padding
        if body:
            prev = data.setdefault(tcp.seq, body)
            if not (prev.startswith(body) or body.startswith(prev)):
                raise ValueError(f"retransmission at seq {tcp.seq} differs from the original")
            if len(body) > len(prev):
                data[tcp.seq] = body
    if isn is None:
        raise ValueError(f"no SYN from {src} to {dst}:{dport} captured")
    out = bytearray()
    nxt = (isn + 1) & 0xFFFFFFFF
    for _ in range(len(data) + 1):
        chunk = data.get(nxt)
        if chunk is None:
            # a retransmission may start inside an earlier segment: find one covering nxt
            for seq, body in data.items():
                off = (nxt - seq) & 0xFFFFFFFF
                if 0 < off < len(body):
                    chunk = body[off:]
                    break
        if chunk is None:
            break
        out += chunk
        nxt = (nxt + len(chunk)) & 0xFFFFFFFF
    return bytes(out)


@dataclass
class CapturedFrame:
    frame: bytes
    partial: bool
    csum_start: int
    csum_offset: int
    gso_type: int = GSO_NONE
    gso_size: int = 0
    hdr_len: int = 0

    @property
    def gso(self) -> bool:
        return self.gso_type != GSO_NONE

    def wire(self) -> bytes:
        """The frame as it goes on the wire once the device completes a partial checksum
        (a GSO frame: see segments())."""
        if self.gso:
            raise ValueError("a GSO frame becomes several wire frames: use segments()")
        if not self.partial:
            return self.frame
        return complete_partial_csum(self.frame, self.csum_start, self.csum_offset)

    def segments(self) -> list[bytes]:
        """The wire frames this captured frame stands for (one unless it is GSO)."""
        if not self.gso:
            return [self.wire()]
        if not self.partial:
            raise ValueError("GSO frame without NEEDS_CSUM (the spec requires it)")
        return segment_gso(self.frame, self.gso_type, self.gso_size, self.csum_start,
                           self.csum_offset)


@dataclass
class TapReader:
    """A thread reading the frames that arrive at a host-side interface of the netns (AF_PACKET;
    frames going out of it, towards the guest, are skipped). Subclasses take each frame in
    on_frame(). Use as a context manager."""

    lab: NetLab
    iface: str
    _sock: socket.socket | None = field(default=None, kw_only=True)
    _thread: threading.Thread | None = field(default=None, kw_only=True)
    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True)

    def configure(self, s: socket.socket) -> None:
        """Socket options before the first read (subclasses add theirs)."""
        # 64 KiB GSO frames or long floods: a default-sized buffer overflows while we lag
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)

    def on_frame(self, data: bytes) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        s = _packet_socket(self.lab, self.iface)
        self.configure(s)
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != PACKET_OUTGOING:
                self.on_frame(data)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


@dataclass
class VnetSniffer(TapReader):
    """AF_PACKET capture on a tap with PACKET_VNET_HDR: sees the guest's virtio header too.

    Frames the guest transmits arrive at the host tap as received packets; each comes with
    the virtio_net_hdr the guest driver wrote, so checksum offload can be checked exactly.
    """

    frames: list[CapturedFrame] = field(default_factory=list)

    def configure(self, s: socket.socket) -> None:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        super().configure(s)

    def on_frame(self, data: bytes) -> None:
        flags, gso, hlen, gsz, cstart, coff = struct.unpack("<BBHHHH", data[:VNET_HDR_LEN])
        self.frames.append(
            CapturedFrame(data[VNET_HDR_LEN:], bool(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM),
                          cstart, coff, gso, gsz, hlen)
        )


# ---------------------------------------------------------------- sequence-numbered UDP floods


def udp_flood_seq(frame: bytes, dport: int) -> int | None:
    """The sequence number of a udp_flood_frames() frame (IPv4, UDP to `dport`, payload: a
    big-endian number then zero bytes), or None for any other frame or a damaged one."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    l4 = 14 + (frame[14] & 0xF) * 4
    if len(frame) < l4 + 8:
        return None
    port, length = struct.unpack("!HH", frame[l4 + 2 : l4 + 6])
    payload = frame[l4 + 8 : l4 + length]
    if port != dport or len(payload) < 4 or len(payload) != length - 8 or payload[4:].strip(b"\0"):
        return None
    return int(struct.unpack("!I", payload[:4])[0])


@dataclass
class FloodTally:
    """What arrived of a flood of `count` numbered frames."""

    count: int
    received: int = 0
    seen: set[int] = field(default_factory=set)
    bad: int = 0

    @property
    def unique(self) -> int:
        return len(self.seen)

    def add(self, seq: int | None) -> None:
        self.received += 1
        if seq is None or seq >= self.count:
            self.bad += 1
        else:
            self.seen.add(seq)

    def summary(self) -> dict[str, int]:
        return {"received": self.received, "unique": self.unique, "bad": self.bad}


@dataclass
class FloodCatcher(TapReader):
    """Counts the numbered UDP frames to `dport` that the guest sends out of a tap: the host
    end of XDP_TX and redirect floods. Other frames (ARP, IPv6 ND...) are ignored; test
    frames that arrive damaged (or, with dst_mac, addressed elsewhere) count as bad."""

    dport: int = 9
    count: int = 0
    dst_mac: str = ""
    tally: FloodTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = FloodTally(self.count)

    def on_frame(self, data: bytes) -> None:
        if len(data) < 38 or data[12:14] != b"\x08\x00" or data[23] != 17:
            return
        l4 = 14 + (data[14] & 0xF) * 4
        if len(data) < l4 + 4 or struct.unpack("!H", data[l4 + 2 : l4 + 4])[0] != self.dport:
            return
        good_mac = not self.dst_mac or data[:6] == bytes.fromhex(self.dst_mac.replace(":", ""))
        self.tally.add(udp_flood_seq(data, self.dport) if good_mac else None)

    def wait(self, timeout: float, settle: float = 0.5) -> FloodTally:
        """Wait until every frame arrived (or timeout), then `settle` s more for extras."""
        deadline = time.monotonic() + timeout
        while self.tally.received < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        return self.tally


def send_paced(lab: NetLab, iface: str, frames: list[Packet], delivered: Callable[[], int],
               window: int = 128, stall: float = 10) -> int:
    """Send frames out of a host interface, keeping at most `window` of them in flight
    (sent minus delivered()), so a flood the guest sends back never overruns a ring. After
    `stall` seconds without progress the rest goes out unpaced (the caller's count then
    shows what was lost). Returns how many were sent."""
    raw = [bytes(f) for f in frames]
    paced = True
    with _packet_socket(lab, iface) as s:
        for sent, frame in enumerate(raw):
            last, since = delivered(), time.monotonic()
            while paced and sent - delivered() >= window:
                if delivered() != last:
                    last, since = delivered(), time.monotonic()
                elif time.monotonic() - since > stall:
                    paced = False
                time.sleep(0.001)
            s.send(frame)
    return len(raw)


class StopFlag(Protocol):
    """threading.Event or multiprocessing's Event."""

    def is_set(self) -> bool: ...


def blast_frames(lab: NetLab, iface: str, frames: list[bytes], stop: StopFlag) -> int:
    """Send the frames round and round out of a host interface, as fast as one socket goes,
    until `stop` is set; returns how many were sent. (A tap drops what its ring cannot take.)"""
    sent = 0
    with _packet_socket(lab, iface) as s:
        while not stop.is_set():
            for frame in frames:
                try:
                    s.send(frame)
                except BlockingIOError:
                    continue
                sent += 1
    return sent


class Blaster:
    """blast_frames() in a process of its own (a thread would share the GIL with the test's
    receivers and slow them down) while the `with` block runs; stopped, then killed by its PID
    if it does not stop."""

    def __init__(self, lab: NetLab, iface: str, frames: list[bytes]) -> None:
        mp = multiprocessing.get_context("fork")
        self._stop = mp.Event()
        self._proc = mp.Process(target=blast_frames, daemon=True,
                                args=(lab, iface, frames, self._stop))

    def __enter__(self) -> Self:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

