"""TestBed.at_rest: the tap's and the DUT's counters read at one moment, retried while frames
cross (a stray counted on one side of a base snapshot only offsets every later difference)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pvnet_harness import testbed
from pvnet_harness.guest import Guest
from pvnet_harness.kernels import KernelTree
from pvnet_harness.netlab import NetLab
from pvnet_harness.testbed import TestBed


def _link(rx: int) -> str:
    return f"rx_packets:{rx}\nrx_dropped:0\ntx_packets:7\n"


def _guest_read(before: int, queues: tuple[int, int], after: int) -> str:
    """What between_link_reads' one guest command prints: link, ethtool -S, link."""
    ethtool = "NIC statistics:\n" + "".join(
        f"     rx_queue_{q}_packets: {v}\n" for q, v in enumerate(queues))
    return f"{_link(before)}@@CMD\n{ethtool}@@LINK\n{_link(after)}"


class _Guest:
    def __init__(self, reads: list[str]) -> None:
        self.reads: Iterator[str] = iter(reads)

    def sh(self, cmd: str, **_: Any) -> str:
        if cmd.startswith("ls /sys/bus/pci"):
            return "eth0\n"
        return next(self.reads)


class _Lab:
    def __init__(self, taps: list[int]) -> None:
        self.taps: Iterator[int] = iter(taps)

    def link_stats(self, ifname: str) -> dict[str, int]:
        return {"tx_packets": next(self.taps), "tx_dropped": 0}


def _bed(tmp_path: Path, reads: list[str], taps: list[int]) -> TestBed:
    return TestBed(tree=cast(KernelTree, None), pvnet_ko=tmp_path / "pvnet.ko", workdir=tmp_path,
                   lab=cast(NetLab, _Lab(taps)), guest=cast(Guest, _Guest(reads)))


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testbed.time, "sleep", lambda _s: None)


def test_settled_read_returned(tmp_path: Path) -> None:
    snap = _bed(tmp_path, [_guest_read(10, (6, 4), 10)], [20, 20]).at_rest()
    assert snap is not None
    assert snap.tap["tx_packets"] == 20
    assert snap.link["rx_packets"] == 10
    assert snap.ethtool == {"rx_queue_0_packets": 6, "rx_queue_1_packets": 4}


def test_frame_crossing_the_tap_during_the_guest_read_retries(tmp_path: Path) -> None:
    # a stray went through the tap while the guest read (tap 20 -> 21): read again
    reads = [_guest_read(11, (7, 4), 11), _guest_read(11, (7, 4), 11)]
    snap = _bed(tmp_path, reads, [20, 21, 21, 21]).at_rest()
    assert snap is not None and snap.tap["tx_packets"] == 21


def test_frame_counted_during_ethtool_retries(tmp_path: Path) -> None:
    # the DUT counted a frame between its link read and ethtool -S: read again
    reads = [_guest_read(10, (7, 4), 11), _guest_read(11, (7, 4), 11)]
    snap = _bed(tmp_path, reads, [21, 21, 21]).at_rest()
    assert snap is not None and snap.link["rx_packets"] == 11


def test_never_settled_is_none(tmp_path: Path) -> None:
    reads = [_guest_read(10, (6, 4), 10)] * 3
    assert _bed(tmp_path, reads, [1, 2, 3, 4, 5, 6]).at_rest(tries=3) is None
