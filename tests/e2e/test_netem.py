"""DUT <-> peer bulk transfers over a slow, lossy wire (netem delay 200ms loss 1%)."""

from __future__ import annotations

import re
import time

import pytest
from pvnet_harness.testbed import DUT_V4, PEER_V4, TestBed

pytestmark = pytest.mark.qemu

SIZE = 4 * (1 << 20)


@pytest.fixture
def impaired(bed: TestBed):
    args = bed.impair_peer(delay_ms=200, loss_pct=1)
    try:
        yield args
    finally:
        bed.clear_impairment()


def test_4mib_each_way_under_netem(bed: TestBed, impaired: str) -> None:
    g = bed.g
    # the impairment is really there: every round trip takes 2 x 200 ms
    out = g.sh(f"ping -c 5 -i 0.5 -W 3 {PEER_V4}", timeout=60)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    assert m and float(m.group(1)) >= 390, out
    g.sh(f"head -c {SIZE} /dev/urandom > /tmp/d2p.bin")
    g.sh(f"head -c {SIZE} /dev/urandom > /tmp/p2d.bin")
    d2p, p2d = bed.sha256("/tmp/d2p.bin"), bed.sha256("/tmp/p2d.bin")
    bed.listen(6001, "/tmp/d2p.rx", "peer_rx", ns="peer")
    bed.listen(6002, "/tmp/p2d.rx", "dut_rx")
    time.sleep(0.5)
    t0 = time.monotonic()
    g.sh(f"socat -u OPEN:/tmp/d2p.bin TCP:{PEER_V4}:6001,retry=10 >/tmp/d2p.log 2>&1 &")
    g.sh(f"ip netns exec peer socat -u OPEN:/tmp/p2d.bin TCP:{DUT_V4}:6002,retry=10 "
         f">/tmp/p2d.log 2>&1 &")
    bed.wait_job("peer_rx", 900)
    bed.wait_job("dut_rx", 900)
    print(f"netem {impaired}: 4 MiB each way in {time.monotonic() - t0:.0f}s")
    assert bed.sha256("/tmp/d2p.rx") == d2p
    assert bed.sha256("/tmp/p2d.rx") == p2d
    g.sh("rm -f /tmp/d2p.* /tmp/p2d.*")
