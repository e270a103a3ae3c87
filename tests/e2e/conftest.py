"""e2e fixtures: one kernel + DKMS build per session, one booted guest per test module.

Every test that used a guest has the guest's new kernel messages checked after it: any
WARNING/BUG/Oops/refcount/"unregister_netdevice: waiting"/NETDEV WATCHDOG fails that test.

Sharded combination tests: a case marked `shard(i)` runs on the kernel line whose position in
pvnet_harness.kernels.LINES is i modulo the number of lines, so a run over all lines runs each
case once, and on every line with `shard(i, anchor=True)`; `--full-matrix` (PVNET_FULL_MATRIX=1)
runs every case on the line at hand.

What a test expects of the module never depends on the line's name: beds carry the build's
probe results (`bed.has("virtqueue_resize")`), and where the kernel decides (a verifier, a
netlink family) the test asks the kernel (tests/unit/test_no_line_names.py keeps it so).

Debug kernels (kernels.DEBUG_LINES): a failing dmesg check shows each bad line's whole report
block (KASAN, lockdep, WARNING...: pvnet_harness.kreports). Where the guest has kmemleak, every
bed is scanned before it stops, and before its module's last test (which may stop the guest);
at the end of the test module an unreferenced object whose
backtrace names pvnet fails the module (an error of its last test) with the report, and the
other reports are written to out/kmemleak-<line>/ and logged. A test that injects faults
allows the reports it causes by kind: `@pytest.mark.dmesg_allow("alloc-failure", ...)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT
from pvnet_harness.build import BuildResult, dkms_build
from pvnet_harness.capabilities import record
from pvnet_harness.guest import Profile, choose_accel, load_profile
from pvnet_harness.kernels import DEBUG_LINES, LINES, KernelCache, KernelTree, in_shard
from pvnet_harness.kreports import (
    blocks_for_lines,
    is_injector_report,
    parse_kmemleak,
    report_blocks,
    strip_prefix,
)
from pvnet_harness.testbed import TestBed
from pvnet_harness.util import cache_dir, progress

pytestmark = pytest.mark.qemu
log = logging.getLogger("pvnet")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dmesg_allow(*kinds): report kinds (pvnet_harness.kreports.HEADERS: "
                   "alloc-failure, fault-injection...) this test causes on purpose; their "
                   "blocks do not fail it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="e2e tests need root (netns, taps)")
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(skip)
    line = config.getoption("--kernel")
    if config.getoption("--full-matrix") or (line not in LINES and line not in DEBUG_LINES):
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("shard")
        if mark is None or in_shard(mark.args[0], line, mark.kwargs.get("anchor", False)):
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def kernel_tree(pytestconfig: pytest.Config) -> KernelTree:
    line = pytestconfig.getoption("--kernel")
    return KernelCache(cache_dir()).fetch(line, offline=pytestconfig.getoption("--offline"))


@pytest.fixture(scope="session")
def pvnet_build(kernel_tree: KernelTree) -> BuildResult:
    """The DKMS build of the line under test; its probe set is recorded in out/probes-<line>.txt
    for the matrix report (invoke test-qemu/check compare the lines)."""
    res = dkms_build(kernel_tree)
    record(REPO_ROOT / "out", kernel_tree, res.probes)
    return res


@pytest.fixture(scope="session")
def accel(pytestconfig: pytest.Config) -> str:
    return choose_accel(pytestconfig.getoption("--accel"))


@dataclass
class LeakLog:
    """kmemleak reports of the beds of this session, by test module; written to `out`."""

    out: Path
    by_module: dict[str, list[str]] = field(default_factory=dict)
    module: str = ""

    def add(self, bed: str, text: str) -> None:
        if text.strip():
            self.by_module.setdefault(self.module, []).append(f"--- bed {bed}\n{text}")


@dataclass
class ScannedBed(TestBed):
    """A TestBed whose kmemleak (when the guest kernel has one) is kept quiet while it runs
    and read before it stops."""

    __test__ = False
    leaks: LeakLog | None = None

    def start(self) -> None:
        super().start()
        self.kmemleak_quiet()

    def stop(self) -> None:
        if self.leaks is not None and self.guest is not None and self.guest.child is not None \
                and self.guest.child.isalive():
            try:
                text = self.kmemleak_report()
            except Exception as err:  # a dying guest must still be stopped
                log.warning("kmemleak scan failed: %s", err)
                text = None
            if text is not None:
                self.leaks.add(self.workdir.name, text)
        super().stop()


@pytest.fixture(scope="session")
def leak_log(pytestconfig: pytest.Config) -> LeakLog:
    return LeakLog(REPO_ROOT / "out" / f"kmemleak-{pytestconfig.getoption('--kernel')}")


@pytest.fixture(scope="module", autouse=True)
def _kmemleak_module(request: pytest.FixtureRequest, leak_log: LeakLog) -> Iterator[None]:
    """Set up before the module's beds, torn down after them: their kmemleak reports are in."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    leak_log.module = name
    yield
    reports = leak_log.by_module.pop(name, [])
    if not reports:
        return
    text = "\n".join(reports)
    leak_log.out.mkdir(parents=True, exist_ok=True)
    path = leak_log.out / f"{name}.txt"
    path.write_text(text + "\n")
    leaks = parse_kmemleak(text)
    ours = [lk for lk in leaks if lk.names_pvnet]
    progress(f"kmemleak after {name}: {len(leaks)} unreferenced object(s), {len(ours)} naming "
             f"pvnet ({path})")
    if ours:
        pytest.fail(f"kmemleak: {len(ours)} unreferenced object(s) allocated by pvnet after "
                    f"{name} (all reports: {path}):\n" + "\n".join(lk.text for lk in ours),
                    pytrace=False)


