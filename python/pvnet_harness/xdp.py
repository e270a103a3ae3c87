"""XDP on a test bed's guest: the compiled programs (bpf.py) copied to the guest's work share,
attached, replaced and detached in driver mode with iproute2 (`ip link set dev X xdpdrv obj O
sec S`, libbpf inside), their maps found through the attached program and read or filled with
bpftool. The guest runs the host's /usr, so both tools are the host's.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bpf import BPF_SRC, BpfPrograms
from .guest import CmdResult, Guest

# Must match tests/bpf/xdp_common.h (tests/unit/test_bpf.py checks both).
XDP_TEST_PORT = 9
# Slots of the programs' xdp_counts map, in order (enum xdp_counter in xdp_common.h).
COUNTERS = ("hit", "pass", "head_ok", "head_fail", "tail_ok", "tail_fail", "corrupt",
            "meta_fail")
GUEST_DIR = "/mnt/work/bpf"  # the work share's bpf/ folder as the guest sees it
# Entries of the rx_hashes map of tests/bpf/rx_hash.h (RX_HASH_SLOTS there).
RX_HASH_SLOTS = 4096


def header_define(name: str, header: Path = BPF_SRC / "xdp_common.h") -> int:
    """The value of a `#define NAME <int>` in a C header."""
    m = re.search(rf"^#define\s+{name}\s+(\d+)\b", header.read_text(), re.M)
    if m is None:
        raise LookupError(f"no #define {name} in {header}")
    return int(m.group(1))


def parse_xdp_prog_id(ip_json: str) -> int | None:
    """`ip -j link show dev X` -> the id of its driver-mode XDP program (None: none)."""
    links = json.loads(ip_json)
    xdp = links[0].get("xdp", {}) if links else {}
    if "prog" in xdp:
        return int(xdp["prog"]["id"])
    for att in xdp.get("attached", []):  # iproute2's form when several modes are in use
        if att.get("mode") == 1:
            return int(att["prog"]["id"])
    return None


def _le_int(raw: list[str] | int) -> int:
    """A bpftool JSON value: hex bytes ["0x01", "0x00", ...] (little endian) or a number."""
    if isinstance(raw, int):
        return raw
    return int.from_bytes(bytes(int(b, 16) for b in raw), "little")


def parse_percpu_dump(text: str) -> dict[int, int]:
    """`bpftool map dump -j` of a per-CPU array -> {key: value summed over the CPUs}."""
    out: dict[int, int] = {}
    for entry in json.loads(text):
        out[_le_int(entry["key"])] = sum(_le_int(v["value"]) for v in entry["values"])
    return out


def le_bytes(value: int, size: int = 4) -> str:
    """A value as bpftool's `key`/`value` bytes: little endian, decimal, space separated."""
    return " ".join(str(b) for b in value.to_bytes(size, "little"))


def parse_rss_key(ethtool_x: str) -> bytes:
    """`ethtool -x DEV` -> the RSS hash key (the colon-separated hex after "RSS hash key:")."""
    m = re.search(r"RSS hash key:\s*\n\s*([0-9a-fA-F:]+)", ethtool_x)
    if m is None:
        raise ValueError(f"no RSS hash key in:\n{ethtool_x}")
    return bytes(int(b, 16) for b in m.group(1).split(":"))


