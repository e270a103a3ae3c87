"""Byte-exact bulk transfers, exact rx accounting and valid checksums on the wire."""

from __future__ import annotations

import time
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest
from pvnet_harness.testbed import DUT_V4, DUT_V6, HOST_V4, HOST_V6, TestBed, queue_sum
from pvnet_harness.traffic import (
    TcpSink,
    VnetSniffer,
    checksum_problems,
    make_payload,
    send_frames,
    tcp_send_file,
    udp_flood_frames,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

pytestmark = pytest.mark.qemu

MIB = 1 << 20


@pytest.mark.parametrize("host_addr,dut_addr", [(HOST_V4, DUT_V4)])
def test_64mib_host_to_guest(bed: TestBed, tmp_path: Path, host_addr: str, dut_addr: str) -> None:
    src = tmp_path / "h2g.bin"
    want = make_payload(src, 64 * MIB, b"h2g")
    bed.listen(5001, "/tmp/h2g.bin", "h2g")
    t0 = time.monotonic()
    sent = tcp_send_file(bed.net, dut_addr, 5001, src, timeout=600)
    bed.wait_job("h2g", 120)
    print(f"host->guest 64 MiB in {time.monotonic() - t0:.1f}s ({bed.accel})")
    assert sent == 64 * MIB
    assert bed.sha256("/tmp/h2g.bin") == want
    bed.g.sh("rm -f /tmp/h2g.bin")


@pytest.mark.parametrize("host_addr", [HOST_V4])
def test_64mib_guest_to_host(bed: TestBed, host_addr: str) -> None:
    bed.g.sh("head -c 67108864 /dev/urandom > /tmp/g2h.bin", timeout=180)
    want = bed.sha256("/tmp/g2h.bin")
    sink = TcpSink(bed.net, host_addr, 5002).start()
    t0 = time.monotonic()
    bed.g.sh(f"socat -u OPEN:/tmp/g2h.bin TCP:{host_addr}:5002", timeout=600)
    got = sink.wait(120)
    print(f"guest->host 64 MiB in {time.monotonic() - t0:.1f}s ({bed.accel})")
    assert sink.nbytes == 64 * MIB
    assert got == want
    bed.g.sh("rm -f /tmp/g2h.bin")


def _udp_stack_count(bed: TestBed) -> int:
    """UDP datagrams the guest's IPv4 stack accepted (delivered + to closed ports)."""
    lines = [ln.split() for ln in bed.g.sh("grep '^Udp:' /proc/net/snmp").splitlines()]
    table = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:]), strict=True))
    return table["InDatagrams"] + table["NoPorts"] + table["InErrors"]


@dataclass(frozen=True)
class _RxCounts:
    """The host tap's counts toward QEMU and the DUT's rx counters, read together."""

    tap_delivered: int
    tap_dropped: int
    rx_packets: int
    per_queue: int  # sum of the per-queue rx packets
    rx_dropped: int
    rx_errors: int

    def __sub__(self, base: _RxCounts) -> _RxCounts:
        return _RxCounts(*(a - b for a, b in zip(astuple(self), astuple(base), strict=True)))


def _rx_snapshot(bed: TestBed) -> _RxCounts | None:
    """The counters at one moment (TestBed.at_rest), None while frames are still crossing."""
    snap = bed.at_rest()
    if snap is None:
        return None
    return _RxCounts(snap.tap["tx_packets"], snap.tap["tx_dropped"], snap.link["rx_packets"],
                     queue_sum(snap.ethtool, "rx", "packets"), snap.link["rx_dropped"],
                     snap.link["rx_errors"])


