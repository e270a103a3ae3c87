"""Receive path in each rx buffer mode: mergeable buffers with guest TSO (default), big
packets (mrg_rxbuf=off), small buffers (no mergeable, no guest GSO) and jumbo MTU.

One guest boot per profile. Transfers are byte-exact; counters show which mode ran."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pvnet_harness.guest import load_profile
from pvnet_harness.testbed import DUT_V4, DUT_V6, PEER_V4, TestBed, queue_sum
from pvnet_harness.traffic import make_payload, send_frames, tcp_send_file
from scapy.layers.l2 import Ether
from scapy.packet import Raw

pytestmark = pytest.mark.qemu

MIB = 1 << 20
NO_GUEST_GSO = {"guest_tso4": "off", "guest_tso6": "off", "guest_ecn": "off", "guest_ufo": "off"}
# profile name -> Profile.variant() changes of the DUT NIC
PROFILES: dict[str, dict[str, object]] = {
    "mergeable": {},
    "big": {"props": {"mrg_rxbuf": "off"}},
    "small": {"props": {"mrg_rxbuf": "off"} | NO_GUEST_GSO},
    "jumbo": {"host_mtu": 9000},
}
JUMBO = 9000
# max_mtu without VIRTIO_NET_F_MTU: 1500 with small buffers, else 64 KiB less L2 headers
MAX_MTU = {"mergeable": 65535 - 18, "big": 65535 - 18, "small": 1500, "jumbo": JUMBO}


# Mergeable buffers (the default, and where the kernels differ: a page_pool where the build
# found page_pool_frag, page frags elsewhere) run on every line; the other layouts are pvnet code
# alone and are split over the lines (see tests/e2e/conftest.py; --full-matrix runs all four on
# one line).
LAYOUT_PARAMS = [pytest.param(name, id=name, marks=pytest.mark.shard(i, anchor=name == "mergeable"))
                 for i, name in enumerate(("big", "small", "jumbo", "mergeable"))]


@pytest.fixture(scope="module", params=LAYOUT_PARAMS)
def bed_rx(request: pytest.FixtureRequest,
           make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    changes = PROFILES[request.param]
    profile = load_profile().variant(**changes) if changes else load_profile()
    # jumbo: frames of 9000 bytes must cross the host bridge and taps (and reach the peer)
    with make_bed(profile=profile, mtu=JUMBO if request.param == "jumbo" else None) as tb:
        if request.param == "jumbo":
            # the device's host_mtu becomes the DUT's MTU at probe
            assert tb.g.sh(f"cat /sys/class/net/{tb.dut_if()}/mtu") == str(JUMBO)
        yield tb


@pytest.fixture
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["bed_rx"])


def rx_totals(stats: dict[str, int]) -> dict[str, int]:
    """Per-queue rx counters of `ethtool -S` summed over the queues ({"packets": ...})."""
    totals: dict[str, int] = {}
    for name, value in stats.items():
        m = re.fullmatch(r"rx_queue_\d+_(\w+)", name)
        if m:
            totals[m.group(1)] = totals.get(m.group(1), 0) + value
    return totals


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def listen(bed: TestBed, port: int, path: str, name: str, v6: bool) -> None:
    """TestBed.listen() for either address family (socat's TCP-LISTEN is IPv4 only)."""
    if not v6:
        bed.listen(port, path, name)
        return
    bed.g.sh(f"socat -u TCP6-LISTEN:{port},reuseaddr OPEN:{path},creat,trunc "
             f">/tmp/{name}.log 2>&1 & echo $! > /tmp/{name}.pid")


def test_lro_and_mtu_match_mode(bed_rx: TestBed, mode: str) -> None:
    dev = bed_rx.dut_if()
    features = bed_rx.g.sh(f"ethtool -k {dev}")
    lro = re.search(r"^large-receive-offload: (\w+)", features, re.M)
    assert lro is not None, features
    assert lro.group(1) == ("off" if mode == "small" else "on"), features
    details = bed_rx.g.sh(f"ip -d link show {dev}")
    maxmtu = re.search(r"maxmtu (\d+)", details)
    assert maxmtu is not None and int(maxmtu.group(1)) == MAX_MTU[mode], details


@pytest.mark.parametrize("dut_addr", [DUT_V4, DUT_V6])
def test_host_to_dut_byte_exact(bed_rx: TestBed, mode: str, tmp_path: Path,
                                dut_addr: str) -> None:
    v6 = ":" in dut_addr
    src = tmp_path / "h2d.bin"
    want = make_payload(src, 8 * MIB, b"rx-h2d" + dut_addr.encode())
    before = rx_totals(bed_rx.ethtool_stats())
    listen(bed_rx, 5101, "/tmp/h2d.bin", "h2d", v6)
    assert tcp_send_file(bed_rx.net, dut_addr, 5101, src, timeout=600) == 8 * MIB
    bed_rx.wait_job("h2d", 120)
    assert bed_rx.sha256("/tmp/h2d.bin") == want
    bed_rx.g.sh("rm -f /tmp/h2d.bin")
    check_mode_counters(delta(rx_totals(bed_rx.ethtool_stats()), before), mode)


@pytest.mark.parametrize("dut_addr", [DUT_V4, DUT_V6])
def test_peer_to_dut_byte_exact(bed_rx: TestBed, mode: str, dut_addr: str) -> None:
    g = bed_rx.g
    g.sh("head -c 8388608 /dev/urandom > /tmp/p2d-src.bin", timeout=120)
    want = bed_rx.sha256("/tmp/p2d-src.bin")
    before = rx_totals(bed_rx.ethtool_stats())
    v6 = ":" in dut_addr
    listen(bed_rx, 5102, "/tmp/p2d.bin", "p2d", v6)
    target = f"[{dut_addr}]" if v6 else dut_addr
    g.sh(f"ip netns exec peer socat -u OPEN:/tmp/p2d-src.bin "
         f"TCP:{target}:5102,retry=20,interval=0.5", timeout=600)
    bed_rx.wait_job("p2d", 120)
    assert bed_rx.sha256("/tmp/p2d.bin") == want
    g.sh("rm -f /tmp/p2d.bin /tmp/p2d-src.bin")
    check_mode_counters(delta(rx_totals(bed_rx.ethtool_stats()), before), mode)


def check_mode_counters(d: dict[str, int], mode: str) -> None:
    """The counters of one bulk TCP transfer into the DUT show the intended rx mode ran."""
    assert d["errors"] == 0 and d["drops"] == 0, d
    assert d["packets"] > 0, d
    if mode == "small":
        assert d["gso_packets"] == 0 and d["merged_buffers"] == 0, d
        return
    # guest TSO is on in every other profile: the host and the peer send 64 KiB packets
    assert d["gso_packets"] > 0 and d["gso_bytes"] > d["gso_packets"] * 1500, d
    if mode == "big":
        assert d["merged_buffers"] == 0, d
    else:
        assert d["merged_buffers"] > 0, d


def test_totals_agree_with_link_stats(bed_rx: TestBed) -> None:
    link, stats = bed_rx.stats_snapshot()
    sums = {name: queue_sum(stats, "rx", name) for name in ("packets", "bytes", "drops", "errors")}
    assert link["rx_packets"] == sums["packets"], (link, sums)
    assert link["rx_bytes"] == sums["bytes"], (link, sums)
    assert link["rx_dropped"] == sums["drops"], (link, sums)
    assert link["rx_length_errors"] == sums["errors"], (link, sums)


def test_recycling_measured(bed_rx: TestBed, mode: str) -> None:
    """Mergeable buffers come from a page_pool where the kernel recycles skb pages into it
    (probe page_pool_frag: pool fragments and skb_mark_for_recycle) and pages are reused;
    elsewhere nothing is counted."""
    d = rx_totals(bed_rx.ethtool_stats())
    if mode in ("mergeable", "jumbo") and bed_rx.has("page_pool_frag"):
        assert d["recycled"] > 0, d
    else:
        assert d["recycled"] == 0, d
    assert d["refill_failures"] == 0, d


def test_odd_sized_frames_accounted(bed_rx: TestBed) -> None:
    """Frames from the minimum to the largest the DUT accepts are counted (as packets or
    errors) and nothing breaks."""
    dev = bed_rx.dut_if()
    mtu = int(bed_rx.g.sh(f"cat /sys/class/net/{dev}/mtu"))
    sizes = [14, 15, 59, 60, 61, 1514, mtu + 14]
    frames = [Ether(src="02:00:00:00:00:09", dst=bed_rx.dut_mac, type=0x88B5) /
              Raw(bytes(size - 14)) for size in sizes]
    base = bed_rx.at_rest()
    assert base is not None, "the DUT's counters did not settle before the frames"
    assert send_frames(bed_rx.net, bed_rx.dut_tap, frames) == len(frames)
    # stray frames (ND, ARP) may cross the tap too: poll until the tap's count and the DUT's
    # agree, each read at one moment (TestBed.at_rest)
    tap: dict[str, int] = {}
    counted = -1
    for _ in range(60):
        snap = bed_rx.at_rest()
        if snap is not None:
            tap = delta(snap.tap, base.tap)
            d = delta(rx_totals(snap.ethtool), rx_totals(base.ethtool))
            counted = d["packets"] + d["errors"] + d["drops"]
            if counted == tap["tx_packets"] >= len(frames):
                break
        bed_rx.g.sh("sleep 0.5")
    assert tap.get("tx_dropped") == 0, tap
    # every frame the tap handed to QEMU is counted once by the DUT, as a packet, an error or
    # a drop (before the base was read at rest, one run in four counted one frame fewer: a
    # stray frame had landed between the tap's read and the DUT's)
    assert counted == tap["tx_packets"] >= len(frames), (counted, tap)
    # the link still works afterwards
    bed_rx.g.sh(f"ip netns exec peer ping -c 2 -W 5 {DUT_V4}", timeout=30)
    assert bed_rx.g.run(f"ping -c 1 -W 5 {PEER_V4}", check=False).rc == 0
