"""Same-boot A/B benchmark: pvnet against the in-tree virtio_net on the same DUT NIC.

One guest boot; between rounds the DUT moves between the two drivers through the virtio bus's
sysfs unbind/bind, so both run on the same kernel, QEMU, device options and host. Rounds are
interleaved (pvnet, virtio_net, pvnet, virtio_net...). Each round measures, per driver:

- TCP stream guest->host and host->guest, 1 and 4 streams (iperf3, receiver Mbit/s),
- guest CPU seconds per GB moved around each TCP run (/proc/stat, user+system+irq+softirq),
- UDP 64-byte frames (18-byte payload) per second, each direction, counted by the receiver
  (iperf3 -u -b 0),
- TCP request/response latency p50/p99 (sockperf ping-pong, full round trip, 64-byte
  messages; the client runs on the host so the host clock times it),
- XDP_DROP and XDP_TX packets per second: the host floods 64-byte UDP frames into the DUT's
  tap as fast as it can while tests/bpf/xdp_drop.o or xdp_tx_swap.o is attached in driver
  mode; the rate is taken over the flood's steady middle: the driver's rx xdp_drops counter
  (DROP) or the frames that come back to the host's tap (TX), per second.

Output: bench.json (every round + environment + summary), bench.md (table), bench.png (plot).
This is a measurement, never a test: nothing here asserts on a number.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import REPO_ROOT, read_version
from .bpf import BpfBuildError, build_all
from .demo import iperf_mbps
from .guest import GuestError, Profile, choose_accel, load_profile, vhost_usable
from .netlab import NetLab
from .testbed import DUT_V4, HOST_V4, TestBed, parse_ethtool_sections, queue_sum
from .traffic import Blaster, FloodCatcher, udp_flood_frames
from .util import CommandError, progress, run
from .xdp import XDP_TEST_PORT, GuestXdp

DRIVERS = ("pvnet", "virtio_net")
IPERF_PORT = 5201
SOCKPERF_PORT = 11111
UDP_PAYLOAD = 18  # 14 Ethernet + 20 IPv4 + 8 UDP + 18 = 60 bytes, 64 with the FCS
RR_MSG = 64
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    higher_is_better: bool


def _tcp_metrics() -> list[Metric]:
    out: list[Metric] = []
    for direction, text in (("tx", "guest->host"), ("rx", "host->guest")):
        for streams in (1, 4):
            out.append(Metric(f"tcp_{direction}_{streams}", f"TCP {text}, {streams} stream"
                              f"{'s' if streams > 1 else ''}", "Mbit/s", True))
    return out


def _cpu_metrics() -> list[Metric]:
    return [Metric(f"cpu_{m.name}", f"guest CPU, {m.label}", "CPU s/GB", False)
            for m in _tcp_metrics()]


METRICS: tuple[Metric, ...] = (
    *_tcp_metrics(),
    Metric("udp_tx_pps", "UDP 64 B guest->host", "pkt/s", True),
    Metric("udp_rx_pps", "UDP 64 B host->guest", "pkt/s", True),
    Metric("rr_p50_us", "TCP RR latency p50", "us", False),
    Metric("rr_p99_us", "TCP RR latency p99", "us", False),
    Metric("xdp_drop_pps", "XDP_DROP 64 B host->guest", "pkt/s", True),
    Metric("xdp_tx_pps", "XDP_TX 64 B reflected to the host", "pkt/s", True),
    *_cpu_metrics(),
)
XDP_PROGS = {"xdp_drop_pps": "xdp_drop", "xdp_tx_pps": "xdp_tx_swap"}
XDP_WARMUP = 1.0  # seconds of flood before the rate is taken


# ---------------------------------------------------------------- parsers


def iperf_bytes(report: dict[str, Any]) -> int:
    """Bytes the receiver got in an iperf3 -J run."""
    end = report["end"]
    key = "sum_received" if "sum_received" in end else "sum"
    return int(end[key]["bytes"])


def iperf_udp_pps(report: dict[str, Any]) -> float:
    """Datagrams per second the receiver got in an iperf3 -u -J run (sent minus lost)."""
    if "error" in report:
        raise ValueError(f"iperf3: {report['error']}")
    end = report["end"]
    s = end["sum_received"] if "sum_received" in end else end["sum"]
    seconds = float(s["seconds"])
    if seconds <= 0:
        raise ValueError("iperf3 UDP run of zero seconds")
    return (int(s["packets"]) - int(s["lost_packets"])) / seconds


def parse_iperf_json(text: str) -> dict[str, Any]:
    """iperf3 -J output (the console may add noise before the object) -> dict; raises on error."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no iperf3 JSON in: {text[-500:]!r}")
    report: dict[str, Any] = json.loads(text[start:])
    if "error" in report:
        raise ValueError(f"iperf3: {report['error']}")
    return report


