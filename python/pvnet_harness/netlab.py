"""A network namespace owned by one harness run: bridge, multiqueue taps, addresses, netem.

Everything the tests send stays inside it (198.18.0.0/15, 2001:db8::/64). It is removed on
close, also when the run fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import NetNS, netns

from .util import CommandError, log, run

HOST_V4 = "198.18.0.1"
HOST_V6 = "2001:db8::1"
V4_PREFIX = 24
V6_PREFIX = 64
ALLOWED_V4 = ipaddress.ip_network("198.18.0.0/15")
ALLOWED_V6 = ipaddress.ip_network("2001:db8::/64")


def check_test_address(addr: str) -> str:
    """Refuse any address outside the ranges this project may send to."""
    ip = ipaddress.ip_address(addr)
    net = ALLOWED_V4 if ip.version == 4 else ALLOWED_V6
    if ip not in net:
        raise ValueError(f"{addr} is outside the test ranges {ALLOWED_V4} / {ALLOWED_V6}")
    return addr


def netem_args(
    delay_ms: float = 0,
    jitter_ms: float = 0,
    loss_pct: float = 0,
    rate: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Arguments after `tc qdisc add dev X root` for a netem qdisc."""
    if delay_ms < 0 or jitter_ms < 0 or not 0 <= loss_pct <= 100:
        raise ValueError("netem: delay/jitter must be >= 0 and loss within 0..100")
    if jitter_ms and not delay_ms:
        raise ValueError("netem: jitter needs a delay")
    args = ["netem"]
    if limit is not None:
        args += ["limit", str(limit)]
    if delay_ms:
        args += ["delay", f"{delay_ms:g}ms"]
        if jitter_ms:
            args.append(f"{jitter_ms:g}ms")
    if loss_pct:
        args += ["loss", f"{loss_pct:g}%"]
    if rate:
        args += ["rate", rate]
    return args


@dataclass
class NetLab:
    """Harness-owned netns with br0 and one multiqueue tap per guest NIC."""

    taps: dict[str, int]
    # MTU of the taps and the bridge (jumbo frames); None keeps the kernel default (1500)
    mtu: int | None = None
    name: str = field(default_factory=lambda: f"pvnet-{os.getpid()}-{secrets.token_hex(3)}")
    bridge: str = "br0"
    created: bool = False

    def __enter__(self) -> NetLab:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        netns.create(self.name)
        self.created = True
        try:
            self._populate()
        except Exception:
            self.close()
            raise

    def _populate(self) -> None:
        self.sysctl("net.ipv6.conf.default.accept_dad", "0")
        self.sysctl("net.ipv6.conf.default.accept_ra", "0")
        ns = NetNS(self.name)
        try:
            lo = ns.link_lookup(ifname="lo")[0]
            ns.link("set", index=lo, state="up")
            ns.link("add", ifname=self.bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
            br = ns.link_lookup(ifname=self.bridge)[0]
            for tap, queues in self.taps.items():
                # QEMU opens a tap with IFF_MULTI_QUEUE only when it has more than one queue
                ns.link(
                    "add",
                    ifname=tap,
                    kind="tuntap",
                    mode="tap",
                    ifr={"multi_queue": queues > 1, "vnet_hdr": True, "no_pi": True},
                )
                idx = ns.link_lookup(ifname=tap)[0]
                if self.mtu:
                    ns.link("set", index=idx, mtu=self.mtu)
                ns.link("set", index=idx, master=br, txqlen=20000, state="up")
            if self.mtu:
                ns.link("set", index=br, mtu=self.mtu)
            ns.addr("add", index=br, address=HOST_V4, prefixlen=V4_PREFIX)
            ns.addr("add", index=br, address=HOST_V6, prefixlen=V6_PREFIX, flags=0x02)
            ns.link("set", index=br, state="up")
        finally:
            ns.close()

    def close(self) -> None:
        if self.created and self.name in netns.listnetns():
            try:
                netns.remove(self.name)
            except OSError as err:
                log.warning("netns %s removal failed: %s", self.name, err)
        self.created = False

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], check: bool = True) -> str:
        return run(self.exec_argv(argv), check=check).stdout

    def sysctl(self, key: str, value: str) -> None:
        run(self.exec_argv(["sysctl", "-q", "-w", f"{key}={value}"]))

    def link_stats(self, ifname: str) -> dict[str, int]:
        """Kernel counters of an interface inside the netns (rx/tx packets, drops...)."""
        base = Path("/sys/class/net")
        out = self.run(["sh", "-c", f"cd {base}/{ifname}/statistics && grep . *"])
        stats: dict[str, int] = {}
        for line in out.splitlines():
            k, _, v = line.partition(":")
            stats[k] = int(v)
        return stats

    def netem_available(self) -> bool:
        """Whether this host kernel can run netem (many of these machines' kernels cannot)."""
        try:
            self.run(["tc", "qdisc", "add", "dev", "lo", "root", *netem_args(delay_ms=1)])
        except CommandError:
            return False
        self.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
        return True

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with this thread inside the netns (sockets made here stay there)."""
        netns.pushns(self.name)
        try:
            yield
        finally:
            netns.popns()
