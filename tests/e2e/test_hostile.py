"""pvnet against a hostile device: the DUT's data queues are served by a vhost-user back-end
the tests control (pvnet_harness.vhost_user, qemu/hostile.toml). Each test checks good traffic,
has the device misbehave in one named way (N bad frames or completions, or a held fault), then
checks good traffic again: no crash, no splat (the conftest reads dmesg after each test), and
the bad input counted (per-queue `errors`/`drops` of `ethtool -S`, rx_errors/rx_length_errors
of `ip -s -j link`). One guest serves the whole module; the back-end switches scenarios at run
time.

The scenarios are split over the kernel lines (`shard(i)`, see tests/e2e/conftest.py): the
parsing they exercise is pvnet's own, the same on every kernel. A debug lane runs them all,
under KASAN and lockdep."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pvnet_harness.guest import Profile, bad_dmesg_lines, load_profile
from pvnet_harness.testbed import DUT_V4, HOST_V4, TestBed, queue_sum
from pvnet_harness.traffic import make_payload, send_frames, tcp_send_file, udp_flood_frames
from pvnet_harness.util import CommandError
from pvnet_harness.vhost_user import CSUM_VARIANTS, F_HASH_REPORT, GSO_VARIANTS, Backend
from scapy.packet import Packet

pytestmark = pytest.mark.qemu

MIB = 1 << 20
FAULT_PORT = 7777  # the UDP port whose frames a scenario spoils (nothing listens on it)


@dataclass
class HostileBed(TestBed):
    """A TestBed whose DUT is on the vhost-user back-end (started after the netns and before
    QEMU, stopped by PID after QEMU)."""

    __test__ = False
    backend: Backend | None = None
    # the running test (set by _current_test), whose JUnit properties record() adds to: the
    # reliability summary of a run (matrix.reliability) sums them
    node: pytest.Item | None = None

    def record(self, name: str, value: object) -> None:
        if self.node is not None:
            self.node.user_properties.append((name, value))

    def before_guest(self) -> None:
        dut = self.profile.nic("dut")
        sock = self.workdir / "vhost-dut.sock"
        self.backend = Backend(self.net.name, sock, self.workdir / "vhost-dut.ctl", dut.tap,
                               self.workdir / "vhost-dut.log", queues=dut.queues,
                               hash_report=dut.props.get("hash") == "on").start()
        nics = tuple(replace(n, socket=str(sock)) if n.role == "dut" else n
                     for n in self.profile.nics)
        self.profile = Profile(self.profile.name, self.profile.machine, nics)

    def stop(self) -> None:
        if self.guest is not None:
            self.guest.stop()
            self.guest = None
        if self.backend is not None:
            self.backend.stop()
            self.backend = None
        super().stop()

    @property
    def dev(self) -> Backend:
        assert self.backend is not None, "test bed is not started"
        return self.backend


@pytest.fixture(scope="module")
def bed_hostile(make_bed: Callable[..., TestBed]) -> Iterator[HostileBed]:
    base = make_bed("", profile=load_profile("hostile"))
    hb = HostileBed(base.tree, base.pvnet_ko, profile=base.profile, accel=base.accel,
                    keep=base.keep, probes=base.probes)
    base.stop()  # only its workdir was made
    base.workdir.rmdir() if base.workdir.exists() else None
    with hb:
        yield hb


# ------------------------------------------------------------------ helpers


def ping_ok(bed: HostileBed, count: int = 3) -> None:
    bed.net.run(["ping", "-c", str(count), "-i", "0.2", "-W", "5", DUT_V4])


def tcp_h2g(bed: HostileBed, tmp_path: Path, size: int = 2 * MIB, port: int = 5301) -> None:
    """A byte-exact TCP transfer host -> guest through the DUT."""
    src = tmp_path / "h2g.bin"
    want = make_payload(src, size, b"hostile")
    bed.listen(port, "/tmp/hostile.bin", "hostile")
    bed.record("good_bytes", size)
    bed.record("good_bytes_lost", size)  # taken back below once it arrived intact
    sent = tcp_send_file(bed.net, DUT_V4, port, src, timeout=120)
    bed.wait_job("hostile", 120)
    assert sent == size
    assert bed.sha256("/tmp/hostile.bin") == want, "host->guest stream damaged"
    bed.record("good_bytes_lost", -size)
    bed.g.sh("rm -f /tmp/hostile.bin")
    src.unlink()


def good_traffic(bed: HostileBed, tmp_path: Path) -> None:
    """Ping and a byte-exact 2 MiB TCP transfer host -> guest through the DUT."""
    ping_ok(bed)
    tcp_h2g(bed, tmp_path)


def link_counters(bed: HostileBed) -> dict[str, int]:
    """The DUT's counters of `ip -s -s -j link` (rx errors with their length errors)."""
    data = json.loads(bed.g.sh(f"ip -s -s -j link show dev {bed.dut_if()}"))[0]["stats64"]
    rx, tx = data["rx"], data["tx"]
    return {"rx_packets": rx["packets"], "rx_errors": rx["errors"], "rx_dropped": rx["dropped"],
            "rx_length_errors": rx.get("length_errors", 0), "tx_errors": tx["errors"],
            "tx_packets": tx["packets"]}


