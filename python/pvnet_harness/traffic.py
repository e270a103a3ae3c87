"""Host-side traffic: TCP byte-exact transfers, scapy builders and checksum checkers.

All sockets are opened inside the harness netns (NetLab.entered()) and only ever address
198.18.0.0/15 or 2001:db8::/64.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from .netlab import NetLab, check_test_address

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10  # struct virtio_net_hdr as AF_PACKET hands it out
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1


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


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


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


@dataclass
class CapturedFrame:
    frame: bytes
    partial: bool
    csum_start: int
    csum_offset: int

    def wire(self) -> bytes:
        """The frame as it goes on the wire once the device completes a partial checksum."""
        if not self.partial:
            return self.frame
        return complete_partial_csum(self.frame, self.csum_start, self.csum_offset)


@dataclass
class VnetSniffer:
    """AF_PACKET capture on a tap with PACKET_VNET_HDR: sees the guest's virtio header too.

    Frames the guest transmits arrive at the host tap as received packets; each comes with
    the virtio_net_hdr the guest driver wrote, so checksum offload can be checked exactly.
    """

    lab: NetLab
    iface: str
    frames: list[CapturedFrame] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> VnetSniffer:
        s = _packet_socket(self.lab, self.iface)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
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
            if addr[2] == PACKET_OUTGOING:
                continue  # frames towards the guest
            flags, _gso, _hlen, _gsz, cstart, coff = struct.unpack("<BBHHHH", data[:VNET_HDR_LEN])
            self.frames.append(
                CapturedFrame(data[VNET_HDR_LEN:], bool(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM),
                              cstart, coff)
            )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

