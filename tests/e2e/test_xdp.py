"""Native XDP on the DUT (issue 5): every action, the three redirect targets, adjust_head/tail,
attach/replace/detach under traffic, refusals, LRO and per-queue counters.

The programs are tests/bpf/*.c, built on the host (pvnet_harness.bpf) and attached in the guest
with iproute2 in driver mode (`xdpdrv`); maps are read and filled with bpftool. Every program
acts on IPv4/UDP frames to XDP_TEST_PORT only and passes the rest. Floods are numbered UDP
frames sent from the host bridge's MAC straight into the DUT's tap; what comes back is counted
at the taps, so every assertion is on what left or reached the guest, plus the driver's
counters and the programs' own.

Driver under test: PVNET_XDP_DRIVER (default pvnet). `PVNET_XDP_DRIVER=virtio_net` runs the same
tests against the in-tree driver (where they were developed); where the two differ by design the
expectation is marked per driver. Two boots: the "xdp" profile (2 vCPUs, DUT with 2 queue pairs:
XDP_TX shares the stack's tx queues; plus a redirect target NIC and a small-buffer NIC) and a
DUT with 4 pairs on 2 vCPUs (dedicated XDP tx queues).

Seen with the in-tree driver: virtio_net of 6.1 once logged a WARNING in skb_try_coalesce during
the attach cycles under traffic (1 run of 3), which the dmesg check reports as an error. The
tests were not run against virtio_net of 5.10, which wants a spare tx queue per CPU for XDP.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from pvnet_harness.bpf import BPF_SRC, BpfPrograms, build_all
from pvnet_harness.build import BuildResult
from pvnet_harness.guest import Profile, load_profile
from pvnet_harness.testbed import (
    DUT_V4,
    HOST_V4,
    TestBed,
    parse_ethtool_features,
    parse_kv_lines,
    queue_counter,
    queue_sum,
)
from pvnet_harness.traffic import (
    Blaster,
    FloodCatcher,
    FloodTally,
    send_frames,
    send_paced,
    udp_flood_frames,
)
from pvnet_harness.transfer import start_both_ways
from pvnet_harness.xdp import (
    COUNTERS,
    XDP_TEST_PORT,
    GuestXdp,
    header_define,
    parse_percpu_dump,
)
from scapy.packet import Packet

pytestmark = pytest.mark.qemu

DRIVER = os.environ.get("PVNET_XDP_DRIVER", "pvnet")
N = 5000  # frames per flood
MIB = 1 << 20
JUMBO = 9000
UDP_RX = Path(__file__).with_name("guest_udp_rx.py")
UDP_TX = Path(__file__).with_name("guest_udp_tx.py")
CPUMAP_TARGET = header_define("CPUMAP_TARGET", BPF_SRC / "xdp_redirect_cpumap.c")
# ethtool -S per-queue XDP counters each driver must list for every queue
RX_COUNTERS = {
    "pvnet": ("xdp_packets", "xdp_drops", "xdp_tx", "xdp_tx_drops", "xdp_redirects", "xdp_aborted"),
    "virtio_net": ("xdp_packets", "xdp_drops", "xdp_tx", "xdp_redirects"),
}
TX_COUNTERS = ("xdp_tx", "xdp_tx_drops")


def _pvnet_only(why: str) -> None:
    if DRIVER != "pvnet":
        pytest.skip(f"pvnet behaviour; {DRIVER}: {why}")


# ---------------------------------------------------------------- beds


@pytest.fixture(scope="module")
def progs() -> BpfPrograms:
    return build_all()


def _prepare(tb: TestBed, progs: BpfPrograms) -> None:
    """DUT on the driver under test, programs and the guest helpers on the work share."""
    tb.bind_dut(DRIVER)
    GuestXdp(tb.g, progs).install()
    (tb.g.workdir / UDP_RX.name).write_bytes(UDP_RX.read_bytes())


def _tcg_threads(prof: Profile, build: BuildResult) -> Profile:
    """Single-threaded TCG wherever the driver under test runs programs through the BPF
    dispatcher (pvnet built with multi-buffer XDP, virtio_net everywhere; pvnet built without
    probe xdp_buff_frags calls them directly, see pvnet_run_xdp in driver/pvnet_compat.h).
    Every attach or detach rewrites the dispatcher's jump (int3-guarded text_poke_bp) while
    the other vCPU may be running it. Under multi-threaded TCG a 6.12 guest died of "Oops:
    int3" at bpf_dispatcher_xdp_func+0xa under pvnet_rx_poll (2026-11-23, one of two 6.12 runs
    of 100+ attach cycles under traffic; the same kind of Oops as the early-boot one
    Guest.start retries). Our reading: a vCPU ran a
    stale translation holding the transient int3 after the patch was done, which
    single-threaded TCG rules out; 250 cycles under traffic on 6.12 then passed. Not proven.
    It costs time (the 100-cycle test took 341 s on 5.10 instead of about 200 s), so only where
    needed. KVM guests ignore the setting."""
    if DRIVER == "pvnet" and not build.has("xdp_buff_frags"):
        return prof
    return prof.with_machine(tcg_thread="single")


@pytest.fixture(scope="module")
def bed_xdp(make_bed: Callable[..., TestBed], progs: BpfPrograms,
            pvnet_build: BuildResult) -> Iterator[TestBed]:
    # bridge and taps at 9000 for the multi-buffer test; the DUT itself starts at 1500
    with make_bed(profile=_tcg_threads(load_profile("xdp"), pvnet_build), mtu=JUMBO) as tb:
        _prepare(tb, progs)
        # the redirect target's tap leaves the bridge: what the guest sends there stops there
        tb.net.run(["ip", "link", "set", tb.profile.nic("xdp2").tap, "nomaster"])
        yield tb


@pytest.fixture(scope="module")
def bed_xdpq(make_bed: Callable[..., TestBed], progs: BpfPrograms,
             pvnet_build: BuildResult) -> Iterator[TestBed]:
    """4 queue pairs on 2 vCPUs: room for one XDP tx queue per CPU next to the stack's."""
    prof = _tcg_threads(load_profile().variant(cpus=2, queues=4), pvnet_build)
    with make_bed(profile=prof) as tb:
        _prepare(tb, progs)
        yield tb