def udp_noports(bed: HostileBed) -> int:
    """UDP datagrams the guest's IPv4 stack took in (to a closed port, or with errors)."""
    lines = [ln.split() for ln in bed.g.sh("grep '^Udp:' /proc/net/snmp").splitlines()]
    table = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:]), strict=True))
    return table["NoPorts"] + table["InErrors"] + table["InDatagrams"]


@dataclass(frozen=True)
class Snap:
    link: dict[str, int]
    ethtool: dict[str, int]
    udp: int


def snap(bed: HostileBed) -> Snap:
    time.sleep(0.5)
    return Snap(link_counters(bed), bed.ethtool_stats(), udp_noports(bed))


def moved(bed: HostileBed, before: Snap) -> dict[str, int]:
    """How counters moved since `before`: pvnet's per-queue errors/drops (ethtool -S), the
    netdev's rx_errors/rx_length_errors/rx_dropped, rx packets and UDP datagrams taken in."""
    now = snap(bed)
    e0, e1 = before.ethtool, now.ethtool
    out = {
        "queue_errors": queue_sum(e1, "rx", "errors") - queue_sum(e0, "rx", "errors"),
        "queue_drops": queue_sum(e1, "rx", "drops") - queue_sum(e0, "rx", "drops"),
        "udp": now.udp - before.udp,
        **{k: now.link[k] - before.link[k] for k in now.link},
    }
    for k in ("tx_timeouts", "device_resets", "queue_resets"):
        if k in e1:
            out[k] = e1[k] - e0.get(k, 0)
    return out


def fault_frames(bed: HostileBed, n: int) -> list[Packet]:
    return list(udp_flood_frames("02:00:00:00:00:01", bed.dut_mac, HOST_V4, DUT_V4, n,
                                 dport=FAULT_PORT, size=200))


def inject(bed: HostileBed, scenario: str, n: int, gap: float = 0.3, timeout: float = 30) -> int:
    """Arm `scenario` for n frames and send n UDP frames to FAULT_PORT from the host tap, one
    every `gap` seconds (each bad frame is handled before the next arrives); wait until the
    back-end has spoiled them all. Returns what it counted as injected."""
    before = bed.dev.stats()["injected"].get(scenario, 0)
    bed.dev.arm(scenario, count=n, udp_port=FAULT_PORT)
    for frame in fault_frames(bed, n):
        send_frames(bed.net, bed.dut_tap, [frame])
        time.sleep(gap)
    deadline = time.monotonic() + timeout
    while True:
        st = bed.dev.stats()
        got = int(st["injected"].get(scenario, 0)) - before
        if got >= n or (scenario == "rx_burst_fill" and got > 0):
            bed.record("fault_scenario", scenario)
            bed.record("faults_injected", got)
            return got
        if time.monotonic() > deadline:
            bed.dev.disarm()
            raise AssertionError(f"{scenario}: the back-end injected {got} of {n}: {st}")
        time.sleep(0.2)


def rx_scenario(bed: HostileBed, tmp_path: Path, scenario: str, n: int) -> dict[str, int]:
    """Good traffic, n bad frames, good traffic; returns the counters' moves over the bad
    frames (read before the good traffic after them)."""
    good_traffic(bed, tmp_path)
    before = snap(bed)
    injected = inject(bed, scenario, n)
    time.sleep(1)
    got = moved(bed, before) | {"injected": injected}
    print(f"{scenario}: {got}")
    good_traffic(bed, tmp_path)
    return got


