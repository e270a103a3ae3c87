"""The same driver with tx NAPI off (napi_tx=0): completions are freed in start_xmit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pvnet_harness.testbed import DUT_V4, HOST_V4, TestBed, queue_counter, queue_sum
from pvnet_harness.traffic import TcpSink, make_payload, tcp_send_file

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def bed_txirq(make_bed: Callable[..., TestBed]) -> Iterator[TestBed]:
    with make_bed("napi_tx=0") as tb:
        yield tb


def test_param_applied(bed_txirq: TestBed) -> None:
    assert bed_txirq.g.sh("cat /sys/module/pvnet/parameters/napi_tx") == "N"


def test_bulk_both_ways_without_tx_napi(bed_txirq: TestBed, tmp_path: Path) -> None:
    bed = bed_txirq
    bed.g.sh("head -c 33554432 /dev/urandom > /tmp/g2h.bin", timeout=120)
    want = bed.sha256("/tmp/g2h.bin")
    sink = TcpSink(bed.net, HOST_V4, 5102).start()
    bed.g.sh(f"socat -u OPEN:/tmp/g2h.bin TCP:{HOST_V4}:5102", timeout=600)
    assert sink.wait(120) == want
    src = tmp_path / "h2g.bin"
    want = make_payload(src, 32 << 20, b"txirq")
    bed.listen(5101, "/tmp/h2g.bin", "h2g")
    tcp_send_file(bed.net, DUT_V4, 5101, src)
    bed.wait_job("h2g", 120)
    assert bed.sha256("/tmp/h2g.bin") == want
    st = bed.ethtool_stats()
    # 32 MiB went out (TSO makes the packet count small; XPS may pick any queue)
    assert queue_sum(st, "tx", "bytes") > 32 << 20, st
    stops = queue_counter(st, "tx", "stops")
    for q, wakes in queue_counter(st, "tx", "wakes").items():
        assert st[f"tx_queue_{q}_drops"] == 0, st
        assert wakes <= stops[q], st
    bed.g.sh("rm -f /tmp/g2h.bin /tmp/h2g.bin")


def test_rmmod_insmod_without_tx_napi(bed_txirq: TestBed, tmp_path: Path) -> None:
    bed = bed_txirq
    bed.g.sh(f"socat -u OPEN:/dev/zero TCP:{HOST_V4}:5103 >/dev/null 2>&1 &")
    sink = TcpSink(bed.net, HOST_V4, 5103).start()
    bed.g.run("sleep 2")
    assert bed.g.run("rmmod pvnet", timeout=120, check=False).rc == 0
    bed.g.run("pkill socat", check=False)
    with pytest.raises((TimeoutError, OSError)):
        sink.wait(0.1)
    bed.g.sh("insmod /kmod/pvnet.ko napi_tx=0")
    bed.setup_dut()
    out = bed.net.run(["ping", "-c", "3", "-i", "0.2", "-W", "5", DUT_V4])
    assert " 0% packet loss" in out, out
