"""Recovery from device errors, driven through the kernel's function error injection.

pvnet marks two functions injectable (ALLOW_ERROR_INJECTION): pvnet_ctrl_exchange, which posts
one control command and waits for the device's answer, and pvnet_vq_resize, which resizes one
virtqueue. /sys/kernel/debug/fail_function makes them return an error instead of running, so a
test can have the device refuse a command (-EINVAL: VIRTIO_NET_ERR), not answer it
(-ETIMEDOUT), or fail a ring resize midway (-ENOMEM), and check what the user then sees:
the command fails with that errno, nothing is left half changed, the counters in `ethtool -S`
say what happened, and the next command works. A command that got no answer leaves the control
queue unusable until the device is reset: pvnet resets it (device_resets) and applies every
setting again.

Needs a kernel with CONFIG_FUNCTION_ERROR_INJECTION and CONFIG_FAIL_FUNCTION (the debug lane's):
elsewhere the tests skip, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from pvnet_harness.bpf import build_all
from pvnet_harness.guest import Guest
from pvnet_harness.kernels import KernelTree
from pvnet_harness.testbed import HOST_V4, TestBed, parse_ethtool_features
from pvnet_harness.xdp import GuestXdp

# An injection may print its FAULT_INJECTION notice (and stack), and on a lockdep kernel the
# injector's own report (should_fail_ex() draws a random number inside the kprobe's int3
# handler: "inconsistent lock state" on crngs.lock, 6.12): allowed, nothing else is.
pytestmark = [pytest.mark.qemu, pytest.mark.dmesg_allow("fault-injection", "injector")]

FAIL_FUNCTION = "/sys/kernel/debug/fail_function"
EINVAL, ENOMEM, ETIMEDOUT = 22, 12, 110


@pytest.fixture(scope="module")
def bed_inject(kernel_tree: KernelTree, make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    """The standard bed, booted only when the kernel's config has function error injection
    (no guest is booted just to skip every test)."""
    config = kernel_tree.config
    if config.exists():
        text = config.read_text()
        missing = [o for o in ("CONFIG_FUNCTION_ERROR_INJECTION", "CONFIG_FAIL_FUNCTION")
                   if f"{o}=y" not in text]
        if missing:
            pytest.skip(f"the kernel has no {' or '.join(missing)} ({config.name})")
    with make_bed() as tb:
        yield tb


def _skip_without_injection(bed: TestBed, function: str) -> None:
    res = bed.g.run(f"cat {FAIL_FUNCTION}/injectable", check=False)
    if res.rc != 0:
        pytest.skip(f"the kernel has no {FAIL_FUNCTION} (no CONFIG_FAIL_FUNCTION)")
    if not any(ln.split()[:1] == [function] for ln in res.out.splitlines()):
        pytest.skip(f"{function} is not injectable on this kernel "
                    "(no CONFIG_FUNCTION_ERROR_INJECTION in the module build)")


# the running test, whose JUnit properties the injections are recorded in (the reliability
# summary of a run, matrix.reliability, sums them)
_NODE: list[pytest.Item] = []


@pytest.fixture(autouse=True)
def _current_test(request: pytest.FixtureRequest) -> Iterator[None]:
    _NODE[:] = [request.node]
    yield
    _NODE.clear()


@contextmanager
def injected(g: Guest, function: str, errno: int, times: int = 1,
             after: int = 0) -> Iterator[None]:
    """`function` returns -errno on `times` calls, after `after` calls that run normally
    (fail_function's `space`), for the block; removed afterwards. Recorded as the test's
    fault scenario."""
    for node in _NODE:
        node.user_properties += [("fault_scenario", f"{function}=-{errno}"),
                                 ("faults_injected", times)]
    attrs = {"task-filter": "N", "probability": "100", "interval": "1", "times": str(times),
             "space": str(after + 1 if after else 0), "verbose": "0"}
    g.sh(" && ".join(f"echo {v} > {FAIL_FUNCTION}/{k}" for k, v in attrs.items()) +
         f" && echo {function} > {FAIL_FUNCTION}/inject && "
         f"printf %#x -{errno} > {FAIL_FUNCTION}/{function}/retval")
    try:
        yield
    finally:
        g.sh(f"echo '!{function}' > {FAIL_FUNCTION}/inject")


def _dev_counters(bed: TestBed) -> dict[str, int]:
    stats = bed.ethtool_stats()
    return {k: stats[k] for k in ("ctrl_cmds", "ctrl_fails", "ctrl_timeouts", "device_resets",
                                  "tx_timeouts")}


def _combined(bed: TestBed) -> int:
    return int(bed.ethtool_sections("-l")[1]["Combined"])


def _lro(bed: TestBed) -> bool:
    return parse_ethtool_features(bed.g.sh(f"ethtool -k {bed.dut_if()}"))["large-receive-offload"].on


def _reachable(bed: TestBed) -> None:
    bed.g.sh(f"ping -c 3 -i 0.3 -W 5 {HOST_V4} >/dev/null || ping -c 5 -W 5 {HOST_V4}",
             timeout=60)


def _wait(read: Callable[[], int], want: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    got = read()
    while got < want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = read()
    return got


# Each caller of a control command: the command, how to read back what it changes, what
# ethtool says when it fails (-L reports the errno; -K, whose kernel side reports no errno,
# says nothing changed), and what to run before trying again: after a failed -K the kernel
# keeps the request as wanted, so the same request again changes nothing until the wanted
# state is put back.
CALLERS: dict[str, tuple[Callable[[str], str], Callable[[TestBed], object], str,
                         Callable[[str], str]]] = {
    "channels": (lambda dev: f"ethtool -L {dev} combined 1", _combined, "Invalid argument",
                 lambda dev: "true"),
    "lro": (lambda dev: f"ethtool -K {dev} lro off", _lro, "Could not change any device features",
            lambda dev: f"ethtool -K {dev} lro on"),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_refused_control_command_fails_cleanly_and_the_next_works(bed_inject: TestBed,
                                                                  caller: str) -> None:
    """The device refuses one command (VIRTIO_NET_ERR): the ethtool call fails (EINVAL where
    ethtool shows the errno), the setting stays as it was, ctrl_fails counts it, and the
    same call then succeeds."""
    bed = bed_inject
    _skip_without_injection(bed, "pvnet_ctrl_exchange")
    command, read, says, again = CALLERS[caller]
    dev = bed.dut_if()
    before, setting = _dev_counters(bed), read(bed)
    with injected(bed.g, "pvnet_ctrl_exchange", EINVAL):
        res = bed.g.run(f"{command(dev)} 2>&1", check=False)
    after = _dev_counters(bed)
    assert res.rc != 0, f"{command(dev)} succeeded although the device refused: {res.out}"
    assert says in res.out, res.out
    assert read(bed) == setting, f"{caller} changed although the command failed"
    assert after["ctrl_fails"] == before["ctrl_fails"] + 1, (before, after)
    assert after["device_resets"] == before["device_resets"], (before, after)
    _reachable(bed)
    try:
        bed.g.sh(f"{again(dev)} && {command(dev)}")
        assert read(bed) != setting, f"{caller} did not change on the next try"
    finally:
        bed.g.sh(f"ethtool -L {dev} combined 2; ethtool -K {dev} lro on")


def test_refused_control_command_fails_xdp_attach_cleanly(bed_inject: TestBed) -> None:
    """Attaching a program turns the guest offloads off (a control command): refused by the
    device, the attach fails with the reason in its extack, no program is attached, LRO stays
    on, traffic flows, and the attach then works."""
    bed = bed_inject
    _skip_without_injection(bed, "pvnet_ctrl_exchange")
    x = GuestXdp(bed.g, build_all())
    x.install()
    dev = bed.dut_if()
    assert _lro(bed)
    with injected(bed.g, "pvnet_ctrl_exchange", EINVAL):
        res = x.attach(dev, "xdp_pass", check=False)
    assert res.rc != 0, f"attach succeeded although the device refused: {res.out}"
    assert "refused to change its guest offloads" in res.out, res.out
    assert x.prog_id(dev) is None, "a program is attached after the failed attach"
    assert _lro(bed), "LRO went off although the attach failed"
    _reachable(bed)
    with x.attached(dev, "xdp_pass"):
        _reachable(bed)
    assert _lro(bed)


def test_unanswered_control_command_resets_the_device_and_keeps_settings(bed_inject: TestBed) -> None:
    """The device does not answer one command: the call fails with ETIMEDOUT, ctrl_timeouts
    counts it, pvnet resets the device once (device_resets), the settings made before (one
    queue pair, LRO off) are applied again, traffic flows, and commands work again."""
    bed = bed_inject
    _skip_without_injection(bed, "pvnet_ctrl_exchange")
    dev = bed.dut_if()
    bed.g.sh(f"ethtool -L {dev} combined 1 && ethtool -K {dev} lro off")
    before = _dev_counters(bed)
    with injected(bed.g, "pvnet_ctrl_exchange", ETIMEDOUT):
        res = bed.g.run(f"ethtool -L {dev} combined 2 2>&1", check=False)
    resets = _wait(lambda: _dev_counters(bed)["device_resets"], before["device_resets"] + 1)
    after = _dev_counters(bed)
    assert res.rc != 0 and "timed out" in res.out, res.out
    assert after["ctrl_timeouts"] == before["ctrl_timeouts"] + 1, (before, after)
    assert resets == before["device_resets"] + 1, (before, after)
    _reachable(bed)
    assert _combined(bed) == 1, "queue pairs not restored after the reset"
    assert not _lro(bed), "LRO setting not restored after the reset"
    bed.g.sh(f"ethtool -L {dev} combined 2 && ethtool -K {dev} lro on")
    assert _combined(bed) == 2 and _lro(bed)
    _reachable(bed)


def test_failed_ring_resize_rolls_every_ring_back(bed_inject: TestBed) -> None:
    """The third virtqueue resize of an `ethtool -G` fails (rx and tx of pair 0 were already
    resized): the call fails with ENOMEM, every ring keeps its old size (ethtool -g, and
    traffic on every queue), no device reset was needed, and the same -G then works."""
    bed = bed_inject
    _skip_without_injection(bed, "pvnet_vq_resize")
    if not (bed.has("virtqueue_resize") or bed.has("virtqueue_resize_done")):
        pytest.skip("this build cannot resize virtqueues")
    dev = bed.dut_if()
    maxima, current = bed.ethtool_sections("-g")
    old = (current["RX"], current["TX"])
    before = _dev_counters(bed)
    with injected(bed.g, "pvnet_vq_resize", ENOMEM, after=2):
        res = bed.g.run(f"ethtool -G {dev} rx 128 tx 128 2>&1", check=False)
    if "not supported" in res.out:
        pytest.skip(f"the device cannot resize rings: {res.out}")
    assert res.rc != 0 and "Cannot allocate memory" in res.out, res.out
    _, current = bed.ethtool_sections("-g")
    assert (current["RX"], current["TX"]) == old
    assert _dev_counters(bed)["device_resets"] == before["device_resets"]
    bed.g.sh(f"ethtool -L {dev} combined 2")
    _reachable(bed)
    bed.g.sh(f"ethtool -G {dev} rx 128 tx 128")
    _, current = bed.ethtool_sections("-g")
    assert (current["RX"], current["TX"]) == ("128", "128")
    bed.g.sh(f"ethtool -G {dev} rx {maxima['RX']} tx {maxima['TX']}")
    _reachable(bed)
