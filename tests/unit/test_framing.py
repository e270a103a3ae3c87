from __future__ import annotations

import subprocess

import pytest
from pvnet_harness.guest import bad_dmesg_lines, frame_command


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
