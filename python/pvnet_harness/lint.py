"""Kernel-code lint: checkpatch --strict, and W=1 + sparse builds per kernel line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT
from .build import kbuild
from .capabilities import report
from .kernels import LINES, KernelCache
from .util import CommandError, cache_dir, progress, run

WARNING_RE = re.compile(r"(warning|error):", re.I)
# The kernel's Makefile drops C=2 with this when its checker-valid.sh rejects the sparse found
# (7.x headers use __typeof_unqual__, which Debian 13's sparse 0.6.4 cannot parse).
SPARSE_REFUSED_RE = re.compile(r"C=\d specified, but (\S+) is not available or not up to date")


@dataclass
class LintResult:
    name: str
    ok: bool
    findings: list[str] = field(default_factory=list)
    # What did not run and why (printed with the result; not a finding)
    notes: list[str] = field(default_factory=list)
    # warning builds: the compat probes that compiled for that line
    probes: frozenset[str] = field(default_factory=frozenset)


def driver_sources(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(p for p in (root / "driver").rglob("*") if p.suffix in (".c", ".h"))


def checkpatch(root: Path = REPO_ROOT, cache: KernelCache | None = None) -> LintResult:
    script = (cache or KernelCache(cache_dir())).checkpatch()
    files = [str(p) for p in driver_sources(root)]
    proc = run(["perl", str(script), "--strict", "--no-tree", "--terse", "--show-types",
                "--ignore", "FILE_PATH_CHANGES", "-f", *files], check=False)
    findings = [ln for ln in proc.stdout.splitlines()
                if re.search(r":\d+: (ERROR|WARNING|CHECK):", ln)]
    return LintResult("checkpatch --strict", proc.returncode == 0 and not findings, findings)


def compiler_warnings(text: str) -> list[str]:
    """Lines of a kbuild log that are compiler or sparse warnings/errors."""
    return [ln for ln in text.splitlines()
            if WARNING_RE.search(ln) and not ln.startswith("make")]


def sparse_refusal(text: str) -> str | None:
    """Why the kernel's Makefile did not run sparse, if it said so."""
    m = SPARSE_REFUSED_RE.search(text)
    if not m:
        return None
    return (f"sparse not run: the kernel's checker-valid.sh rejects {m.group(1)} "
            "(the headers use __typeof_unqual__, which this sparse cannot parse)")


def warning_build(line: str, root: Path = REPO_ROOT) -> LintResult:
    """W=1 build with sparse on every file (C=2); any warning fails."""
    name = f"W=1 + sparse on {line}"
    progress(f"lint build: {name}")
    try:
        tree = KernelCache(cache_dir()).fetch(line)
        res = kbuild(tree, root, ("W=1", "C=2"), capture_log=True)
    except CommandError as err:
        return LintResult(name, False, compiler_warnings(err.stdout + err.stderr) or [str(err)])
    refused = sparse_refusal(res.log_text)
    findings = compiler_warnings(res.log_text)
    return LintResult(name if refused is None else f"W=1 on {line}", not findings, findings,
                      [refused] if refused else [], res.probes)


def probe_check(builds: dict[str, LintResult]) -> LintResult:
    """No compat probe that compiles on an older line fails on a newer one without a reason
    named in its file (capabilities.lost_probes); the probe x line table as notes."""
    by_line = {ln: r.probes for ln, r in builds.items() if r.probes}
    order = [ln for ln in LINES if ln in by_line]
    table, problems = report(by_line, order)
    return LintResult(f"no probe lost on a newer line ({', '.join(order)})", not problems,
                      problems, table.splitlines() if len(order) > 1 else [])
