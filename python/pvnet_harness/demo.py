"""The main job: kernel -> DKMS build -> guest with pvnet -> traffic -> short report."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .build import dkms_build
from .guest import choose_accel
from .kernels import KernelCache
from .testbed import DUT_V4, DUT_V6, HOST_V4, HOST_V6, TestBed
from .util import cache_dir, progress

IPERF_PORT = 5201


def ping_summary(text: str) -> dict[str, float]:
    """iputils ping output -> loss % and rtt min/avg/max (ms)."""
    out: dict[str, float] = {}
    m = re.search(r"([\d.]+)% packet loss", text)
    if m:
        out["loss_pct"] = float(m.group(1))
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", text)
    if m:
        out.update(rtt_min_ms=float(m.group(1)), rtt_avg_ms=float(m.group(2)),
                   rtt_max_ms=float(m.group(3)))
    return out


def iperf_mbps(report: dict[str, Any]) -> float:
    end = report["end"]
    key = "sum_received" if "sum_received" in end else "sum"
    return float(end[key]["bits_per_second"]) / 1e6


def _iperf(bed: TestBed, reverse: bool, seconds: int) -> float:
    flag = "-R " if reverse else ""
    out = bed.g.sh(f"iperf3 -J -c {HOST_V4} -p {IPERF_PORT} -t {seconds} {flag}",
                   timeout=seconds + 60)
    return iperf_mbps(json.loads(out))


def run_demo(line: str, accel: str, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tree = KernelCache(cache_dir()).fetch(line)
    built = dkms_build(tree)
    progress(f"pvnet {built.version} built by DKMS: {built.module}")
    t0 = time.monotonic()
    with TestBed(tree, built.module, accel=choose_accel(accel)) as bed:
        boot_s = time.monotonic() - t0
        g = bed.g
        dev = bed.dut_if()
        info = bed.ethtool_info()
        progress("ping both ways, IPv4 and IPv6")
        pings = {
            "host_to_dut_v4": ping_summary(bed.net.run(["ping", "-c", "10", "-i", "0.2", DUT_V4])),
            "host_to_dut_v6": ping_summary(bed.net.run(["ping", "-6", "-c", "10", "-i", "0.2",
                                                        DUT_V6])),
            "dut_to_host_v4": ping_summary(g.sh(f"ping -c 10 -i 0.2 {HOST_V4}", timeout=60)),
            "dut_to_host_v6": ping_summary(g.sh(f"ping -6 -c 10 -i 0.2 {HOST_V6}", timeout=60)),
        }
        progress("iperf3 TCP, 5 s each direction")
        server = bed.net.exec_argv(["iperf3", "-s", "-1", "-p", str(IPERF_PORT), "-B", HOST_V4])
        tput: dict[str, float] = {}
        for name, reverse in (("dut_tx_mbps", False), ("dut_rx_mbps", True)):
            srv = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                tput[name] = round(_iperf(bed, reverse, 5), 1)
            finally:
                try:
                    srv.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
        stats = bed.ethtool_stats()
        bad = bed.check_dmesg()
        summary = {
            "kernel": f"{tree.release} ({tree.version})",
            "accelerator": bed.accel,
            "driver": info.get("driver"),
            "version": info.get("version"),
            "bus_info": info.get("bus-info"),
            "interface": dev,
            "mac": g.sh(f"cat /sys/class/net/{dev}/address"),
            "carrier": g.sh(f"cat /sys/class/net/{dev}/carrier") == "1",
            "boot_and_setup_s": round(boot_s, 1),
            "ping": pings,
            "tcp": tput,
            "dmesg_problems": bad,
        }
        report = {"summary": summary, "ethtool_stats": stats, "dmesg": g.dmesg_log}
    (out / "demo-report.json").write_text(json.dumps(report, indent=2))
    print_report(summary)
    if bad:
        raise RuntimeError("guest dmesg shows problems:\n" + "\n".join(bad))
    return report


def print_report(s: dict[str, Any]) -> None:
    rows = [
        ("kernel", s["kernel"]),
        ("accelerator", s["accelerator"]),
        ("driver / version", f"{s['driver']} {s['version']} on {s['bus_info']}"),
        ("interface", f"{s['interface']} {s['mac']} carrier={'up' if s['carrier'] else 'down'}"),
        ("boot + setup", f"{s['boot_and_setup_s']} s"),
    ]
    for k, v in s["ping"].items():
        rows.append((f"ping {k}", f"loss {v.get('loss_pct')}% avg {v.get('rtt_avg_ms')} ms"))
    for k, v in s["tcp"].items():
        rows.append((f"iperf3 {k}", f"{v} Mbit/s"))
    rows.append(("guest dmesg", "clean" if not s["dmesg_problems"] else "PROBLEMS"))
    width = max(len(r[0]) for r in rows)
    print("\npvnet demo report")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
