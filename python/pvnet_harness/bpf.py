"""The XDP test programs (tests/bpf/*.c), compiled on the host and cached under out/bpf/.

BPF programs (`xdp_*.c`, `tc_*.c`) are built with `clang -O2 -g -target bpf` against Debian's libbpf-dev
headers (<bpf/bpf_helpers.h>, <bpf/bpf_endian.h>); user-space helpers (`xsk_rx.c`) with gcc,
linked with -lbpf. The guest runs the host's /usr over 9p, so an object or binary built here
runs there unchanged once it is copied into the guest's work share. An output is rebuilt when
any file of the source folder is newer than it (the programs share a header).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT
from .util import CommandError, run

BPF_SRC = REPO_ROOT / "tests" / "bpf"
BPF_OUT = REPO_ROOT / "out" / "bpf"
# asm/types.h and friends live in the multiarch include folder on Debian
BPF_CFLAGS = ("-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu")
USER_CFLAGS = ("-O2", "-g", "-Wall", "-Wextra", "-Werror")
USER_LIBS = ("-lbpf",)
# Debian 12 packages that provide each tool (named in the error when one is missing)
TOOL_PACKAGES = {"clang": "clang", "gcc": "gcc", "bpftool": "bpftool"}


class BpfBuildError(RuntimeError):
    """A compiler is missing or a program does not build."""


@dataclass(frozen=True)
class BpfPrograms:
    """Built outputs: BPF objects by program name (xdp_drop -> .../xdp_drop.o), helpers."""

    objects: dict[str, Path]
    helpers: dict[str, Path]

    def all(self) -> list[Path]:
        return [*self.objects.values(), *self.helpers.values()]


def need_tool(name: str) -> str:
    """The path of a host tool, or a clear error naming the package that provides it."""
    path = shutil.which(name)
    if path is None:
        pkg = TOOL_PACKAGES.get(name, name)
        raise BpfBuildError(f"{name} not found: the XDP tests need it (apt-get install {pkg}; "
                            f"./pvnet installs it)")
    return path


def stale(target: Path, sources: list[Path]) -> bool:
    """Whether `target` is missing or older than any of `sources`."""
    if not target.exists():
        return True
    built = target.stat().st_mtime_ns
    return any(s.stat().st_mtime_ns > built for s in sources)


def _inputs(src_dir: Path) -> list[Path]:
    return sorted(p for p in src_dir.iterdir() if p.suffix in (".c", ".h"))


def _build(src: Path, argv: list[str]) -> None:
    try:
        run(argv)
    except CommandError as err:
        raise BpfBuildError(f"{src.name} does not build:\n{err}") from err


def compile_bpf(name: str, src_dir: Path = BPF_SRC, out_dir: Path = BPF_OUT) -> Path:
    """Build one BPF program (`name`.c) into out_dir/`name`.o unless it is up to date."""
    src = src_dir / f"{name}.c"
    out = out_dir / f"{name}.o"
    if not src.exists():
        raise BpfBuildError(f"no BPF source {src}")
    if stale(out, _inputs(src_dir)):
        clang = need_tool("clang")
        out_dir.mkdir(parents=True, exist_ok=True)
        _build(src, [clang, *BPF_CFLAGS, "-c", str(src), "-o", str(out)])
    return out


def compile_user(name: str, src_dir: Path = BPF_SRC, out_dir: Path = BPF_OUT) -> Path:
    """Build one user-space helper (`name`.c, linked with libbpf) into out_dir/`name`."""
    src = src_dir / f"{name}.c"
    out = out_dir / name
    if not src.exists():
        raise BpfBuildError(f"no helper source {src}")
    if stale(out, _inputs(src_dir)):
        gcc = need_tool("gcc")
        out_dir.mkdir(parents=True, exist_ok=True)
        _build(src, [gcc, *USER_CFLAGS, "-o", str(out), str(src), *USER_LIBS])
    return out


def program_names(src_dir: Path = BPF_SRC) -> tuple[list[str], list[str]]:
    """(BPF programs: xdp_*.c and tc_*.c, user-space helpers: the other .c files) by name."""
    names = sorted(p.stem for p in src_dir.glob("*.c"))
    bpf = [n for n in names if n.startswith(("xdp_", "tc_"))]
    return bpf, [n for n in names if n not in bpf]


def build_all(src_dir: Path = BPF_SRC, out_dir: Path = BPF_OUT) -> BpfPrograms:
    """Every program and helper of src_dir, built (or taken from the cache)."""
    progs, helpers = program_names(src_dir)
    return BpfPrograms({n: compile_bpf(n, src_dir, out_dir) for n in progs},
                       {n: compile_user(n, src_dir, out_dir) for n in helpers})
