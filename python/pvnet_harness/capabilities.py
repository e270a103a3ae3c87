"""What each build of pvnet found in its kernel, and the check that nothing vanished silently.

Kbuild compiles every driver/compat/<name>.c probe against the target headers; the generated
header lists the ones that compiled, and pvnet_main.c stores that list in the module
(`modinfo -F pvnet_probes pvnet.ko`). Tests ask this set (BuildResult.has) instead of a
kernel line's name, so a new line needs no test edits.

The trap of probes is the silent fallback: a probe that stops compiling on a newer kernel
because upstream renamed or changed an API turns its feature off without a word. So a probe
that passes on an older line must pass on every newer line, unless its file says why not:

    Superseded-by: <probe>     the newer API has its own probe, which must pass there
    Removed-upstream: <text>   upstream removed the API and why nothing is lost (commit, release)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT
from .kernels import KernelTree

MODINFO_KEY = b"pvnet_probes="
TAG_RE = re.compile(r"^\s*\*\s*(Superseded-by|Removed-upstream):\s*(.+?)\s*$", re.M)


def probes_from_modinfo(data: bytes) -> frozenset[str]:
    """The probe names in a module image's pvnet_probes= modinfo string; a module without the
    string (built from a source older than the probe record) is an error, not 'no probes'."""
    at = data.find(MODINFO_KEY)
    if at < 0:
        raise ValueError("the module has no pvnet_probes modinfo: not built from this source")
    end = data.find(b"\0", at)
    value = data[at + len(MODINFO_KEY):end if end >= 0 else None].decode()
    return frozenset(value.split())


def module_probes(module: Path) -> frozenset[str]:
    """The probes that compiled for a built pvnet.ko (.ko.xz/.zst too)."""
    from .image import decompress_module

    return probes_from_modinfo(decompress_module(module))


def probes_from_header(text: str) -> frozenset[str]:
    """The probe names a generated pvnet_compat_probed.h defines (PVNET_HAVE_<NAME> 1)."""
    return frozenset(m.lower() for m in re.findall(r"^#define PVNET_HAVE_(\w+) 1$", text, re.M))


@dataclass(frozen=True)
class ProbeInfo:
    """A probe file's declared fate on newer kernels (both empty: it must keep passing)."""

    name: str
    superseded_by: str = ""
    removed_upstream: str = ""


def probe_infos(compat_dir: Path = REPO_ROOT / "driver" / "compat") -> dict[str, ProbeInfo]:
    infos: dict[str, ProbeInfo] = {}
    for p in sorted(compat_dir.glob("*.c")):
        if p.stem == "baseline":
            continue
        tags = dict(TAG_RE.findall(p.read_text()))
        succ = tags.get("Superseded-by", "").split()
        infos[p.stem] = ProbeInfo(p.stem, succ[0] if succ else "",
                                  tags.get("Removed-upstream", ""))
    return infos


def lost_probes(by_line: Mapping[str, frozenset[str]], order: Sequence[str],
                infos: Mapping[str, ProbeInfo]) -> list[str]:
    """One message per probe that an older line passes and a newer line fails without a
    declared reason (or whose declared successor fails there too). `order`: oldest first."""
    problems: list[str] = []
    lines = [ln for ln in order if ln in by_line]
    for i, newer in enumerate(lines):
        older_sets = [(ln, by_line[ln]) for ln in lines[:i]]
        lost = set().union(*(s for _, s in older_sets)) - by_line[newer] if older_sets else set()
        for name in sorted(lost):
            info = infos.get(name, ProbeInfo(name))
            if info.removed_upstream:
                continue
            succ = info.superseded_by
            if succ and succ in by_line[newer]:
                continue
            older = next(ln for ln, s in older_sets if name in s)
            why = (f"and its successor {succ} fails too" if succ else
                   "and its probe names no Superseded-by/Removed-upstream reason")
            problems.append(f"{name}: compiles on {older}, not on {newer}, {why} "
                            f"(driver/compat/{name}.c; the compiler's reason is in "
                            f"driver/.pvnet_probes/{name}.log of that build)")
    return problems


def render_table(by_line: Mapping[str, frozenset[str]], order: Sequence[str],
                 infos: Mapping[str, ProbeInfo]) -> str:
    """A probe x line table: Y compiled, - did not (with the declared reason where one is)."""
    lines = [ln for ln in order if ln in by_line]
    width = max([len(n) for n in infos] + [5])
    head = f"{'probe':{width}}  " + "  ".join(f"{ln:>5}" for ln in lines)
    rows = [head, "-" * len(head)]
    for name, info in sorted(infos.items()):
        cells = "  ".join(f"{'Y' if name in by_line[ln] else '-':>5}" for ln in lines)
        note = (f"  superseded by {info.superseded_by}" if info.superseded_by else
                "  removed upstream" if info.removed_upstream else "")
        rows.append(f"{name:{width}}  {cells}{note}")
    return "\n".join(rows)


def record_path(out: Path, line: str) -> Path:
    return out / f"probes-{line}.txt"


def record(out: Path, tree: KernelTree, probes: frozenset[str]) -> Path:
    """Write a line's probe set (one name a line, after a '# <line> <release>' header)."""
    out.mkdir(parents=True, exist_ok=True)
    path = record_path(out, tree.line)
    path.write_text(f"# {tree.line} {tree.release}\n" + "".join(f"{p}\n" for p in sorted(probes)))
    return path


def read_record(path: Path) -> frozenset[str]:
    return frozenset(ln.strip() for ln in path.read_text().splitlines()
                     if ln.strip() and not ln.startswith("#"))


def never_passing(by_line: Mapping[str, frozenset[str]], infos: Mapping[str, ProbeInfo],
                  newest: str) -> list[str]:
    """Probes that compile on none of the lines built, the newest line among them: such a
    probe (a typo, a wrong signature) would select its fallback everywhere without a word.
    Removed-upstream probes, and superseded ones whose successor passes, are excused."""
    if newest not in by_line:
        return []
    passed = set().union(*by_line.values())
    return [f"{name}: compiles on none of {', '.join(by_line)} (driver/compat/{name}.c): "
            "a probe that never compiles turns its feature off everywhere"
            for name, info in sorted(infos.items())
            if name not in passed and not info.removed_upstream
            and not (info.superseded_by and info.superseded_by in by_line[newest])]


def report(by_line: Mapping[str, frozenset[str]], order: Sequence[str],
           newest: str = "") -> tuple[str, list[str]]:
    """The probe x line table and the problems (lost or never-compiling probes) of a set of
    lines' builds; `newest`: the newest supported line (never_passing runs when it is built)."""
    infos = probe_infos()
    problems = lost_probes(by_line, order, infos) + never_passing(by_line, infos, newest)
    return render_table(by_line, order, infos), problems

