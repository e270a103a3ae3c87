"""Guest-side transfer runner (standard library only: runs on the guest's Debian python3).

Copied to the work share by the host and started as ONE guest command; runs every transfer of
a spec concurrently and prints one JSON line with what each transfer sent or received:

  python3 guest_xfer.py SPEC.json

SPEC: {"tcp_recv": [{"name", "ns", "addr", "port"}],           listen, accept one, read to EOF
       "tcp_send": [{"name", "ns", "addr", "port", "size"}],   connect, send random bytes
       "udp_echo": [{"name", "server_ns", "server", "client_ns", "port", "sizes"}]}
"ns" is a guest netns name ("" = the root netns). Result per name: {"bytes", "sha256"} (or
{"ok", "detail"} for udp_echo, or {"error"}).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import socket
import sys
import threading
from typing import Any

CLONE_NEWNET = 0x40000000
TIMEOUT = 120.0
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def sock_in(ns: str, addr: str, kind: int) -> socket.socket:
    """A socket created inside guest netns `ns` (sockets keep the netns they were made in)."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    if not ns:
        return socket.socket(fam, kind)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(fam, kind)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def tcp_recv(listener: socket.socket) -> dict[str, Any]:
    conn, _ = listener.accept()
    h, n = hashlib.sha256(), 0
    with conn:
        conn.settimeout(TIMEOUT)
        while data := conn.recv(1 << 16):
            h.update(data)
            n += len(data)
    listener.close()
    return {"bytes": n, "sha256": h.hexdigest()}


def tcp_send(s: socket.socket, addr: str, port: int, size: int) -> dict[str, Any]:
    data = os.urandom(size)
    with s:
        s.settimeout(TIMEOUT)
        s.connect((addr, port))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the receiver closes once it has read everything
    return {"bytes": size, "sha256": hashlib.sha256(data).hexdigest()}


def udp_serve(server: socket.socket, count: int) -> None:
    with server:
        server.settimeout(TIMEOUT)
        for _ in range(count):
            data, src = server.recvfrom(1 << 16)
            server.sendto(data, src)


def udp_echo(client: socket.socket, addr: str, port: int, sizes: list[int]) -> dict[str, Any]:
    """Each datagram to the echo server and back (both ways fragmented above the MTU)."""
    with client:
        client.settimeout(20)
        for size in sizes:
            data = os.urandom(size)
            client.sendto(data, (addr, port))
            reply, _ = client.recvfrom(1 << 16)
            if reply != data:
                return {"ok": False, "detail": f"{size}-byte datagram came back as {len(reply)} "
                                               f"bytes with other content"}
    return {"ok": True, "detail": f"{len(sizes)} datagrams"}


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    jobs: list[tuple[str, Any, tuple[Any, ...]]] = []
    helpers: list[threading.Thread] = []
    # every socket is made (and every listener listens) before any transfer starts
    for r in spec.get("tcp_recv", []):
        ls = sock_in(r["ns"], r["addr"], socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((r["addr"], r["port"]))
        ls.listen(1)
        ls.settimeout(TIMEOUT)
        jobs.append((r["name"], tcp_recv, (ls,)))
    for u in spec.get("udp_echo", []):
        srv = sock_in(u["server_ns"], u["server"], socket.SOCK_DGRAM)
        srv.bind((u["server"], u["port"]))
        helpers.append(threading.Thread(target=udp_serve, args=(srv, len(u["sizes"])),
                                        daemon=True))
        cli = sock_in(u["client_ns"], u["server"], socket.SOCK_DGRAM)
        jobs.append((u["name"], udp_echo, (cli, u["server"], u["port"], u["sizes"])))
    for t in spec.get("tcp_send", []):
        s = sock_in(t["ns"], t["addr"], socket.SOCK_STREAM)
        jobs.append((t["name"], tcp_send, (s, t["addr"], t["port"], t["size"])))

    results: dict[str, Any] = {}

    def run(name: str, fn: Any, args: tuple[Any, ...]) -> None:
        try:
            results[name] = fn(*args)
        except Exception as err:  # reported to the host, which fails the test
            results[name] = {"error": f"{type(err).__name__}: {err}"}

    threads = [threading.Thread(target=run, args=job, daemon=True) for job in jobs]
    for t in helpers + threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 30)
    for name, _, _ in jobs:
        results.setdefault(name, {"error": "did not finish"})
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
