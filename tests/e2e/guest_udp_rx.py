"""Guest-side UDP receiver for the XDP tests (copied to the work share, run by the guest's
python3): counts sequence-numbered datagrams until COUNT arrived (plus a short linger for
extra copies), SECONDS passed or SIGTERM, then prints a JSON summary.

    python3 guest_udp_rx.py PORT COUNT SECONDS

A good datagram is what traffic.udp_flood_frames() sends: a big-endian sequence number
below COUNT, then zero bytes. "ready" goes to stderr once the socket is bound.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time

SO_RCVBUFFORCE = 33
LINGER = 0.5


def main(port: int, count: int, seconds: float) -> int:
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    print("ready", file=sys.stderr, flush=True)
    seen: set[int] = set()
    received = bad = 0
    deadline = time.monotonic() + seconds
    linger = 0.0
    while not stop:
        now = time.monotonic()
        if now > deadline or (linger and now > linger):
            break
        if not linger and received >= count:
            linger = now + LINGER
        try:
            data = s.recv(65536)
        except (TimeoutError, InterruptedError):
            continue
        received += 1
        if len(data) < 4 or data[4:].strip(b"\0"):
            bad += 1
            continue
        seq = struct.unpack("!I", data[:4])[0]
        if seq >= count:
            bad += 1
        else:
            seen.add(seq)
    print(json.dumps({"received": received, "unique": len(seen), "bad": bad}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