def split_stat_wrapped(out: str) -> tuple[dict[str, Any], str, str]:
    """Output of `head -1 /proc/stat && iperf3 -J ... && head -1 /proc/stat` ->
    (iperf3 report, cpu line before, cpu line after)."""
    lines = out.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith("cpu ") or not lines[-1].startswith("cpu "):
        raise ValueError(f"expected /proc/stat, iperf3 JSON, /proc/stat: {out[-500:]!r}")
    return parse_iperf_json("\n".join(lines[1:-1])), lines[0], lines[-1]


def parse_sockperf(text: str) -> dict[str, float]:
    """sockperf ping-pong output -> {"p50": .., "p99": .., "avg": .., "min": .., "max": ..} (us)."""
    text = ANSI.sub("", text)
    out: dict[str, float] = {}
    for m in re.finditer(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", text):
        pct = float(m.group(1))
        out[f"p{pct:g}"] = float(m.group(2))
    for key, pat in (("min", r"<MIN> observation\s*=\s*([\d.]+)"),
                     ("max", r"<MAX> observation\s*=\s*([\d.]+)"),
                     ("avg", r"avg-(?:rtt|latency)=([\d.]+)")):
        found = re.search(pat, text)
        if found:
            out[key] = float(found.group(1))
    if "p50" not in out or "p99" not in out:
        raise ValueError(f"no sockperf percentiles in: {text[-800:]!r}")
    return out


def cpu_busy_ticks(stat_line: str) -> int:
    """The aggregate `cpu` line of /proc/stat -> user+system+irq+softirq ticks (all CPUs)."""
    fields = stat_line.split()
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        raise ValueError(f"not the aggregate cpu line of /proc/stat: {stat_line!r}")
    user, _nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return user + system + irq + softirq


def cpu_seconds_per_gb(before: str, after: str, clk_tck: int, nbytes: int) -> float:
    if nbytes <= 0:
        raise ValueError("no bytes moved")
    seconds = (cpu_busy_ticks(after) - cpu_busy_ticks(before)) / clk_tck
    return seconds / (nbytes / 1e9)


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Spread:
    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        q1 = q3 = v[0]
    else:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return Spread(len(v), statistics.median(v), v[0], v[-1], q1, q3)


@dataclass(frozen=True)
class MetricSummary:
    metric: Metric
    pvnet: Spread | None
    virtio_net: Spread | None

    @property
    def ratio(self) -> float | None:
        """pvnet median / virtio_net median."""
        if self.pvnet is None or self.virtio_net is None or self.virtio_net.median == 0:
            return None
        return self.pvnet.median / self.virtio_net.median

    @property
    def better(self) -> str:
        """Which driver's median is better for this metric's direction ("tie" when equal)."""
        if self.pvnet is None or self.virtio_net is None:
            return "n/a"
        a, b = self.pvnet.median, self.virtio_net.median
        if a == b:
            return "tie"
        return "pvnet" if (a > b) == self.metric.higher_is_better else "virtio_net"

    @property
    def overlap(self) -> bool:
        """Whether the two drivers' min-max ranges overlap (the difference is within noise)."""
        if self.pvnet is None or self.virtio_net is None:
            return False
        return self.pvnet.min <= self.virtio_net.max and self.virtio_net.min <= self.pvnet.max

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric.name,
            "label": self.metric.label,
            "unit": self.metric.unit,
            "better_is": "higher" if self.metric.higher_is_better else "lower",
            "pvnet": asdict(self.pvnet) if self.pvnet else None,
            "virtio_net": asdict(self.virtio_net) if self.virtio_net else None,
            "ratio_pvnet_over_virtio_net": self.ratio,
            "better": self.better,
            "ranges_overlap": self.overlap,
        }


