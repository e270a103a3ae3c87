"""Allocation failures injected into pvnet's rx refill and xmit paths under traffic.

With iperf3 running host->DUT and DUT->host, the kernel's fault injection (failslab and
fail_page_alloc, debugfs) fails a share of the slab and page allocations whose call stack
passes through pvnet's code (the stack-trace filter's require-start/require-end set to the
module's text, from /proc/kallsyms): rx buffer refills (page_pool / page frags / skbs), skbs
built in the rx poll, and the ring's indirect descriptors on xmit. Then injection stops and:

- a fresh transfer each way arrives byte-exact (traffic recovered),
- the DUT's rx_queue_<q>_refill_failures rose (the failures were seen and counted),
- kmemleak (where the kernel has it) finds no unreferenced object allocated by pvnet,
- dmesg holds nothing bad but the reports the injection causes on purpose: "page
  allocation failure" and "FAULT_INJECTION: forcing a failure" blocks (dmesg_allow), any
  other WARNING/BUG/KASAN/lockdep report still fails the test.

The test asks the kernel: without the debugfs files (a production kernel) it is skipped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT
from pvnet_harness.bench import iperf_server
from pvnet_harness.kreports import parse_kmemleak
from pvnet_harness.testbed import DUT_V4, HOST_V4, TestBed, queue_sum
from pvnet_harness.transfer import start_both_ways

pytestmark = pytest.mark.qemu

MIB = 1 << 20
DEBUGFS = "/sys/kernel/debug"
ATTRS = ("failslab", "fail_page_alloc")
# Files the test writes: the fault attributes and the stack-trace filter
NEEDED = tuple(f"{DEBUGFS}/{a}/{f}" for a in ATTRS
               for f in ("probability", "times", "require-start", "require-end"))
BUDGET = 1_000_000  # `times`: injections allowed; what is left after tells how many ran
PROBABILITY = 20  # percent of the matching allocations that fail while injecting
IPERF_S = 30  # each iperf3 run; injection runs in it
INJECT_S = 16
EXTRA_ROUNDS, EXTRA_S = 2, 4  # more injection while no refill has failed yet
G2H_PORT = 5201  # bench.iperf_server's host port
H2G_PORT = 5203


def _attr(bed: TestBed, attr: str, **values: int | str) -> None:
    cmds = [f"echo {v} > {DEBUGFS}/{attr}/{k.replace('_', '-')}" for k, v in values.items()]
    bed.g.sh(" && ".join(cmds))


def _configure(bed: TestBed, start: int, end: int) -> None:
    """Both attributes armed at probability 0 (nothing fails yet), limited to stacks through
    pvnet's text, one line per injection in dmesg, sleeping allocations included (the refill
    work allocates with GFP_KERNEL), order-0 pages included (fail_page_alloc skips them by
    default)."""
    for attr in ATTRS:
        _attr(bed, attr, probability=0, interval=1, times=BUDGET, space=0, verbose=1,
              task_filter="N", require_start=start, require_end=end, stacktrace_depth=32,
              ignore_gfp_wait="N")
    _attr(bed, "fail_page_alloc", min_order=0, ignore_gfp_highmem="N")


def _probability(bed: TestBed, pct: int) -> None:
    for attr in ATTRS:
        _attr(bed, attr, probability=pct)


def _injected(bed: TestBed) -> dict[str, int]:
    return {a: BUDGET - int(bed.g.sh(f"cat {DEBUGFS}/{a}/times")) for a in ATTRS}


def _refill_failures(bed: TestBed) -> int:
    return queue_sum(bed.ethtool_stats(), "rx", "refill_failures")


def _disarm(bed: TestBed) -> None:
    for attr in ATTRS:
        bed.g.run(f"echo 0 > {DEBUGFS}/{attr}/probability; echo 0 > {DEBUGFS}/{attr}/times; "
                  f"echo 0 > {DEBUGFS}/{attr}/require-start; "
                  f"echo 0 > {DEBUGFS}/{attr}/require-end", check=False)


def _iperf_both_ways(bed: TestBed) -> Callable[[], list[str]]:
    """iperf3 DUT->host (guest client, host server) and host->DUT (host client, guest
    server) for IPERF_S seconds; returns a function that waits for both and returns their
    outputs."""
    bed.g.sh(f"iperf3 -s -1 -D -B {DUT_V4} -p {H2G_PORT} --logfile /tmp/iperf-srv.log")
    bed.g.sh(f"iperf3 -c {HOST_V4} -p {G2H_PORT} -t {IPERF_S} >/tmp/iperf-g2h.log 2>&1 & "
             f"echo $! > /tmp/iperf-g2h.pid")
    out: list[str] = []
    host = threading.Thread(target=lambda: out.append(bed.net.run(
        ["iperf3", "-c", DUT_V4, "-p", str(H2G_PORT), "-t", str(IPERF_S)], check=False)))
    host.start()

    def wait() -> list[str]:
        host.join(IPERF_S + 120)
        bed.wait_job("iperf-g2h", IPERF_S + 120)
        return [*out, bed.g.sh("cat /tmp/iperf-g2h.log")]

    return wait


# The reports the injection itself causes, by kind (kreports.HEADERS); any other still fails.
@pytest.mark.dmesg_allow("alloc-failure", "fault-injection")
def test_alloc_failures_in_refill_and_xmit_under_traffic(bed: TestBed, tmp_path: Path,
                                                         leak_log) -> None:
    missing = [p for p in NEEDED if not bed.guest_has(p)]
    if missing:
        pytest.skip("the guest kernel has no fault injection with a stack-trace filter "
                    f"(FAILSLAB, FAIL_PAGE_ALLOC, FAULT_INJECTION_STACKTRACE_FILTER): "
                    f"missing {', '.join(missing)}")
    start, end = bed.module_text_range("pvnet")
    refill0 = _refill_failures(bed)
    _configure(bed, start, end)
    try:
        with iperf_server(bed.net, G2H_PORT):
            wait = _iperf_both_ways(bed)
            time.sleep(4)
            _probability(bed, PROBABILITY)
            time.sleep(INJECT_S)
            # Most failed pages hit the stack's allocations under pvnet's poll, not a refill
            # (the page_pool serves refills from recycled pages): inject on, in short extra
            # rounds, until a refill has failed too (the traffic runs on meanwhile).
            for _ in range(EXTRA_ROUNDS):
                if _refill_failures(bed) > refill0:
                    break
                time.sleep(EXTRA_S)
            _probability(bed, 0)
            outputs = wait()
        injected = _injected(bed)
    finally:
        _disarm(bed)
    print(f"injected failures: {injected}; pvnet text {start:#x}-{end:#x}")
    for text in outputs:
        print(text[-600:])
    assert sum(injected.values()) > 0, f"no allocation was failed: {injected}"

    finish = start_both_ways(bed, tmp_path, 8 * MIB, ports=(5411, 5412), tag="postfault")
    finish()

    refills = _refill_failures(bed) - refill0
    summary = {"kernel": bed.tree.release, "injected": injected, "refill_failures": refills,
               "probability_pct": PROBABILITY, "inject_s": INJECT_S,
               "post_fault_bytes_each_way": 8 * MIB, "bytes_lost": 0}
    (REPO_ROOT / "out").mkdir(exist_ok=True)
    (REPO_ROOT / "out" / f"faults-{bed.tree.release}.json").write_text(
        json.dumps(summary, indent=2) + "\n")
    print(f"fault injection summary: {summary}")
    assert refills > 0, f"refill_failures did not rise ({injected} injected)"

    report = bed.kmemleak_report()
    if report is not None:
        leak_log.add(bed.workdir.name, report)  # written out with the module's reports
        ours = [lk for lk in parse_kmemleak(report) if lk.names_pvnet]
        assert not ours, "kmemleak after the injection:\n" + "\n".join(lk.text for lk in ours)