# ---------------------------------------------------------------- helpers


def _host_mac(bed: TestBed) -> str:
    return bed.net.run(["cat", "/sys/class/net/br0/address"]).strip()


def _flood(bed: TestBed, count: int = N) -> list[Packet]:
    """`count` numbered 64-byte UDP frames from the host bridge's MAC to the DUT's test port."""
    return udp_flood_frames(_host_mac(bed), bed.dut_mac, HOST_V4, DUT_V4, count,
                            dport=XDP_TEST_PORT, size=18)


def _delta(bed: TestBed, before: dict[str, int], direction: str, name: str) -> int:
    return queue_sum(bed.ethtool_stats(), direction, name) - queue_sum(before, direction, name)


def _wait_delta(bed: TestBed, before: dict[str, int], direction: str, name: str, want: int,
                timeout: float = 120) -> int:
    """Poll a per-queue DUT counter (summed) until it moved by `want`; then settle and read it
    once more, so that extra counts show."""
    deadline = time.monotonic() + timeout
    while _delta(bed, before, direction, name) < want and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    return _delta(bed, before, direction, name)


def _udp_snmp(bed: TestBed) -> dict[str, int]:
    lines = [ln.split() for ln in bed.g.sh("grep '^Udp:' /proc/net/snmp").splitlines()]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def _start_job(bed: TestBed, name: str, cmd: str, timeout: float = 60) -> None:
    """A guest program in the background (stdout /tmp/NAME.out, stderr /tmp/NAME.log) that
    says "ready" on stderr once it can receive; waits for that."""
    bed.g.sh(f"{cmd} >/tmp/{name}.out 2>/tmp/{name}.log & echo $! > /tmp/{name}.pid")
    res = bed.g.run(f"( p=$(cat /tmp/{name}.pid); for i in $(seq {int(timeout * 10)}); do "
                    f"grep -q ready /tmp/{name}.log && exit 0; kill -0 $p 2>/dev/null || exit 2; "
                    f"sleep 0.1; done; exit 1 )", timeout=timeout + 30, check=False)
    if res.rc != 0:
        log = bed.g.run(f"cat /tmp/{name}.log /tmp/{name}.out", check=False).out
        bed.g.fail(f"guest job {name} not ready (rc {res.rc}): {log}")


def _job_json(bed: TestBed, name: str, timeout: float, stop: bool = False) -> dict[str, object]:
    """Wait for a _start_job() program (SIGTERM first with stop) and parse its JSON line."""
    if stop:
        bed.g.sh(f"kill -TERM $(cat /tmp/{name}.pid)")
    bed.wait_job(name, timeout)
    out = bed.g.sh(f"cat /tmp/{name}.out")
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def _target(bed: TestBed) -> str:
    """The redirect target NIC on the driver under test, up with carrier."""
    dev = bed.bind_nic("xdp2", DRIVER)
    bed.g.sh(f"ip link set {dev} up && for i in $(seq 100); do "
             f"[ \"$(cat /sys/class/net/{dev}/carrier)\" = 1 ] && break; sleep 0.1; done")
    return dev