def test_udp_flood_counted_exactly(bed: TestBed) -> None:
    n = 10_000
    dev = bed.dut_if()
    br_mac = bed.net.run(["cat", "/sys/class/net/br0/address"]).strip()
    # no ARP churn during the count: the guest's ICMP port-unreachable replies need the host
    bed.g.sh(f"ip neigh replace {HOST_V4} lladdr {br_mac} nud permanent dev {dev}")
    frames = udp_flood_frames("02:00:00:00:00:01", bed.dut_mac, HOST_V4, DUT_V4, n, dport=9)
    base = _rx_snapshot(bed)
    assert base is not None, "the DUT's counters did not settle before the flood"
    udp0 = _udp_stack_count(bed)
    send_frames(bed.net, bed.dut_tap, frames)
    # every frame the tap handed to QEMU (our 10,000 plus any stray) must be counted once by
    # the device total and by the per-queue counters; poll until a snapshot is settled
    deadline = time.monotonic() + 120
    moved = None
    while True:
        snap = _rx_snapshot(bed)
        if snap is not None:
            moved = snap - base
            if moved.tap_delivered >= n and moved.rx_packets == moved.per_queue == moved.tap_delivered:
                break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert moved is not None, "the DUT's counters kept moving for 120 s after the flood"
    delivered = moved.tap_delivered
    udp1 = _udp_stack_count(bed)
    bed.g.run(f"ip neigh del {HOST_V4} dev {dev}", check=False)
    # a failure shows every counter's move
    assert moved.tap_dropped == 0, moved
    assert delivered >= n, moved
    assert moved.rx_packets == delivered, moved
    assert moved.per_queue == delivered, moved
    assert moved.rx_dropped == 0 and moved.rx_errors == 0, moved
    # all 10,000 datagrams reached the guest's UDP layer; any other UDP datagram there also
    # came through the tap, so it is bounded by what the tap delivered
    assert n <= udp1 - udp0 <= delivered, (udp1 - udp0, delivered)


def test_reply_checksums_valid(bed: TestBed) -> None:
    """Every frame the DUT sends carries correct IPv4/TCP/UDP/ICMP(v6) checksums once the
    device applies the virtio header the driver wrote (NEEDS_CSUM: csum_start/offset)."""
    features = bed.g.sh(f"ethtool -k {bed.dut_if()}")
    assert "tx-checksumming: on" in features
    with VnetSniffer(bed.net, bed.dut_tap) as sniff:
        bed.net.run(["ping", "-c", "3", "-i", "0.2", DUT_V4])
        bed.net.run(["ping", "-6", "-c", "3", "-i", "0.2", DUT_V6])
        for addr, port in ((HOST_V4, 5003), (HOST_V6, 5004)):
            sink = TcpSink(bed.net, addr, port).start()
            target = f"[{addr}]" if ":" in addr else addr
            bed.g.sh(f"head -c 300000 /dev/urandom | socat -u - TCP:{target}:{port}", timeout=120)
            sink.wait(60)
        for addr in (HOST_V4, HOST_V6):
            target = f"[{addr}]" if ":" in addr else addr
            bed.g.sh(f"for s in 1 100 1000 1472; do head -c $s /dev/urandom | "
                     f"socat -u - UDP-SENDTO:{target}:7000; done", timeout=60)
        time.sleep(1)
    from_dut = [f for f in sniff.frames if Ether(f.frame).src == bed.dut_mac]
    problems: list[str] = []
    seen = {"tcp4": 0, "tcp6": 0, "udp4": 0, "udp6": 0, "icmp4": 0, "icmp6": 0, "partial": 0}
    for cap, wire in ((c, w) for c in from_dut for w in c.segments()):  # TSO: segmented here
        pkt = Ether(wire)
        problems += checksum_problems(wire)
        fam = "4" if IP in pkt else "6" if IPv6 in pkt else ""
        if not fam:
            continue
        proto = "tcp" if TCP in pkt else "udp" if UDP in pkt else "icmp"
        if proto == "icmp" and fam == "4" and ICMP not in pkt:
            continue
        seen[proto + fam] += 1
        seen["partial"] += cap.partial
    assert not problems, "\n".join(problems[:20])
    for key in ("tcp4", "tcp6", "udp4", "udp6", "icmp4", "icmp6"):
        assert seen[key] > 0, f"no {key} frames from the DUT captured: {seen}"
    # checksum offload is really in use: TCP/UDP left the driver with NEEDS_CSUM
    assert seen["partial"] >= seen["tcp4"] // 2, seen
