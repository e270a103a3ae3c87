"""Guest-side UDP sender for the XDP tests (copied to the work share, run by the guest's
python3): sends COUNT sequence-numbered datagrams to ADDR:PORT, one every GAP seconds, as
traffic.udp_flood_frames() numbers them (a big-endian sequence number, then zero bytes to
SIZE), and prints a JSON summary: how many were handed to the stack and how many sends failed.

    python3 guest_udp_tx.py ADDR PORT COUNT GAP [SIZE]
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def main(addr: str, port: int, count: int, gap: float, size: int = 64) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = errors = 0
    for seq in range(count):
        try:
            s.sendto(struct.pack("!I", seq).ljust(size, b"\0"), (addr, port))
            sent += 1
        except OSError:
            errors += 1
        time.sleep(gap)
    print(json.dumps({"sent": sent, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
                  *(int(a) for a in sys.argv[5:6])))