@dataclass(frozen=True)
class Sample:
    driver: str
    metric: str
    value: float
    round: int
    start: str
    end: str


def summarize(samples: Iterable[Sample], metrics: Sequence[Metric] = METRICS) -> list[MetricSummary]:
    by: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        by.setdefault((s.metric, s.driver), []).append(s.value)
    return [MetricSummary(m, spread(by.get((m.name, "pvnet"), [])),
                          spread(by.get((m.name, "virtio_net"), []))) for m in metrics]


# ---------------------------------------------------------------- rendering


def fmt(value: float | None) -> str:
    """Numbers for the table: 3 significant digits, thousands without exponent."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _range(s: Spread | None) -> str:
    return "n/a" if s is None else f"{fmt(s.min)} .. {fmt(s.max)}"


def render_markdown(summary: Sequence[MetricSummary], env: dict[str, Any]) -> str:
    head = (
        f"pvnet vs virtio_net, same boot, {env.get('rounds')} interleaved rounds x "
        f"{env.get('duration_s')} s per run - {env.get('date')}, {env.get('host_cpu')} "
        f"({env.get('host_cores')} cores), guest kernel {env.get('guest_kernel')}, "
        f"accelerator {env.get('accelerator_label')}, QEMU {env.get('qemu_version')}, "
        f"pvnet {env.get('pvnet_git')}, profile {env.get('profile')}, "
        f"DUT channels {env.get('dut_channels')}"
    )
    lines = [
        head,
        "",
        "| metric | unit | better is | pvnet median | virtio_net median | pvnet/virtio_net | better "
        "| pvnet min..max | virtio_net min..max |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for s in summary:
        ratio = "n/a" if s.ratio is None else f"{s.ratio:.2f}"
        better = s.better + (" (ranges overlap)" if s.overlap and s.better != "tie" else "")
        lines.append(
            f"| {s.metric.label} | {s.metric.unit} | "
            f"{'higher' if s.metric.higher_is_better else 'lower'} | "
            f"{fmt(s.pvnet.median if s.pvnet else None)} | "
            f"{fmt(s.virtio_net.median if s.virtio_net else None)} | {ratio} | {better} | "
            f"{_range(s.pvnet)} | {_range(s.virtio_net)} |"
        )
    return "\n".join(lines) + "\n"


def render_json(samples: Sequence[Sample], summary: Sequence[MetricSummary], env: dict[str, Any],
                failures: Sequence[dict[str, Any]] = (), dmesg_problems: Sequence[str] = ()) -> str:
    doc = {
        "schema": 1,
        "environment": env,
        "metrics": [asdict(m) for m in METRICS],
        "rounds": [asdict(s) for s in samples],
        "summary": [s.to_json() for s in summary],
        "failures": list(failures),
        "dmesg_problems": list(dmesg_problems),
    }
    return json.dumps(doc, indent=2) + "\n"


def write_plot(samples: Sequence[Sample], path: Path, metrics: Sequence[Metric] = METRICS,
               title: str = "") -> Path:
    """One panel per metric: every round's value per driver (Agg backend, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    style = {"pvnet": ("o-", "tab:blue"), "virtio_net": ("s--", "tab:orange")}
    for i, m in enumerate(metrics):
        ax = axes[i // cols][i % cols]
        for drv in DRIVERS:
            pts = sorted((s.round, s.value) for s in samples if s.metric == m.name and s.driver == drv)
            if pts:
                fmt_, color = style[drv]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], fmt_, color=color, label=drv)
        arrow = "higher is better" if m.higher_is_better else "lower is better"
        ax.set_title(f"{m.label}\n[{m.unit}, {arrow}]", fontsize=8)
        ax.set_xlabel("round", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for j in range(len(metrics), rows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95 if title else 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- environment


def _first_line(argv: list[str]) -> str:
    try:
        return run(argv, check=False).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def host_cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def accelerator_label(accel: str, vhost: bool) -> str:
    if accel == "kvm":
        return "KVM+vhost" if vhost else "KVM (no vhost)"
    return "TCG (no vhost)"


def host_environment(accel: str, profile: Profile) -> dict[str, Any]:
    vhost = vhost_usable(accel)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "host_cpu": host_cpu_model(),
        "host_cores": os.cpu_count(),
        "host_kernel": platform.release(),
        "accelerator": accel,
        "vhost": vhost,
        "accelerator_label": accelerator_label(accel, vhost),
        "qemu_version": _first_line(["qemu-system-x86_64", "--version"]).removeprefix(
            "QEMU emulator version ").strip(),
        "iperf3": _first_line(["iperf3", "--version"]),
        "sockperf": ANSI.sub("", _first_line(["sockperf", "--version"])),
        "pvnet_version": read_version(),
        "pvnet_git": _first_line(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty",
                                  "--tags"]),
        "profile": profile.name,
        "guest_cpus": profile.machine.get("cpus"),
        "dut_queues": profile.nic("dut").queues,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def failure(driver: str, rnd: int, what: str, err: BaseException, start: str = "") -> dict[str, Any]:
    """A failed measurement step as the JSON records it (the bench goes on), with a progress line."""
    progress(f"  {driver or 'bench'} round {rnd} {what}: FAILED {str(err).splitlines()[0]}")
    return {"driver": driver, "round": rnd, "run": what, "start": start or _now(), "end": _now(),
            "error": str(err)[-3000:]}


# ---------------------------------------------------------------- measuring


@contextmanager
def iperf_server(lab: NetLab, port: int = IPERF_PORT) -> Iterator[subprocess.Popen[bytes]]:
    """A persistent iperf3 server on the host bridge address inside the harness netns."""
    srv = subprocess.Popen(lab.exec_argv(["iperf3", "-s", "-p", str(port), "-B", HOST_V4]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield srv
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


@dataclass
class BenchRun:
    """Drives the measurements on a started test bed."""

    bed: TestBed
    duration: int
    samples: list[Sample] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    clk_tck: int = 100
    xdp: GuestXdp | None = None  # None: the XDP programs did not build, no XDP metrics

    def guest_iperf(self, args: str) -> tuple[dict[str, Any], str, str]:
        """iperf3 client in the guest -> (its JSON report, /proc/stat cpu line before, after);
        the two /proc/stat reads sit in the same guest command, right around iperf3."""
        out = self.bed.g.sh(f"head -1 /proc/stat && iperf3 -J -i 0 -c {HOST_V4} -p {IPERF_PORT} "
                            f"-t {self.duration} {args} && head -1 /proc/stat",
                            timeout=self.duration + 90)
        return split_stat_wrapped(out)

    def tcp(self, reverse: bool, streams: int) -> tuple[float, float]:
        """One TCP stream run -> (Mbit/s at the receiver, guest CPU s per GB)."""
        report, before, after = self.guest_iperf(f"-P {streams}" + (" -R" if reverse else ""))
        return iperf_mbps(report), cpu_seconds_per_gb(before, after, self.clk_tck,
                                                       iperf_bytes(report))

    def udp(self, reverse: bool) -> float:
        report, _, _ = self.guest_iperf(f"-u -b 0 -l {UDP_PAYLOAD}" + (" -R" if reverse else ""))
        return iperf_udp_pps(report)

    def rr(self) -> dict[str, float]:
        """TCP ping-pong: sockperf server on the DUT, client on the host bridge (host clock)."""
        g = self.bed.g
        g.sh(f"sockperf sr --tcp -i {DUT_V4} -p {SOCKPERF_PORT} >/tmp/sockperf.log 2>&1 & "
             f"echo $! > /tmp/sockperf.pid")
        try:
            # a subshell: `exit` must not end the guest's console shell
            g.sh(f"( for i in $(seq 100); do ss -Hltn 'sport = :{SOCKPERF_PORT}' | grep -q . && "
                 f"exit 0; sleep 0.1; done; exit 1 )")
            out = run(self.bed.net.exec_argv(
                ["sockperf", "ping-pong", "--tcp", "-i", DUT_V4, "-p", str(SOCKPERF_PORT),
                 "-t", str(self.duration), "-m", str(RR_MSG), "--full-rtt"]),
                timeout=self.duration + 60).stdout
        finally:
            g.run("kill $(cat /tmp/sockperf.pid) 2>/dev/null; wait $(cat /tmp/sockperf.pid) "
                  "2>/dev/null; true", check=False)
        return parse_sockperf(out)

    def record(self, driver: str, rnd: int, what: str,
               measure: Callable[[], dict[str, float]]) -> None:
        """Run one measurement; a failure is recorded (and the bench goes on), not raised."""
        start = _now()
        try:
            values = measure()
        except (GuestError, CommandError, ValueError, KeyError, subprocess.TimeoutExpired) as err:
            self.failures.append(failure(driver, rnd, what, err, start))
            return
        end = _now()
        for metric, value in values.items():
            self.samples.append(Sample(driver, metric, value, rnd, start, end))
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in values.items())
        progress(f"  {driver} round {rnd}: {shown}")

    def round(self, driver: str, rnd: int) -> None:
        for direction, reverse in (("tx", False), ("rx", True)):
            for streams in (1, 4):
                name = f"tcp_{direction}_{streams}"

                def tcp_run(reverse: bool = reverse, streams: int = streams,
                            name: str = name) -> dict[str, float]:
                    mbps, cpu = self.tcp(reverse, streams)
                    return {name: mbps, f"cpu_{name}": cpu}

                self.record(driver, rnd, name, tcp_run)
        for direction, reverse in (("tx", False), ("rx", True)):

            def udp_run(reverse: bool = reverse, d: str = direction) -> dict[str, float]:
                return {f"udp_{d}_pps": self.udp(reverse)}

            self.record(driver, rnd, f"udp_{direction}", udp_run)

        def rr_run() -> dict[str, float]:
            lat = self.rr()
            return {"rr_p50_us": lat["p50"], "rr_p99_us": lat["p99"]}

        self.record(driver, rnd, "rr", rr_run)
        if self.xdp is None:
            return
        for metric in XDP_PROGS:

            def xdp_run(metric: str = metric) -> dict[str, float]:
                return {metric: self.xdp_pps(metric)}

            self.record(driver, rnd, metric.removesuffix("_pps"), xdp_run)

    def xdp_pps(self, metric: str) -> float:
        """Flood the DUT with 64-byte UDP frames to the XDP test port while the metric's
        program is attached; packets per second over `duration` s of the flood's middle."""
        assert self.xdp is not None
        bed, prog = self.bed, XDP_PROGS[metric]
        dev = bed.dut_if()
        host_mac = bed.net.run(["cat", "/sys/class/net/br0/address"]).strip()
        frames = [bytes(f) for f in udp_flood_frames(host_mac, bed.dut_mac, HOST_V4, DUT_V4, 256,
                                                     dport=XDP_TEST_PORT, size=UDP_PAYLOAD)]
        with self.xdp.attached(dev, prog), \
                FloodCatcher(bed.net, bed.dut_tap, XDP_TEST_PORT, len(frames)) as back:

            def count() -> tuple[float, float]:
                """(frames so far, when): the DUT's drop counter (read in the guest, timed
                at the middle of the read) or the frames back at the tap."""
                if prog == "xdp_tx_swap":
                    return back.tally.received, time.monotonic()
                t0 = time.monotonic()
                drops = queue_sum(bed.ethtool_stats(), "rx", "xdp_drops")
                return drops, (t0 + time.monotonic()) / 2

            with Blaster(bed.net, bed.dut_tap, frames):
                time.sleep(XDP_WARMUP)
                n1, t1 = count()
                time.sleep(self.duration)
                n2, t2 = count()
        time.sleep(1)  # let the guest drain the tap's backlog before the next run
        return (n2 - n1) / (t2 - t1)


def switch_to(bed: TestBed, driver: str) -> dict[str, str]:
    """Bind the DUT to `driver`, address it, check it reaches the host; returns ethtool -i."""
    bed.bind_dut(driver)
    bed.g.sh(f"ping -c 1 -W 2 {HOST_V4} >/dev/null || ping -c 3 -W 5 {HOST_V4} >/dev/null",
             timeout=60)
    info = bed.ethtool_info()
    if info.get("driver") != driver:
        bed.g.fail(f"DUT reports driver {info.get('driver')!r}, wanted {driver}")
    return info


def dut_channels(bed: TestBed) -> str:
    """Combined channels in use on the DUT (the drivers may pick different queue counts)."""
    res = bed.g.run(f"ethtool -l {bed.dut_if()}", check=False)
    if res.rc != 0:
        return "?"
    return parse_ethtool_sections(res.out)[1].get("Combined", "?")


@dataclass
class BenchResult:
    samples: list[Sample]
    summary: list[MetricSummary]
    env: dict[str, Any]
    failures: list[dict[str, Any]]
    dmesg_problems: list[str]
    files: dict[str, Path]


def run_bench(bed: TestBed, out: Path, rounds: int = 5, duration: int = 3) -> BenchResult:
    """Measure on a started test bed, then write bench.json, bench.md and bench.png."""
    if rounds < 1 or duration < 1:
        raise ValueError("rounds and duration must be at least 1")
    env = host_environment(bed.accel, bed.profile)
    env |= {"rounds": rounds, "duration_s": duration, "order": list(DRIVERS),
            "guest_kernel": bed.g.sh("uname -r"), "udp_payload_bytes": UDP_PAYLOAD,
            "rr_message_bytes": RR_MSG,
            "tools": {"stream/udp": "iperf3 (client in the guest, server on the host bridge)",
                      "rr": "sockperf ping-pong --tcp --full-rtt (client on the host)",
                      "xdp": "AF_PACKET flood from the host into the DUT's tap; xdp_drop.o / "
                             "xdp_tx_swap.o attached with ip link xdpdrv"}}
    bench = BenchRun(bed, duration, clk_tck=int(bed.g.sh("getconf CLK_TCK")))
    try:
        bench.xdp = GuestXdp(bed.g, build_all())
        bench.xdp.install()
    except BpfBuildError as err:  # the other metrics still run
        bench.failures.append(failure("", 0, "xdp programs", err))
    infos: dict[str, dict[str, str]] = {}
    channels: dict[str, str] = {}
    with iperf_server(bed.net):
        for rnd in range(1, rounds + 1):
            for driver in DRIVERS:
                progress(f"round {rnd}/{rounds}: {driver}")
                try:
                    infos[driver] = switch_to(bed, driver)
                except GuestError as err:
                    bench.failures.append(failure(driver, rnd, "bind", err))
                    continue
                channels.setdefault(driver, dut_channels(bed))
                bench.round(driver, rnd)
    try:
        bed.bind_dut("pvnet")  # leave the bed as the tests expect it
        dmesg = bed.check_dmesg()
    except GuestError as err:  # still write what was measured
        bench.failures.append(failure("", 0, "teardown", err))
        dmesg = []
    env["drivers"] = {d: {"version": i.get("version"), "bus_info": i.get("bus-info")}
                      for d, i in infos.items()}
    env["dut_channels"] = ", ".join(f"{d} {c}" for d, c in channels.items())
    return write_outputs(out, bench.samples, env, bench.failures, dmesg)


def write_outputs(out: Path, samples: list[Sample], env: dict[str, Any],
                  failures: list[dict[str, Any]], dmesg: list[str]) -> BenchResult:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(samples)
    files = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "bench.png"}
    files["json"].write_text(render_json(samples, summary, env, failures, dmesg))
    files["md"].write_text(render_markdown(summary, env))
    write_plot(samples, files["png"], title=f"pvnet vs virtio_net - {env.get('guest_kernel')}, "
               f"{env.get('accelerator_label')}, {env.get('date')}")
    return BenchResult(samples, summary, env, failures, dmesg, files)


def bench_profile(queues: int = 0) -> Profile:
    """The standard profile, or a variant with another DUT queue count."""
    profile = load_profile()
    return profile.variant(queues=queues) if queues else profile


def bench(line: str, accel: str, out: Path, rounds: int, duration: int, queues: int = 0,
          offline: bool = False) -> BenchResult:
    """The `invoke bench` job: fetch kernel, DKMS-build pvnet, one boot, A/B rounds, outputs."""
    from .build import dkms_build
    from .kernels import KernelCache
    from .util import cache_dir

    tree = KernelCache(cache_dir()).fetch(line, offline=offline)
    built = dkms_build(tree)
    progress(f"pvnet {built.version} built by DKMS: {built.module}")
    with TestBed(tree, built.module, profile=bench_profile(queues), accel=choose_accel(accel)) as bed:
        return run_bench(bed, out, rounds, duration)