# ---------------------------------------------------------------- counters and features


def test_per_queue_xdp_counters_listed(bed_xdp: TestBed) -> None:
    stats = bed_xdp.ethtool_stats()
    queues = sorted(queue_counter(stats, "rx", "drops"))
    assert queues, "no per-queue counters at all"
    for name in RX_COUNTERS[DRIVER]:
        assert sorted(queue_counter(stats, "rx", name)) == queues, f"rx_queue_<q>_{name}"
    for name in TX_COUNTERS:
        assert sorted(queue_counter(stats, "tx", name)) == queues, f"tx_queue_<q>_{name}"
    if DRIVER == "pvnet":
        # the page_pool gauge the attach cycles' memory check uses: listed where the build
        # found page_pool_frag (rx pools), absent where rx uses plain page frags
        pools = queue_counter(stats, "rx", "pool_pages")
        assert sorted(pools) == (queues if bed_xdp.has("page_pool_frag") else []), pools
        assert not pools or pools[0] > 0, f"queue 0's ring is posted from its pool: {pools}"


def _lro(bed: TestBed) -> bool:
    return parse_ethtool_features(bed.g.sh(f"ethtool -k {bed.dut_if()}"))[
        "large-receive-offload"].on


def test_lro_off_while_a_program_is_attached(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    _pvnet_only("no LRO feature (it keeps rx-gro-hw and clears the guest offloads internally)")
    x = GuestXdp(bed_xdp.g, progs)
    assert _lro(bed_xdp)
    with x.attached(bed_xdp.dut_if(), "xdp_pass"):
        assert not _lro(bed_xdp), "LRO stays on with an XDP program attached"
    assert _lro(bed_xdp), "LRO did not come back after detach"


# ---------------------------------------------------------------- actions


def test_drop_every_frame_counted_none_reaches_the_stack(bed_xdp: TestBed,
                                                         progs: BpfPrograms) -> None:
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    frames = _flood(bed)
    with x.attached(dev, "xdp_drop"):
        _start_job(bed, "udprx", f"python3 /mnt/work/{UDP_RX.name} {XDP_TEST_PORT} {N} 600")
        udp_before = _udp_snmp(bed)
        before = bed.ethtool_stats()
        send_frames(bed.net, bed.dut_tap, frames)
        drops = _wait_delta(bed, before, "rx", "xdp_drops", N)
        seen = _delta(bed, before, "rx", "xdp_packets")
        counts = x.counters(dev)
        udp_after = _udp_snmp(bed)
        sock = _job_json(bed, "udprx", 30, stop=True)
    assert drops == N, f"rx xdp_drops moved by {drops}, sent {N}"
    assert seen >= N, f"rx xdp_packets moved by {seen}"
    assert counts["hit"] == N, counts
    assert sock["received"] == 0, f"the UDP socket got dropped frames: {sock}"
    assert udp_after["InDatagrams"] == udp_before["InDatagrams"], (udp_before, udp_after)


@pytest.mark.parametrize("queues", ["shared", "dedicated"])
def test_tx_reflects_every_frame_intact(request: pytest.FixtureRequest, progs: BpfPrograms,
                                        queues: str) -> None:
    """XDP_TX on the stack's tx queues (2 pairs, 2 vCPUs) and on spare pairs (4 pairs)."""
    bed: TestBed = request.getfixturevalue("bed_xdp" if queues == "shared" else "bed_xdpq")
    x = GuestXdp(bed.g, progs)
    dev = bed.dut_if()
    frames = _flood(bed)
    before = bed.ethtool_stats()
    with x.attached(dev, "xdp_tx_swap"), \
            FloodCatcher(bed.net, bed.dut_tap, XDP_TEST_PORT, N, _host_mac(bed)) as catcher:
        send_paced(bed.net, bed.dut_tap, frames, lambda: catcher.tally.received)
        tally = catcher.wait(120)
        counts = x.counters(dev)
        # read while attached: a driver may list its XDP queues only then (virtio_net)
        moved = {f"{d} {c}": _delta(bed, before, d, c)
                 for d, c in (("rx", "xdp_tx"), ("tx", "xdp_tx"), ("tx", "xdp_tx_drops"))}
    assert tally.summary() == {"received": N, "unique": N, "bad": 0}
    assert counts["hit"] == N, counts
    assert moved == {"rx xdp_tx": N, "tx xdp_tx": N, "tx xdp_tx_drops": 0}


def test_aborted_counted(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    _pvnet_only("counts XDP_ABORTED in xdp_drops, it has no xdp_aborted counter")
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    frames = _flood(bed)
    with x.attached(dev, "xdp_aborted"):
        before = bed.ethtool_stats()
        send_frames(bed.net, bed.dut_tap, frames)
        aborted = _wait_delta(bed, before, "rx", "xdp_aborted", N)
        counts = x.counters(dev)
    assert aborted == N
    assert counts["hit"] == N, counts


# ---------------------------------------------------------------- redirect


@pytest.mark.parametrize("target_prog", [True, False], ids=["target-has-prog", "target-no-prog"])
def test_redirect_devmap_to_second_nic(bed_xdp: TestBed, progs: BpfPrograms,
                                       target_prog: bool) -> None:
    """DUT -> devmap -> the second NIC (same driver, same netns); counted at its tap.

    Without a program on the target, pvnet still transmits (ndo_xdp_xmit needs none: its XDP
    tx queues exist from probe); the in-tree virtio_net refuses with -ENXIO."""
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev, tdev = bed.dut_if(), _target(bed)
    expect = N if target_prog or DRIVER == "pvnet" else 0
    frames = _flood(bed)
    tap = bed.profile.nic("xdp2").tap
    with ExitStack() as stack:
        if target_prog:
            stack.enter_context(x.attached(tdev, "xdp_pass"))
        stack.enter_context(x.attached(dev, "xdp_redirect_devmap"))
        x.map_set(dev, "tx_port", 0, int(bed.g.sh(f"cat /sys/class/net/{tdev}/ifindex")))
        catcher = stack.enter_context(
            FloodCatcher(bed.net, tap, XDP_TEST_PORT, N, _host_mac(bed)))
        before = bed.ethtool_stats()
        send_paced(bed.net, bed.dut_tap, frames, lambda: catcher.tally.received,
                   window=128 if expect else N)
        tally = catcher.wait(120 if expect else 5)
        redirects = _wait_delta(bed, before, "rx", "xdp_redirects", N, timeout=30)
    assert redirects == N
    assert tally.summary() == {"received": expect, "unique": expect, "bad": 0}


def test_redirect_to_af_xdp_socket_copy_mode(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    """xsk_rx binds one copy-mode AF_XDP socket per rx queue and attaches xdp_redirect_xsk."""
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    frames = _flood(bed)
    before = bed.ethtool_stats()
    _start_job(bed, "xsk", f"{x.helper('xsk_rx')} {dev} {x.obj('xdp_redirect_xsk')} {N} 240 "
                           f"{XDP_TEST_PORT}")
    send_frames(bed.net, bed.dut_tap, frames)
    res = _job_json(bed, "xsk", 300)
    print(f"xsk_rx: {res}")
    assert (res["received"], res["unique"], res["bad"]) == (N, N, 0), res
    assert res["detached"] and x.prog_id(dev) is None
    assert _delta(bed, before, "rx", "xdp_redirects") == N


def test_redirect_cpumap_reaches_the_stack(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    frames = _flood(bed)
    with x.attached(dev, "xdp_redirect_cpumap"):
        x.map_set(dev, "cpu_map", CPUMAP_TARGET, 8192)  # the CPU's queue size: above N
        _start_job(bed, "cpurx", f"python3 /mnt/work/{UDP_RX.name} {XDP_TEST_PORT} {N} 240")
        before = bed.ethtool_stats()
        send_frames(bed.net, bed.dut_tap, frames)
        res = _job_json(bed, "cpurx", 300)
        redirects = _delta(bed, before, "rx", "xdp_redirects")
    assert res == {"received": N, "unique": N, "bad": 0}
    assert redirects == N


def _host_udp_count(bed: TestBed, port: int, count: int, timeout: float) -> FloodTally:
    """Receive numbered datagrams (guest_udp_tx.py) on a host UDP socket until `count`
    arrived or `timeout` passed: the host's kernel filters them out of any flood."""
    tally = FloodTally(count)
    with bed.net.entered():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((HOST_V4, port))
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while tally.received < count and time.monotonic() < deadline:
            try:
                data = s.recv(2048)
            except TimeoutError:
                continue
            tally.add(int(struct.unpack("!I", data[:4])[0])
                      if len(data) >= 4 and not data[4:].strip(b"\0") else None)
    return tally


def test_tx_flood_on_shared_queues_leaves_the_stack_its_share(bed_xdp: TestBed,
                                                              progs: BpfPrograms) -> None:
    """An XDP_TX reflector fed by a host flood as fast as the host sends shares the one tx
    queue the stack uses (1 pair on 2 vCPUs: no spare pairs for XDP), with a 64-entry ring
    the flood fills: the 2000 numbered datagrams the guest's stack sends meanwhile all reach
    the device and the driver drops no skb (XDP frames beyond their share are refused and
    counted instead); the host gets them (all but what its flooded input backlog drops).
    UDP, not TCP: the flood also fills the rx side, where a TCP stream's ACKs from the host
    would be lost among the flood whatever the tx side does."""
    _pvnet_only("keeps a share of a shared tx queue for the stack")
    if not (bed_xdp.has("virtqueue_resize") or bed_xdp.has("virtqueue_resize_done")):
        pytest.skip("needs a tx ring the flood can fill: this build cannot resize rings")
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev, count, port = bed.dut_if(), 2000, 5411
    (bed.g.workdir / UDP_TX.name).write_bytes(UDP_TX.read_bytes())
    frames = [bytes(f) for f in _flood(bed, 256)]
    maxima, _ = bed.ethtool_sections("-g")
    # The flood fills the rx side too: an ARP reply from the host would be lost in it and the
    # datagrams would wait for a neighbour that never resolves (and be dropped unseen).
    bed.g.sh(f"ethtool -L {dev} combined 1 && ethtool -G {dev} tx 64 && "
             f"ip neigh replace {HOST_V4} lladdr {_host_mac(bed)} dev {dev} nud permanent")
    try:
        before = bed.ethtool_stats()
        with x.attached(dev, "xdp_tx_swap"), Blaster(bed.net, bed.dut_tap, frames):
            _wait_delta(bed, before, "rx", "xdp_tx", 1000, timeout=60)
            bed.g.sh(f"python3 /mnt/work/{UDP_TX.name} {HOST_V4} {port} {count} 0.002 "
                     f">/tmp/fair.out 2>&1 &")
            tally = _host_udp_count(bed, port, count, 120)
            sender = json.loads(bed.g.sh("sleep 1; cat /tmp/fair.out").splitlines()[-1])
            moved = {c: _delta(bed, before, "tx", c)
                     for c in ("packets", "drops", "requeues", "xdp_tx", "xdp_tx_drops")}
    finally:
        bed.g.sh(f"ethtool -L {dev} combined 2; ethtool -G {dev} tx {maxima['TX']}; "
                 f"ip neigh del {HOST_V4} dev {dev}")
    assert moved["drops"] == 0, f"the driver dropped skbs of the stack: {moved}"
    assert sender == {"sent": count, "errors": 0}, sender
    assert moved["packets"] >= count, f"not every datagram reached the device: {moved}"
    assert moved["xdp_tx"] > 0, f"the reflector sent nothing meanwhile: {moved}"
    # Past the device, the host's own input backlog takes the reflected flood too and drops
    # some of everything (seen: 63 of 2000 on 7.3); the driver's part is proven above.
    got = tally.summary()
    assert got["bad"] == 0 and got["unique"] == got["received"] >= 0.9 * count, \
        f"datagrams lost on the way to the host: {got}, driver {moved}"


def test_pass_keeps_metadata_for_tc(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    """XDP_PASS with metadata (bpf_xdp_adjust_meta): every test frame reaches tc ingress with
    the metadata the XDP program wrote in front of it (__sk_buff->data_meta)."""
    _pvnet_only("virtio_net's XDP_PASS keeps metadata only in some buffer layouts")
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    bed.g.sh(f"tc qdisc replace dev {dev} clsact && "
             f"tc filter add dev {dev} ingress bpf direct-action obj {x.obj('tc_meta')} sec tc")
    try:
        tc_map = x.prog_map_id("tc_meta", "xdp_counts")

        def tc_counts() -> dict[str, int]:
            raw = parse_percpu_dump(bed.g.sh(f"bpftool -j map dump id {tc_map}"))
            return {name: raw.get(i, 0) for i, name in enumerate(COUNTERS)}

        with x.attached(dev, "xdp_meta"):
            send_frames(bed.net, bed.dut_tap, _flood(bed, 500))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                xdp, tc = x.counters(dev), tc_counts()
                if xdp["hit"] and tc["hit"] + tc["corrupt"] >= xdp["hit"]:
                    break
                time.sleep(0.5)
    finally:
        bed.g.sh(f"tc qdisc del dev {dev} clsact")
    assert xdp["hit"] > 0 and xdp["meta_fail"] == 0, xdp
    assert tc["corrupt"] == 0, f"test frames at tc without the XDP metadata: {tc}"
    assert tc["hit"] == xdp["hit"], (xdp, tc)


# ---------------------------------------------------------------- pass, adjust, attach cycles


def test_pass_with_adjust_head_tail_keeps_tcp_byte_exact(
        bed_xdp: TestBed, progs: BpfPrograms, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    with x.attached(dev, "xdp_pass_adjust"):
        start_both_ways(bed, tmp_path, 16 * MIB, tag="adj")()
        counts = x.counters(dev)
    print(f"xdp_pass_adjust counters: {counts}")
    record_property("xdp_pass_adjust", counts)
    assert counts["hit"] > 1000, counts
    assert counts["corrupt"] == 0, counts
    assert counts["head_fail"] == 0 and counts["head_ok"] == counts["hit"], counts
    # growing the tail may be refused (no tailroom); each frame tried it once
    assert counts["tail_ok"] + counts["tail_fail"] == counts["hit"], counts


# In two halves, memory measured after each.
CYCLES = 100
# Where freed pages wait, invisible to MemFree/MemAvailable, and must be added back:
# - the per-CPU page lists (/proc/zoneinfo pagesets `count`): up to `high` pages per CPU, 6928
#   (27 MiB) on the 6.1 guest; they filled by 16-22 MiB during the cycles in a probe run, which
#   was the whole drop in MemAvailable that earlier made this check fail at 100 cycles;
# - the rx page_pools (pvnet built with page_pool_frag): the pages posted to each ring plus up to
#   PVNET_RX_POOL_SIZE (driver/pvnet_rx.h) + PP_ALLOC_CACHE_SIZE (the kernel's) cached, which
#   pvnet's `rx_queue_<q>_pool_pages` gauge reports. Unbinding the DUT destroys its pools: then
#   every one of those pages must be back in the page allocator.
PAGE_KIB = 4
MEM_SLACK_MIB = 12  # memory gone for good after the cycles (probe runs: 0 to 1 MiB)
MEM_SLOPE_MIB = 6  # more gone after the second half than after the first


@dataclass
class _MemSample:
    meminfo: dict[str, int]  # KiB
    pcp_pages: int  # on the per-CPU free lists
    pool_pages: int  # in the DUT's rx page_pools; 0 without (no page_pool_frag, virtio_net, unbound)

    def lost_beyond_caches(self, base: _MemSample) -> int:
        """KiB gone from MemAvailable since `base` that neither the per-CPU lists nor the page_pools
        hold."""
        lost = base.meminfo["MemAvailable"] - self.meminfo["MemAvailable"]
        cached = self.pcp_pages - base.pcp_pages + self.pool_pages - base.pool_pages
        return lost - cached * PAGE_KIB


def _read_mem(bed: TestBed, pools: bool) -> _MemSample:
    out = bed.g.sh("sync; echo 3 > /proc/sys/vm/drop_caches; cat /proc/meminfo; echo @@ZONES; "
                   "cat /proc/zoneinfo")
    meminfo, _, zones = out.partition("@@ZONES")
    return _MemSample(
        {k: int(v.split()[0]) for k, v in parse_kv_lines(meminfo).items() if v},
        sum(int(m) for m in re.findall(r"^\s+count:\s+(\d+)\s*$", zones, re.M)),
        queue_sum(bed.ethtool_stats(), "rx", "pool_pages") if pools else 0)


def _mem_sample(bed: TestBed, pools: bool = True) -> _MemSample:
    """Memory once pages given back late (page_pool's release worker, RCU) are back: read until
    two reads 2 s apart agree within 1 MiB, at most 10 s. `pools`: read the DUT's pool gauge (it
    must be bound)."""
    deadline = time.monotonic() + 10
    last = _read_mem(bed, pools)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = _read_mem(bed, pools)
        if abs(now.lost_beyond_caches(last)) < 1024:
            return now
        last = now
    return last


def _wait_count(read: Callable[[], int], want: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while (got := read()) != want and time.monotonic() < deadline:
        time.sleep(0.5)
    return got


def _cycles_under_traffic(bed: TestBed, pins: tuple[str, str], cycles: int, tmp_path: Path) -> None:
    """`cycles` x (attach pins[0], replace it with pins[1], detach) by a guest script, while TCP
    transfers run both ways, round after round, each checked byte for byte."""
    dev, (a, b) = bed.dut_if(), pins
    step = "ip {opt}link set dev " + dev + " xdpdrv {what} || {{ echo loop-failed {name} $i; exit 1; }}"
    script = "\n".join([
        "echo loop-start $(date +%s.%N)",
        f"for i in $(seq {cycles}); do",
        step.format(opt="-force ", what=f"pinned {a}", name="attach"),
        step.format(opt="-force ", what=f"pinned {b}", name="replace"),
        step.format(opt="", what="off", name="detach"),
        "done",
        "echo loop-done $(date +%s.%N)",
    ])
    (bed.g.workdir / "xdp_cycles.sh").write_text(script + "\n")
    t0 = time.monotonic()
    bed.g.sh("bash /mnt/work/xdp_cycles.sh >/tmp/xdpcyc.log 2>&1 & echo $! > /tmp/xdpcyc.pid")
    rounds = 0
    while bed.g.run("grep -qE 'loop-(done|failed)' /tmp/xdpcyc.log", check=False).rc != 0:
        start_both_ways(bed, tmp_path, 8 * MIB, tag=f"cyc{rounds % 2}")()
        rounds += 1
        assert time.monotonic() - t0 < 900, f"{cycles} attach cycles did not finish in 15 minutes"
    bed.wait_job("xdpcyc", 60)
    log = bed.g.sh("cat /tmp/xdpcyc.log")
    assert "loop-done" in log, log
    took = float(log.split("loop-done ")[1].split()[0]) - float(log.split("loop-start ")[1].split()[0])
    print(f"{cycles} attach/replace/detach cycles in {took:.0f}s under {rounds} transfer rounds")


def test_attach_replace_detach_cycles_under_traffic(bed_xdp: TestBed, progs: BpfPrograms,
                                                       tmp_path: Path) -> None:
    """CYCLES x (attach xdp_pass_adjust, replace it with xdp_pass, detach) while TCP transfers run
    both ways; afterwards no program or map is left and no memory: with the DUT unbound (its
    page_pools destroyed), MemAvailable plus the free pages on the per-CPU lists is back to the
    baseline plus what the DUT's pools held then; and less is gone (net of the pools' gauge)
    after the second half of the cycles than the first plus MEM_SLOPE_MIB."""
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    prog_base, map_base = x.prog_count(), x.map_count()
    # Loaded and verified once, pinned; the loop attaches them by pin, so it measures the
    # driver's attach/replace/detach and not libbpf and the verifier under TCG.
    pins = ("/sys/fs/bpf/cyc_xdp_pass_adjust", "/sys/fs/bpf/cyc_xdp_pass")
    for prog, pin in zip(("xdp_pass_adjust", "xdp_pass"), pins, strict=True):
        bed.g.sh(f"rm -f {pin}; bpftool prog load {x.obj(prog)} {pin} type xdp")
    # the baseline after one round of traffic: socket and slab caches warm, as later
    start_both_ways(bed, tmp_path, 8 * MIB, tag="cycw")()
    base = _mem_sample(bed)
    halves = []
    for _ in range(2):
        _cycles_under_traffic(bed, pins, CYCLES // 2, tmp_path)
        halves.append(_mem_sample(bed))
    bed.g.sh(f"rm -f {' '.join(pins)}")
    assert x.prog_id(dev) is None
    assert _wait_count(x.prog_count, prog_base) == prog_base, "BPF programs leaked"
    assert _wait_count(x.map_count, map_base) == map_base, "BPF maps leaked"
    # the DUT's pools destroyed: every page they held at the baseline must be free again
    bed.g.sh(f"echo {bed.dut_virtio()} > /sys/bus/virtio/drivers/{DRIVER}/unbind")
    try:
        unbound = _mem_sample(bed, pools=False)
    finally:
        bed.bind_dut(DRIVER)
    gone = unbound.lost_beyond_caches(base) // 1024

    lost = [h.lost_beyond_caches(base) // 1024 for h in halves]
    pcp = [(h.pcp_pages - base.pcp_pages) * PAGE_KIB // 1024 for h in (*halves, unbound)]
    pools = [h.pool_pages for h in (base, *halves)]
    avail = [(base.meminfo["MemAvailable"] - h.meminfo["MemAvailable"]) // 1024
             for h in (*halves, unbound)]
    print(f"MiB after each half and with the DUT unbound: MemAvailable down {avail}, per-CPU lists "
          f"up {pcp}, gone beyond those and the pools {[*lost, gone]}; DUT pool pages at the "
          f"baseline and after each half: {pools}")
    assert gone < MEM_SLACK_MIB, f"{gone} MiB gone after {CYCLES} cycles and the DUT unbound"
    assert lost[1] - lost[0] < MEM_SLOPE_MIB, f"memory gone grew from {lost[0]} to {lost[1]} MiB"


# ---------------------------------------------------------------- refusals and multi-buffer


def test_refused_without_mergeable_buffers(bed_xdp: TestBed, progs: BpfPrograms) -> None:
    """pvnet runs XDP on mergeable buffers only; virtio_net also runs it on small buffers."""
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.bind_nic("small", DRIVER)
    bed.g.sh(f"ip link set {dev} up")
    try:
        res = x.attach(dev, "xdp_pass", check=False)
        if DRIVER != "pvnet":
            assert res.rc == 0, res.out
            x.detach(dev)
            return
        assert res.rc != 0, "XDP attached on a NIC without mergeable buffers"
        assert "mergeable" in res.out.lower(), res.out
        assert x.prog_id(dev) is None
    finally:
        # back down: this NIC shares the host's bridge with the DUT
        bed.g.sh(f"ip link set {dev} down")


def _jumbo_ping(bed: TestBed) -> tuple[bool, str]:
    """Pings of 9000-byte IP packets to the host until 3 replies came back (20 s at most: rx
    buffers posted before an attach may lack XDP's tailroom, and a driver may drop what lands
    in them; pvnet's counters are checked separately); on failure, where they got lost: what
    the host's tap and the DUT's counters saw meanwhile."""
    tap0, dut0 = bed.net.link_stats(bed.dut_tap), bed.ethtool_stats()
    res = bed.g.run(f"ping -c 3 -w 20 -i 0.05 -M do -s {JUMBO - 28} {HOST_V4}", check=False,
                    timeout=60)
    if res.rc == 0:
        return True, ""
    tap1, dut1 = bed.net.link_stats(bed.dut_tap), bed.ethtool_stats()
    tap = {k: tap1[k] - v for k, v in tap0.items() if k in tap1 and tap1[k] != v}
    dut = {k: dut1[k] - v for k, v in dut0.items() if k in dut1 and dut1[k] != v}
    neigh = bed.net.run(["ip", "neigh", "show", DUT_V4], check=False).strip()
    return False, (f"{res.out}\nhost tap {bed.dut_tap} moved (rx = from the guest): {tap}\n"
                   f"DUT ethtool -S moved: {dut}\nhost neighbour entry (DUT MAC "
                   f"{bed.dut_mac}): {neigh}")


def test_mtu_above_a_page_needs_a_frags_program(bed_xdp: TestBed, progs: BpfPrograms,
                                                tmp_path: Path) -> None:
    """At MTU 9000 a single-buffer program is refused; an xdp.frags one is accepted where
    multi-buffer XDP exists (pvnet: built with probe xdp_buff_frags; virtio_net: where its
    kernel accepts the program, else skipped with the kernel's message) and frames of 9000
    bytes then pass through it intact."""
    bed, x = bed_xdp, GuestXdp(bed_xdp.g, progs)
    dev = bed.dut_if()
    bed.g.sh(f"ip link set {dev} mtu {JUMBO}")
    try:
        ok, why = _jumbo_ping(bed)
        assert ok, f"9000-byte pings fail without any program: {why}"
        res = x.attach(dev, "xdp_pass", check=False)
        assert res.rc != 0, "single-buffer XDP attached at MTU 9000"
        assert re.search(r"mtu|frag", res.out, re.I), res.out
        assert x.prog_id(dev) is None
        if DRIVER == "pvnet" and not bed.has("xdp_buff_frags"):
            return  # built without multi-buffer XDP: the refusal above is all there is to see
        # Jumbo traffic first, so the rx rings hold buffers posted for it without XDP's
        # tailroom, fuller than a page laid out for XDP can hold: what lands in them after the
        # attach must pass all the same (checked below)
        start_both_ways(bed, tmp_path, 4 * MIB, tag="prefill")()
        res = x.attach(dev, "xdp_pass_adjust_frags", sec="xdp.frags", check=False)
        if DRIVER != "pvnet" and res.rc != 0 and re.search(r"mtu|frag", res.out, re.I):
            # no probe describes the in-tree driver: its refusal for the MTU is the answer (any
            # other failure falls through to the assertion)
            pytest.skip(f"the in-tree driver of this kernel has no multi-buffer XDP: {res.out}")
        assert res.rc == 0, res.out
        before = bed.ethtool_stats()
        try:
            ok, why = _jumbo_ping(bed)
            assert ok, f"9000-byte pings fail through xdp.frags: {why}\n{x.counters(dev)}"
            start_both_ways(bed, tmp_path, 4 * MIB, tag="jumbo")()
            counts = x.counters(dev)
        finally:
            x.detach(dev)
        print(f"xdp_pass_adjust_frags counters: {counts}")
        assert counts["hit"] > 100 and counts["corrupt"] == 0, counts
        if DRIVER == "pvnet":
            # frames in buffers posted before the attach (no tailroom) are not dropped either:
            # their first buffer is copied as far as a page holds it, the rest stays frags
            after = bed.ethtool_stats()
            lost = {n: queue_sum(after, "rx", n) - queue_sum(before, "rx", n)
                    for n in ("drops", "errors")}
            moved = {k: after[k] - v for k, v in before.items()
                     if k.startswith("rx_") and after.get(k, v) != v}
            assert lost == {"drops": 0, "errors": 0}, f"{lost}; rx counters moved: {moved}"
    finally:
        bed.g.sh(f"ip link set {dev} mtu 1500")