def toeplitz(key: bytes, data: bytes) -> int:
    """The Toeplitz hash of `data` with `key` (the RSS hash of the virtio spec, 5.1.6.4.3.1):
    for every set bit of the input, XOR in the 32 key bits starting at that bit."""
    if len(key) * 8 < len(data) * 8 + 32:
        raise ValueError(f"a {len(key)}-byte key is too short for {len(data)} bytes of input")
    k = int.from_bytes(key, "big")
    kbits = len(key) * 8
    result = 0
    for i in range(len(data) * 8):
        if data[i // 8] & (0x80 >> (i % 8)):
            result ^= (k >> (kbits - 32 - i)) & 0xFFFFFFFF
    return result


def parse_rx_hashes(dump: str) -> dict[int, tuple[int, int, int, int]]:
    """`bpftool -j map dump` of xdp_rx_hash's rx_hashes -> {seq: (ret, hash, type, seen)} for
    the entries a frame reached (seen > 0)."""
    out: dict[int, tuple[int, int, int, int]] = {}
    for entry in json.loads(dump):
        value = bytes(int(b, 16) for b in entry["value"])
        ret = int.from_bytes(value[0:4], "little", signed=True)
        hash_, type_, seen = (int.from_bytes(value[i:i + 4], "little") for i in (4, 8, 12))
        if seen:
            out[_le_int(entry["key"])] = (ret, hash_, type_, seen)
    return out


@dataclass
class GuestXdp:
    """XDP programs of one guest. install() first: it copies the objects and helpers."""

    guest: Guest
    progs: BpfPrograms

    def install(self) -> None:
        dest = self.guest.workdir / "bpf"
        dest.mkdir(parents=True, exist_ok=True)
        for path in self.progs.all():
            shutil.copy2(path, dest / path.name)

    def obj(self, name: str) -> str:
        """Guest path of a program's object (xdp_drop -> /mnt/work/bpf/xdp_drop.o)."""
        if name not in self.progs.objects:
            raise KeyError(f"no XDP program {name}; built: {sorted(self.progs.objects)}")
        return f"{GUEST_DIR}/{name}.o"

    def helper(self, name: str) -> str:
        if name not in self.progs.helpers:
            raise KeyError(f"no helper {name}; built: {sorted(self.progs.helpers)}")
        return f"{GUEST_DIR}/{name}"

    def attach(self, dev: str, prog: str, sec: str = "xdp", check: bool = True) -> CmdResult:
        """Attach (or replace: -force) a program in driver mode; stderr is in the output."""
        return self.guest.run(f"ip -force link set dev {dev} xdpdrv obj {self.obj(prog)} "
                              f"sec {sec} 2>&1", check=check)

    def attach_bound(self, dev: str, prog: str) -> CmdResult:
        """Load a program bound to dev (what XDP metadata kfuncs need) and attach it in driver
        mode, with the load_bound helper; its stderr is in the output."""
        return self.guest.run(f"{self.helper('load_bound')} {self.obj(prog)} {prog} {dev} 2>&1",
                              check=False)

    def rx_hashes(self, map_id: int) -> dict[int, tuple[int, int, int, int]]:
        """The rx_hashes map (tests/bpf/rx_hash.h) of id map_id, dumped through the work share
        (a 4096-entry dump is too much for the console)."""
        self.guest.sh(f"bpftool -j map dump id {map_id} > /mnt/work/rx_hashes.json")
        return parse_rx_hashes((self.guest.workdir / "rx_hashes.json").read_text())

    def prog_map_id(self, prog: str, name: str) -> int:
        """The id of map `name` of the loaded program called `prog` (a tc program, say)."""
        info = json.loads(self.guest.sh(f"bpftool -j prog show name {prog}"))
        ids = self._maps_of(*(info if isinstance(info, list) else [info]))
        if name not in ids:
            self.guest.fail(f"no program {prog} with a map {name} is loaded: {info}")
        return ids[name]

    def detach(self, dev: str) -> None:
        self.guest.sh(f"ip link set dev {dev} xdpdrv off")

    @contextmanager
    def attached(self, dev: str, prog: str, sec: str = "xdp") -> Iterator[int]:
        """A program attached for the block (detached after it); yields its id."""
        self.attach(dev, prog, sec)
        try:
            prog_id = self.prog_id(dev)
            if prog_id is None:
                self.guest.fail(f"{prog} attached to {dev} but ip link shows no XDP program")
            assert prog_id is not None
            yield prog_id
        finally:
            self.detach(dev)

    def prog_id(self, dev: str) -> int | None:
        return parse_xdp_prog_id(self.guest.sh(f"ip -j link show dev {dev}"))

    def maps(self, dev: str) -> dict[str, int]:
        """The maps of the program attached to dev: {name: id}."""
        prog_id = self.prog_id(dev)
        if prog_id is None:
            self.guest.fail(f"no XDP program on {dev}")
        return self._maps_of(json.loads(self.guest.sh(f"bpftool -j prog show id {prog_id}")))

    def _maps_of(self, *progs: dict[str, Any]) -> dict[str, int]:
        """{name: id} of the maps of programs described by `bpftool -j prog show`."""
        out: dict[str, int] = {}
        for map_id in (m for p in progs for m in p.get("map_ids", [])):
            m = json.loads(self.guest.sh(f"bpftool -j map show id {map_id}"))
            out[m["name"]] = int(m["id"])
        return out

    def map_id(self, dev: str, name: str) -> int:
        ids = self.maps(dev)
        if name not in ids:
            self.guest.fail(f"the program on {dev} has no map {name}: {sorted(ids)}")
        return ids[name]

    def counters(self, dev: str) -> dict[str, int]:
        """The attached program's xdp_counts, summed over the CPUs, by slot name."""
        raw = parse_percpu_dump(self.guest.sh(
            f"bpftool -j map dump id {self.map_id(dev, 'xdp_counts')}"))
        return {name: raw.get(i, 0) for i, name in enumerate(COUNTERS)}

    def map_set(self, dev: str, name: str, key: int, value: int, value_size: int = 4) -> None:
        """Set one entry of a map of the attached program (4-byte key)."""
        self.guest.sh(f"bpftool map update id {self.map_id(dev, name)} key {le_bytes(key)} "
                      f"value {le_bytes(value, value_size)}")

    def prog_count(self) -> int:
        """BPF programs loaded in the guest kernel (all types)."""
        return len(json.loads(self.guest.sh("bpftool -j prog show") or "[]"))

    def map_count(self) -> int:
        return len(json.loads(self.guest.sh("bpftool -j map show") or "[]"))
