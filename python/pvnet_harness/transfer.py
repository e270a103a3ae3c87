"""Byte-exact TCP transfers host -> DUT and DUT -> host at the same time, running in the
background while a test changes the DUT under them (XDP programs, channels, rings...)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from .testbed import DUT_V4, HOST_V4, TestBed
from .traffic import TcpSink, make_payload, tcp_send_file


def start_both_ways(bed: TestBed, tmp_path: Path, size: int, ports: tuple[int, int] = (5401, 5402),
                    tag: str = "xfer") -> Callable[[], None]:
    """Start `size` bytes host->DUT (guest socat listener on ports[0]) and DUT->host (host sink
    on ports[1]). Returns a function that waits for both and asserts them byte for byte."""
    h2g, g2h = f"{tag}h2g", f"{tag}g2h"
    src = tmp_path / f"{h2g}.bin"
    want_h2g = make_payload(src, size, tag.encode() + b"-h2g")
    bed.g.sh(f"head -c {size} /dev/urandom > /tmp/{g2h}.bin", timeout=180)
    want_g2h = bed.sha256(f"/tmp/{g2h}.bin")
    bed.listen(ports[0], f"/tmp/{h2g}.bin", h2g)
    sink = TcpSink(bed.net, HOST_V4, ports[1]).start()
    sent: list[int] = []
    sender = threading.Thread(
        target=lambda: sent.append(tcp_send_file(bed.net, DUT_V4, ports[0], src, timeout=600)))
    sender.start()
    bed.g.sh(f"socat -u OPEN:/tmp/{g2h}.bin TCP:{HOST_V4}:{ports[1]} >/tmp/{g2h}.log 2>&1 & "
             f"echo $! > /tmp/{g2h}.pid")

    def finish() -> None:
        bed.wait_job(g2h, 180)
        got = sink.wait(120)
        sender.join(600)
        bed.wait_job(h2g, 120)
        assert sink.nbytes == size and got == want_g2h, "guest->host stream damaged"
        assert sent == [size], f"host->guest sent {sent}"
        assert bed.sha256(f"/tmp/{h2g}.bin") == want_h2g, "host->guest stream damaged"
        bed.g.sh(f"rm -f /tmp/{h2g}.bin /tmp/{g2h}.bin")
        src.unlink(missing_ok=True)

    return finish
