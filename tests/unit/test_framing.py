from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from pvnet_harness import guest as guest_mod
from pvnet_harness.guest import EARLY_PANIC_BOOTS, Guest, GuestError, bad_dmesg_lines, frame_command


def test_marker_not_in_command_text() -> None:
    framed, pat = frame_command("echo hi", "abc123", 7)
    assert not pat.search(framed)


@pytest.mark.parametrize(("cmd", "rc", "out"), [
    ("echo hello", 0, "hello"),
    ("false", 1, ""),
    ("sh -c 'exit 42'", 42, ""),
    ("sleep 0.1 &", 0, ""),
    ("echo a; echo b >&2", 0, "a\nb"),
])
def test_framing_through_a_real_shell(cmd: str, rc: int, out: str) -> None:
    framed, pat = frame_command(cmd, "tok", 1)
    proc = subprocess.run(["sh"], input=framed, capture_output=True, text=True, check=True)
    text = "\n" + proc.stdout + proc.stderr
    m = pat.search(proc.stdout)
    assert m is not None, proc.stdout
    assert int(m.group(1)) == rc
    if out:
        for line in out.splitlines():
            assert line in text


def test_framing_rejects_multiline_and_long() -> None:
    with pytest.raises(ValueError):
        frame_command("a\nb", "t", 1)
    with pytest.raises(ValueError):
        frame_command("x" * 5000, "t", 1)


def test_bad_dmesg_lines() -> None:
    text = "\n".join([
        "[ 1.0] pvnet virtio1: probed",
        "[ 2.0] WARNING: CPU: 0 PID: 1 at net/core/dev.c:1 foo",
        "[ 3.0] refcount_t: underflow; use-after-free.",
        "[ 4.0] unregister_netdevice: waiting for eth0 to become free. Usage count = 2",
        "[ 5.0] NETDEV WATCHDOG: eth0 (pvnet): transmit queue 0 timed out",
        "[ 6.0] BUG: unable to handle page fault",
    ])
    assert len(bad_dmesg_lines(text)) == 5


class _Lab:
    name = "fake-lab"

    @staticmethod
    def exec_argv(argv: list[str]) -> list[str]:
        return argv


def _fake_guest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str) -> Guest:
    """A Guest whose "QEMU" is a shell script: it prints what a booting guest would."""
    def fake_argv(*_args: object) -> list[str]:
        return ["sh", "-c", script, "fake", str(tmp_path / "boots")]
    monkeypatch.setattr(guest_mod, "qemu_argv", fake_argv)
    tree = cast(Any, type("Tree", (), {"release": "6.1.0-fake"})())
    return Guest(tree=tree, initrd=tmp_path / "initrd", lab=cast(Any, _Lab()),
                 profile=cast(Any, None), workdir=tmp_path / "guest")


def _kill(g: Guest) -> None:
    if g.child is not None:
        g.child.kill(signal.SIGKILL)
    g.stop()


# $1 counts the boots; a boot prints its lines, then becomes a shell (or exits).
_COUNT = 'echo x >> "$1"; n=$(wc -l < "$1"); '


def test_boot_retried_after_panics_before_init(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    early = EARLY_PANIC_BOOTS - 1
    g = _fake_guest(monkeypatch, tmp_path, _COUNT + (
        f'if [ "$n" -le {early} ]; then echo "Kernel panic - not syncing: Fatal exception $n"; '
        "exit 0; fi; echo PVNET-INIT-START; echo PVNET-READY 1.0; PS1='' PS2='' exec sh"))
    try:
        g.start(boot_timeout=20)
        assert g.run("echo up").out.strip() == "up"
    finally:
        _kill(g)
    assert (tmp_path / "boots").read_text().count("x") == EARLY_PANIC_BOOTS
    assert f"Fatal exception {early}" in g.early_panic
    for n in range(1, EARLY_PANIC_BOOTS):
        assert f"exception {n}" in (g.workdir / f"console-early-panic-{n}.log").read_text()


@pytest.mark.parametrize("script", [
    # a panic once init has started (pvnet may be loaded) is never retried
    "echo PVNET-INIT-START; echo 'Kernel panic - not syncing: Fatal exception'; exit 0",
    # an early panic on every boot fails after EARLY_PANIC_BOOTS
    "echo 'Kernel panic - not syncing: Fatal exception'; exit 0",
])
def test_boot_fails_on_a_panic_after_init_or_every_time(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, script: str) -> None:
    g = _fake_guest(monkeypatch, tmp_path, _COUNT + script)
    try:
        with pytest.raises(GuestError, match="kernel panic"):
            g.start(boot_timeout=20)
    finally:
        _kill(g)
    boots = (tmp_path / "boots").read_text().count("x")
    assert boots == (1 if "INIT-START" in script else EARLY_PANIC_BOOTS)