@pytest.fixture(scope="session")
def make_bed(
    kernel_tree: KernelTree, pvnet_build: BuildResult, accel: str, pytestconfig: pytest.Config,
    leak_log: LeakLog,
) -> Callable[..., TestBed]:
    """Test beds (not started: use them with `with`) for module-scoped fixtures; the standard
    profile unless given one (`load_profile().variant(queues=4, host_mtu=9000)`); `mtu` sets
    the host bridge, taps and peer MTU (jumbo beds)."""

    def make(pvnet_params: str = "", profile: Profile | None = None,
             mtu: int | None = None) -> TestBed:
        return ScannedBed(kernel_tree, pvnet_build.module, profile=profile or load_profile(),
                          accel=accel, pvnet_params=pvnet_params, mtu=mtu,
                          keep=pytestconfig.getoption("--keep"), probes=pvnet_build.probes,
                          leaks=leak_log)

    return make


@pytest.fixture(scope="module")
def bed(make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    with make_bed("") as tb:
        yield tb


def allowed_lines(text: str, kinds: tuple[str, ...]) -> set[str]:
    """The lines of the report blocks of `kinds` in a dmesg text (timestamps stripped);
    kind "injector": the fault injector's own lockdep report (kreports.is_injector_report)."""
    return {ln for rep in report_blocks(text)
            if rep.kind in kinds or ("injector" in kinds and is_injector_report(rep))
            for ln in rep.text.splitlines()}


def before_module_end(item: pytest.Item) -> bool:
    """Whether the next test is its module's last and follows `item` in the same module: the
    moment for an extra kmemleak scan, as that last test may stop the guest
    (test_lifecycle's panic test), and with it the scan before the bed stops."""
    items = item.session.items
    i = items.index(item)
    if i + 1 >= len(items) or items[i + 1].module is not item.module:
        return False
    return i + 2 >= len(items) or items[i + 2].module is not item.module


@pytest.fixture(autouse=True)
def _dmesg_clean(request: pytest.FixtureRequest, leak_log: LeakLog) -> Iterator[None]:
    yield
    if before_module_end(request.node):
        for name in request.fixturenames:
            tb = request.getfixturevalue(name) if name.startswith("bed") else None
            if isinstance(tb, ScannedBed) and tb.guest is not None \
                    and tb.guest.child is not None and tb.guest.child.isalive():
                text = tb.kmemleak_report()
                if text is not None:
                    leak_log.add(f"{tb.workdir.name} (before the module's last test)", text)
    mark = request.node.get_closest_marker("dmesg_allow")
    kinds = tuple(mark.args) if mark else ()
    for name in request.fixturenames:
        if not name.startswith("bed"):
            continue
        tb = request.getfixturevalue(name)
        if not isinstance(tb, TestBed) or tb.guest is None or tb.guest.child is None:
            continue
        if not tb.guest.child.isalive():
            continue
        bad = tb.check_dmesg()
        text = tb.g.dmesg_log[-1] if tb.g.dmesg_log else ""
        if kinds:
            allowed = allowed_lines(text, kinds)
            bad = [b for b in bad if strip_prefix(b) not in allowed]
        blocks = blocks_for_lines(text, bad) if bad else []
        # for the reliability summary of the run (matrix.reliability)
        request.node.user_properties.append(("kernel_reports", len(blocks)))
        if bad:
            pytest.fail(f"guest dmesg ({name}) after this test:\n" + "\n\n".join(blocks),
                        pytrace=False)
