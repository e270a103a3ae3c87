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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from pvnet_harness import REPO_ROOT
from pvnet_harness.build import BuildResult, dkms_build
from pvnet_harness.capabilities import record
from pvnet_harness.guest import Profile, choose_accel, load_profile
from pvnet_harness.kernels import LINES, KernelCache, KernelTree, in_shard
from pvnet_harness.testbed import TestBed
from pvnet_harness.util import cache_dir

pytestmark = pytest.mark.qemu


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="e2e tests need root (netns, taps)")
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(skip)
    line = config.getoption("--kernel")
    if config.getoption("--full-matrix") or line not in LINES:
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


@pytest.fixture(scope="session")
def make_bed(
    kernel_tree: KernelTree, pvnet_build: BuildResult, accel: str, pytestconfig: pytest.Config
) -> Callable[..., TestBed]:
    """Test beds (not started: use them with `with`) for module-scoped fixtures; the standard
    profile unless given one (`load_profile().variant(queues=4, host_mtu=9000)`); `mtu` sets
    the host bridge, taps and peer MTU (jumbo beds)."""

    def make(pvnet_params: str = "", profile: Profile | None = None,
             mtu: int | None = None) -> TestBed:
        return TestBed(kernel_tree, pvnet_build.module, profile=profile or load_profile(),
                       accel=accel, pvnet_params=pvnet_params, mtu=mtu,
                       keep=pytestconfig.getoption("--keep"), probes=pvnet_build.probes)

    return make


@pytest.fixture(scope="module")
def bed(make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    with make_bed("") as tb:
        yield tb


@pytest.fixture(autouse=True)
def _dmesg_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in request.fixturenames:
        if not name.startswith("bed"):
            continue
        tb = request.getfixturevalue(name)
        if not isinstance(tb, TestBed) or tb.guest is None or tb.guest.child is None:
            continue
        if not tb.guest.child.isalive():
            continue
        bad = tb.check_dmesg()
        if bad:
            pytest.fail(f"guest dmesg ({name}) after this test:\n" + "\n".join(bad), pytrace=False)
