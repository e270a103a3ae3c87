"""invoke bench without QEMU: parsers, statistics, rendering, the PNG writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pvnet_harness.bench import (
    METRICS,
    Metric,
    MetricSummary,
    Sample,
    accelerator_label,
    cpu_busy_ticks,
    cpu_seconds_per_gb,
    failure,
    fmt,
    iperf_bytes,
    iperf_udp_pps,
    parse_iperf_json,
    parse_sockperf,
    render_json,
    render_markdown,
    split_stat_wrapped,
    spread,
    summarize,
    write_outputs,
    write_plot,
)

# Trimmed from iperf3 3.12 -J output (UDP, 18-byte payload, -b 0).
IPERF_UDP = {
    "start": {"test_start": {"protocol": "UDP", "blksize": 18}},
    "end": {
        "sum": {"seconds": 1.000179, "bytes": 5118300, "lost_packets": 8587, "packets": 284350},
        "sum_sent": {"seconds": 1.00005, "bytes": 5118300, "lost_packets": 0, "packets": 284350},
        "sum_received": {"seconds": 2.0, "bytes": 4963734, "lost_packets": 8587,
                         "packets": 284350},
    },
}
IPERF_TCP = {
    "end": {
        "sum_sent": {"seconds": 2.0, "bytes": 40_000_000, "bits_per_second": 160e6},
        "sum_received": {"seconds": 2.0, "bytes": 39_000_000, "bits_per_second": 156e6},
    }
}

SOCKPERF = """sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=26674; ReceivedMessages=26674
sockperf: \x1b[2;35m====> avg-rtt=20.544 (std-dev=8.973)\x1b[0m
sockperf: Summary: Round trip is 20.544 usec
sockperf: ---> <MAX> observation = 1173.001
sockperf: ---> percentile 99.999 = 1173.001
sockperf: ---> percentile 99.000 =   32.857
sockperf: ---> percentile 90.000 =   24.451
sockperf: ---> percentile 50.000 =   18.950
sockperf: ---> <MIN> observation =   11.909
"""

STAT0 = "cpu  100 5 200 9000 10 30 40 0 0 0"
STAT1 = "cpu  300 9 500 9100 10 50 90 0 0 0"


def test_parse_iperf_json_skips_console_noise_and_raises_on_error() -> None:
    assert parse_iperf_json("noise\n" + json.dumps(IPERF_TCP)) == IPERF_TCP
    with pytest.raises(ValueError, match="unable to connect"):
        parse_iperf_json(json.dumps({"start": {}, "error": "unable to connect to server"}))
    with pytest.raises(ValueError):
        parse_iperf_json("iperf3: error")


def test_iperf_bytes_is_the_receivers() -> None:
    assert iperf_bytes(IPERF_TCP) == 39_000_000
    assert iperf_bytes({"end": {"sum": {"bytes": 7}}}) == 7


def test_iperf_udp_pps_counts_received_datagrams() -> None:
    assert iperf_udp_pps(IPERF_UDP) == pytest.approx((284350 - 8587) / 2.0)
    only_sum = {"end": {"sum": IPERF_UDP["end"]["sum"]}}
    assert iperf_udp_pps(only_sum) == pytest.approx((284350 - 8587) / 1.000179)


def test_split_stat_wrapped() -> None:
    report, before, after = split_stat_wrapped(f"{STAT0}\n{json.dumps(IPERF_TCP, indent=1)}\n{STAT1}\n")
    assert report == IPERF_TCP and before == STAT0 and after == STAT1
    with pytest.raises(ValueError):
        split_stat_wrapped(json.dumps(IPERF_TCP))


def test_parse_sockperf_percentiles() -> None:
    got = parse_sockperf(SOCKPERF)
    assert got["p50"] == 18.95 and got["p99"] == 32.857 and got["p99.999"] == 1173.001
    assert got["min"] == 11.909 and got["max"] == 1173.001 and got["avg"] == 20.544
    with pytest.raises(ValueError):
        parse_sockperf("sockperf: ERROR: connection refused")


def test_cpu_ticks_and_seconds_per_gb() -> None:
    assert cpu_busy_ticks(STAT0) == 100 + 200 + 30 + 40  # nice, idle, iowait not counted
    # (200 + 300 + 20 + 50) ticks = 5.7 s at 100 Hz, over 0.5 GB
    assert cpu_seconds_per_gb(STAT0, STAT1, 100, 500_000_000) == pytest.approx(11.4)
    with pytest.raises(ValueError):
        cpu_busy_ticks("cpu0 1 2 3 4 5 6 7")
    with pytest.raises(ValueError):
        cpu_seconds_per_gb(STAT0, STAT1, 100, 0)


def test_spread_median_range_iqr() -> None:
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s is not None
    assert (s.n, s.median, s.min, s.max, s.q1, s.q3) == (5, 3.0, 1.0, 5.0, 2.0, 4.0)
    one = spread([7.0])
    assert one is not None and (one.median, one.q1, one.q3) == (7.0, 7.0, 7.0)
    assert spread([]) is None


UP = Metric("up", "throughput", "Mbit/s", True)
DOWN = Metric("down", "latency", "us", False)


def _summary(metric: Metric, pv: list[float], vn: list[float]) -> MetricSummary:
    return MetricSummary(metric, spread(pv), spread(vn))


def test_better_follows_the_metric_direction() -> None:
    assert _summary(UP, [200, 210], [100, 110]).better == "pvnet"
    assert _summary(DOWN, [200, 210], [100, 110]).better == "virtio_net"
    assert _summary(DOWN, [50], [100]).better == "pvnet"
    assert _summary(UP, [5], [5]).better == "tie"
    assert _summary(UP, [], [5]).better == "n/a"


def test_ratio_and_overlap() -> None:
    s = _summary(UP, [200, 220], [100, 110])
    assert s.ratio == pytest.approx(210 / 105)
    assert not s.overlap
    assert _summary(UP, [100, 200], [150, 300]).overlap
    assert _summary(UP, [1], [0]).ratio is None
    assert _summary(UP, [1], []).ratio is None


def _samples() -> list[Sample]:
    out = []
    for rnd in (1, 2, 3):
        for drv, base in (("pvnet", 100.0), ("virtio_net", 120.0)):
            out.append(Sample(drv, "tcp_tx_1", base + rnd, rnd, f"t{rnd}a", f"t{rnd}b"))
            out.append(Sample(drv, "rr_p50_us", base * 2 + rnd, rnd, f"t{rnd}c", f"t{rnd}d"))
    return out


ENV = {"date": "2025-01-01 00:00 UTC", "host_cpu": "Test CPU", "host_cores": 2,
       "guest_kernel": "6.1.0-test-amd64", "accelerator_label": "TCG (no vhost)",
       "qemu_version": "7.2.0", "pvnet_git": "abc1234", "profile": "standard", "rounds": 3,
       "duration_s": 2, "dut_channels": "pvnet 1, virtio_net 2"}


def test_summarize_groups_by_metric_and_driver() -> None:
    by = {s.metric.name: s for s in summarize(_samples())}
    assert set(by) == {m.name for m in METRICS}
    tput = by["tcp_tx_1"]
    assert tput.pvnet is not None and tput.pvnet.median == 102.0
    assert tput.virtio_net is not None and tput.virtio_net.median == 122.0
    assert tput.better == "virtio_net"
    assert by["rr_p50_us"].better == "pvnet"  # lower latency
    assert by["udp_tx_pps"].pvnet is None


def test_render_markdown_table() -> None:
    md = render_markdown(summarize(_samples()), ENV)
    lines = md.splitlines()
    assert "6.1.0-test-amd64" in lines[0] and "TCG (no vhost)" in lines[0] and "Test CPU" in lines[0]
    header = next(ln for ln in lines if ln.startswith("| metric"))
    assert "pvnet/virtio_net" in header and "min..max" in header
    row = next(ln for ln in lines if ln.startswith("| TCP guest->host, 1 stream |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["TCP guest->host, 1 stream", "Mbit/s", "higher", "102", "122", "0.84",
                     "virtio_net", "101 .. 103", "121 .. 123"]
    rr = next(ln for ln in lines if ln.startswith("| TCP RR latency p50 |"))
    assert "| lower |" in rr and "| pvnet |" in rr
    missing = next(ln for ln in lines if ln.startswith("| UDP 64 B guest->host |"))
    assert missing.count("n/a") >= 3
    assert len([ln for ln in lines if ln.startswith("| ")]) == len(METRICS) + 1


def test_render_json_has_every_round_and_the_environment() -> None:
    samples = _samples()
    doc = json.loads(render_json(samples, summarize(samples), ENV,
                                 failures=[{"driver": "pvnet", "round": 1, "run": "rr",
                                            "error": "x"}]))
    assert doc["environment"]["accelerator_label"] == "TCG (no vhost)"
    assert len(doc["rounds"]) == len(samples)
    first = doc["rounds"][0]
    assert set(first) == {"driver", "metric", "value", "round", "start", "end"}
    tput = next(s for s in doc["summary"] if s["metric"] == "tcp_tx_1")
    assert tput["better_is"] == "higher" and tput["pvnet"]["median"] == 102.0
    assert tput["ratio_pvnet_over_virtio_net"] == pytest.approx(102 / 122)
    assert doc["failures"][0]["run"] == "rr"
    assert [m["name"] for m in doc["metrics"]] == [m.name for m in METRICS]


def test_fmt_and_accelerator_label() -> None:
    assert [fmt(v) for v in (12345.6, 123.4, 12.34, 1.234, None)] == [
        "12,346", "123", "12.3", "1.23", "n/a"]
    assert accelerator_label("kvm", True) == "KVM+vhost"
    assert accelerator_label("tcg", False) == "TCG (no vhost)"


def test_write_plot_makes_a_png(tmp_path: Path) -> None:
    path = write_plot(_samples(), tmp_path / "sub" / "bench.png", title="unit test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_write_outputs_writes_json_markdown_png(tmp_path: Path) -> None:
    samples = _samples()
    fails = [failure("pvnet", 2, "rr", ValueError("no sockperf percentiles\nmore"), "t0")]
    res = write_outputs(tmp_path / "bench", samples, dict(ENV), fails, ["WARNING: x"])
    assert sorted(p.name for p in res.files.values()) == ["bench.json", "bench.md", "bench.png"]
    doc = json.loads(res.files["json"].read_text())
    assert doc["failures"][0]["error"].startswith("no sockperf") and doc["failures"][0]["start"] == "t0"
    assert doc["dmesg_problems"] == ["WARNING: x"]
    assert res.files["md"].read_text() == render_markdown(res.summary, ENV)