def expected_watchdog_only(bed: HostileBed) -> list[str]:
    """Bad dmesg lines other than the tx watchdog's own report (which a stuck queue must
    cause: it is the kernel telling the driver; before 6.2 it comes as a WARN_ONCE, a
    "WARNING: ... dev_watchdog" line with a backtrace); reading clears them for the
    conftest."""
    bad = bad_dmesg_lines(bed.g.new_dmesg())
    return [ln for ln in bad if "NETDEV WATCHDOG" not in ln
            and not ("WARNING:" in ln and "dev_watchdog" in ln)]


@pytest.fixture(autouse=True)
def _current_test(request: pytest.FixtureRequest) -> Iterator[None]:
    if "bed_hostile" not in request.fixturenames:
        yield
        return
    bed: HostileBed = request.getfixturevalue("bed_hostile")
    bed.node = request.node
    yield
    bed.node = None


@pytest.fixture(autouse=True)
def _dut_recovered(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, a DUT that no longer answers is rebound (unbind/bind: a device reset),
    so that one test's broken queue does not fail the next; the test itself has failed."""
    yield
    if "bed_hostile" not in request.fixturenames:
        return
    bed: HostileBed = request.getfixturevalue("bed_hostile")
    if bed.guest is None or bed.guest.child is None or not bed.guest.child.isalive():
        return
    bed.dev.disarm()
    try:
        ping_ok(bed, 2)
    except CommandError:
        print("DUT not answering after the test: rebinding pvnet")
        bed.g.run(f"echo {bed.dut_virtio()} > /sys/bus/virtio/drivers/pvnet/unbind", check=False)
        bed.bind_dut("pvnet")
        ping_ok(bed, 2)


# ------------------------------------------------------------------ tests


def test_dut_is_pvnet_on_the_vhost_user_backend(bed_hostile: HostileBed, tmp_path: Path) -> None:
    bed = bed_hostile
    assert bed.dut_driver() == "pvnet"
    st0 = bed.dev.stats()
    good_traffic(bed, tmp_path)
    st1 = bed.dev.stats()
    feats = int(st1["features"])
    assert st1["rx_bytes"] - st0["rx_bytes"] > 2 * MIB, (st0, st1)
    assert st1["tx_frames"] - st0["tx_frames"] > 10, (st0, st1)
    assert feats >> F_HASH_REPORT & 1, "HASH_REPORT not negotiated through vhost-user"
    assert st1["hdr_len"] == 20
    print(f"back-end: {st1}")


@pytest.mark.shard(0)
def test_drops_frame_when_used_len_exceeds_buffer(bed_hostile: HostileBed, tmp_path: Path) -> None:
    n = 5
    got = rx_scenario(bed_hostile, tmp_path, "rx_used_len_overflow", n)
    assert got["queue_errors"] >= n and got["rx_length_errors"] >= n, got
    assert got["udp"] == 0, f"a frame with a bad used length reached UDP: {got}"


@pytest.mark.shard(1)
def test_drops_frame_when_num_buffers_beyond_ring(bed_hostile: HostileBed, tmp_path: Path) -> None:
    n = 5
    got = rx_scenario(bed_hostile, tmp_path, "rx_num_buffers_beyond_ring", n)
    assert got["queue_errors"] >= n and got["rx_length_errors"] >= n, got
    assert got["udp"] == 0, got


@pytest.mark.shard(2)
def test_keeps_following_frames_when_num_buffers_beyond_ring(bed_hostile: HostileBed,
                                                            tmp_path: Path) -> None:
    """A num_buffers no ring can satisfy, then good frames in the same batch (one
    interrupt): the bad packet is dropped alone, its successors are not taken for its
    missing buffers."""
    bed = bed_hostile
    good_traffic(bed, tmp_path)
    follow = 5
    before = snap(bed)
    inj0 = bed.dev.stats()["injected"].get("rx_num_buffers_beyond_ring", 0)
    bed.dev.arm("rx_num_buffers_beyond_ring", count=1, udp_port=FAULT_PORT, batch=1 + follow)
    bed.record("fault_scenario", "rx_num_buffers_beyond_ring+good")
    bed.record("faults_injected", 1)
    send_frames(bed.net, bed.dut_tap, fault_frames(bed, 1 + follow))
    time.sleep(2)
    st = bed.dev.stats()
    got = moved(bed, before)
    print(f"num_buffers beyond the ring + {follow} good frames: {got}")
    assert st["injected"]["rx_num_buffers_beyond_ring"] - inj0 == 1, st
    assert got["queue_errors"] >= 1 and got["rx_length_errors"] >= 1, got
    assert got["udp"] == follow, f"good frames after the bad one lost: {got}"
    good_traffic(bed, tmp_path)


@pytest.mark.shard(3)
def test_drops_frame_when_num_buffers_total_over_64k(bed_hostile: HostileBed,
                                                     tmp_path: Path) -> None:
    n = 3
    got = rx_scenario(bed_hostile, tmp_path, "rx_num_buffers_over_64k", n)
    assert got["queue_errors"] + got["queue_drops"] >= n, got
    assert got["rx_errors"] + got["rx_dropped"] >= n, got
    assert got["udp"] == 0, got


@pytest.mark.shard(0)
def test_drops_frame_when_gso_fields_inconsistent(bed_hostile: HostileBed, tmp_path: Path) -> None:
    # GSO_VARIANTS in turn: TCPv4 GSO with gso_size 0, an undefined gso_type (both invalid by
    # the spec), and TCPv6 GSO on an IPv4 UDP frame with hdr_len past its end (a DODGY GSO skb
    # the stack must validate, if the driver passes it)
    n = 2 * len(GSO_VARIANTS)
    got = rx_scenario(bed_hostile, tmp_path, "rx_gso_inconsistent", n)
    invalid = 2 * 2
    assert got["queue_errors"] + got["queue_drops"] >= invalid, got
    assert got["rx_errors"] + got["rx_dropped"] >= invalid, got


@pytest.mark.shard(1)
def test_drops_frame_when_csum_offsets_past_end(bed_hostile: HostileBed, tmp_path: Path) -> None:
    n = 2 * len(CSUM_VARIANTS)
    got = rx_scenario(bed_hostile, tmp_path, "rx_csum_past_end", n)
    assert got["queue_errors"] + got["queue_drops"] >= n, got
    assert got["rx_errors"] + got["rx_dropped"] >= n, got
    assert got["udp"] == 0, got


@pytest.mark.shard(2)
def test_ignores_hash_when_hash_report_out_of_range(bed_hostile: HostileBed,
                                                    tmp_path: Path) -> None:
    """An unknown hash type is the device's bug, not the packet's: the frame is delivered
    (without a hash) or counted, never taken as a valid L4 hash."""
    n = 5
    got = rx_scenario(bed_hostile, tmp_path, "rx_hash_report_out_of_range", n)
    assert got["udp"] + got["queue_errors"] + got["queue_drops"] >= n, got


@pytest.mark.shard(3)
def test_delivers_every_frame_when_burst_fills_rx_ring(bed_hostile: HostileBed,
                                                       tmp_path: Path) -> None:
    got = rx_scenario(bed_hostile, tmp_path, "rx_burst_fill", 1)
    burst = got["injected"]
    assert burst >= 64, f"the back-end filled only {burst} buffers: {got}"
    assert got["queue_errors"] == 0 and got["rx_errors"] == 0, got
    assert got["rx_packets"] >= burst, got
    assert got["udp"] + got["queue_drops"] >= burst, got


def _guest_flood(bed: HostileBed, secs: int) -> None:
    """Background UDP from the guest to the host (fills the tx ring when nothing completes)."""
    bed.g.sh(f"timeout {secs} socat -u OPEN:/dev/zero UDP-SENDTO:{HOST_V4}:9 "
             f">/dev/null 2>&1 &")


def _wait_recovered(bed: HostileBed, deadline_s: float) -> float | None:
    """Seconds until a ping host -> DUT answers again, None if not within deadline_s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        try:
            bed.net.run(["ping", "-c", "1", "-W", "1", DUT_V4])
            return time.monotonic() - t0
        except CommandError:
            time.sleep(1)
    return None


@dataclass(frozen=True)
class HeldFault:
    """What a held fault (tx_stuck, irq_stuck) left: seconds until the DUT answered again
    (None: not within 40 s), the counters' moves, the back-end's stats before and after, and
    bad dmesg lines other than the watchdog's own."""

    took: float | None
    got: dict[str, int]
    st0: dict[str, Any]
    st1: dict[str, Any]
    other: list[str]


def held_fault(bed: HostileBed, tmp_path: Path, scenario: str) -> HeldFault:
    """Good traffic, then `scenario` held (until a ring stop, i.e. a reset) while the guest
    floods UDP to the host; waits for the DUT to answer again, then disarms whatever
    happened, so the device behaves again."""
    good_traffic(bed, tmp_path)
    before = snap(bed)
    st0 = bed.dev.stats()
    bed.dev.arm(scenario, hold_s=60)
    bed.record("fault_scenario", scenario)
    bed.record("faults_injected", 1)
    _guest_flood(bed, 4)
    took = _wait_recovered(bed, 40)
    st1 = bed.dev.stats()
    bed.dev.disarm()
    res = HeldFault(took, moved(bed, before), st0, st1, expected_watchdog_only(bed))
    print(f"{scenario}: recovered after {took} s; {res.got}; back-end before {st0}, "
          f"after {st1}")
    return res


@pytest.mark.shard(0)
def test_resets_device_when_tx_completions_never_come(bed_hostile: HostileBed,
                                                      tmp_path: Path) -> None:
    """tx stuck: the device takes no tx buffer until a ring is reset. The watchdog fires
    (5 s), pvnet resets the queue or device, the device comes back, traffic is byte-exact."""
    r = held_fault(bed_hostile, tmp_path, "tx_stuck")
    assert not r.other, "\n".join(r.other)
    assert r.got.get("tx_timeouts", r.got["tx_errors"]) >= 1, f"no tx timeout counted: {r.got}"
    assert r.took is not None, f"no recovery within 40 s of a stuck tx queue: {r.got}, {r.st1}"
    assert r.st1["held_cleared_by_reset"] > r.st0["held_cleared_by_reset"], r.st1
    good_traffic(bed_hostile, tmp_path)


@pytest.mark.shard(1)
def test_recovers_when_interrupts_never_come(bed_hostile: HostileBed, tmp_path: Path) -> None:
    """No call eventfd signalled until a ring is reset: tx completions pile up unseen, the
    watchdog fires, pvnet resets and traffic resumes."""
    r = held_fault(bed_hostile, tmp_path, "irq_stuck")
    assert not r.other, "\n".join(r.other)
    assert r.took is not None, f"no recovery within 40 s without interrupts: {r.got}, {r.st1}"
    # the device was un-wedged by a ring stop (a reset), not by the back-end's hold expiring
    assert r.st1["held_cleared_by_reset"] > r.st0["held_cleared_by_reset"], r.st1
    good_traffic(bed_hostile, tmp_path)


@pytest.mark.shard(2)
def test_recovers_when_used_id_repeated(bed_hostile: HostileBed, tmp_path: Path) -> None:
    """A completion for a buffer already completed: the virtio core marks the rx vq broken
    ("id N is not a head"); pvnet must reset the device and carry traffic again."""
    got = _broken_vq_scenario(bed_hostile, tmp_path, "rx_used_id_repeated")
    assert got["recovered_s"] is not None, _no_recovery(got)


@pytest.mark.shard(3)
def test_recovers_when_used_id_out_of_range(bed_hostile: HostileBed, tmp_path: Path) -> None:
    """A used id beyond the ring: the virtio core marks the rx vq broken ("id N out of
    range"); pvnet must reset the device and carry traffic again."""
    got = _broken_vq_scenario(bed_hostile, tmp_path, "rx_used_id_out_of_range")
    assert got["recovered_s"] is not None, _no_recovery(got)


def _no_recovery(got: dict[str, Any]) -> str:
    dmesg = got.pop("dmesg", "")
    return f"no traffic within 30 s after the bad completion; counters moved: {got}\n" \
           f"guest dmesg tail:\n{dmesg}"


def _broken_vq_scenario(bed: HostileBed, tmp_path: Path, scenario: str) -> dict[str, Any]:
    good_traffic(bed, tmp_path)
    before = snap(bed)
    injected = inject(bed, scenario, 1)
    took = _wait_recovered(bed, 30)
    dmesg = bed.g.run("dmesg | tail -n 20", check=False).out
    got: dict[str, Any] = moved(bed, before) | {"injected": injected, "recovered_s": took}
    print(f"{scenario}: {got}\n{dmesg}")
    if took is not None:
        good_traffic(bed, tmp_path)
    else:
        got["dmesg"] = dmesg
    return got
