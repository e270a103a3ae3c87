"""Guest initramfs: busybox, the kernel's needed modules, pvnet.ko and a rendered /init.

Host tools (iproute2, ethtool, iperf3, socat, python3...) are not copied: the guest mounts the
host's /usr read-only over virtio-9p, so it runs exactly the host's versions.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .kernels import KernelTree
from .templates import render

BUSYBOX = Path("/bin/busybox")

# Modules the standard guest loads at boot, in this order (dependencies are added first).
GUEST_MODULES: tuple[tuple[str, str], ...] = (
    ("virtio_pci", ""),
    ("9pnet_virtio", ""),
    ("9p", ""),
    ("virtio_net", ""),
    ("sch_netem", ""),
    ("sch_ingress", ""),
    ("sch_tbf", ""),
    ("cls_matchall", ""),
    ("cls_u32", ""),
    ("cls_bpf", ""),
    ("act_mirred", ""),
    ("ifb", "numifbs=0"),
    ("veth", ""),
)


def _norm(name: str) -> str:
    return name.replace("-", "_")


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suf in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suf):
            return _norm(base[: -len(suf)])
    raise ValueError(f"not a module path: {path}")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep -> {name: (relative path, [dependency names])}."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[module_name(path)] = (path.strip(), [module_name(p) for p in rest.split()])
    return deps


def parse_builtin(text: str) -> set[str]:
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def load_order(wanted: Iterable[str], deps: dict[str, tuple[str, list[str]]], builtin: set[str]) -> list[str]:
    """Modules to insmod, dependencies first, each once; built-ins skipped."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = _norm(name)
        if name in seen:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in deps:
            if name in builtin:
                seen.add(name)
                return
            raise LookupError(f"module {name} is neither in modules.dep nor built in")
        for dep in deps[name][1]:
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(name)

    for w in wanted:
        visit(w, ())
    return order


def decompress_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


# ---------------------------------------------------------------- cpio (newc)


@dataclass
class CpioEntry:
    name: str
    mode: int
    data: bytes = b""
    target: str = ""


@dataclass
class Cpio:
    """An in-memory newc archive; names are relative ('bin/busybox')."""

    entries: list[CpioEntry] = field(default_factory=list)

    def dir(self, name: str) -> None:
        self.entries.append(CpioEntry(name, stat.S_IFDIR | 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.entries.append(CpioEntry(name, stat.S_IFREG | mode, data))

    def symlink(self, name: str, target: str) -> None:
        self.entries.append(CpioEntry(name, stat.S_IFLNK | 0o777, target.encode(), target))

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        for ino, e in enumerate([*self.entries, CpioEntry("TRAILER!!!", 0)], start=1):
            name = e.name.encode() + b"\0"
            hdr = "070701" + "".join(
                f"{v:08x}"
                for v in (ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(name), 0)
            )
            out.write(hdr.encode() + name)
            out.write(b"\0" * ((4 - (110 + len(name)) % 4) % 4))
            out.write(e.data)
            out.write(b"\0" * ((4 - len(e.data) % 4) % 4))
        return out.getvalue()


@dataclass(frozen=True)
class GuestNic:
    """One virtio-net-pci NIC of the guest as init sees it."""

    role: str  # "dut" (pvnet) or "peer" (in-tree virtio_net)
    pci: str  # e.g. 0000:00:03.0


def render_init(
    modules: list[tuple[str, str]], nics: list[GuestNic], pvnet_params: str = ""
) -> tuple[str, str]:
    """(/init, /init2): busybox stage (mounts, modules), then host-bash stage (NICs, netns)."""
    ctx = {
        "modules": modules,
        "dut": [n for n in nics if n.role == "dut"],
        "peer": [n for n in nics if n.role == "peer"],
        "pvnet_params": pvnet_params,
    }
    return render("init.sh.j2", **ctx), render("init2.sh.j2", **ctx)


def build_initramfs(
    tree: KernelTree,
    pvnet_ko: Path,
    out: Path,
    nics: list[GuestNic],
    pvnet_params: str = "",
    wanted: tuple[tuple[str, str], ...] = GUEST_MODULES,
) -> Path:
    deps = parse_modules_dep((tree.modules_dir / "modules.dep").read_text())
    builtin = parse_builtin((tree.modules_dir / "modules.builtin").read_text())
    params = {_norm(n): p for n, p in wanted}
    order = load_order([n for n, _ in wanted], deps, builtin)

    cpio = Cpio()
    for d in ("busybox", "dev", "proc", "sys", "tmp", "run", "usr", "etc", "kmod", "mnt",
              "mnt/work"):
        cpio.dir(d)
    # merged /usr like the host: absolute links inside the host's /usr (/usr/sbin/ip -> /bin/ip,
    # ld.so -> /lib/...) resolve into the shared /usr; busybox lives in /busybox.
    for link in ("bin", "sbin", "lib", "lib64"):
        cpio.symlink(link, f"usr/{link}")
    cpio.symlink("var", "run")
    cpio.file("busybox/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n")
    loaded: list[tuple[str, str]] = []
    for name in order:
        rel = deps[name][0]
        cpio.file(f"kmod/{name}.ko", decompress_module(tree.modules_dir / rel))
        loaded.append((name, params.get(name, "")))
    cpio.file("kmod/pvnet.ko", decompress_module(pvnet_ko))
    init1, init2 = render_init(loaded, nics, pvnet_params)
    cpio.file("init", init1.encode(), 0o755)
    cpio.file("init2", init2.encode(), 0o755)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(cpio.to_bytes(), compresslevel=1))
    return out
