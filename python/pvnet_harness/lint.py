"""Kernel-code lint: checkpatch --strict, and W=1 + sparse builds per kernel line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT
from .build import Builder, build_dir_for, builder_for, kbuild
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


TYPEOF_UNQUAL_C = "static inline int u(const int *q) { __typeof_unqual__(*q) v = *q; return v; }\n"


def sparse_refusal(text: str) -> str | None:
    """The kernel Makefile's message when it dropped C=2, if it did."""
    m = SPARSE_REFUSED_RE.search(text)
    return m.group(0) if m else None


def sparse_lacks_typeof_unqual(builder: Builder, work: Path) -> bool:
    """Whether the builder's sparse runs and fails on __typeof_unqual__ (the one refusal the
    lint accepts: a sparse that is missing or broken otherwise is a finding)."""
    snippet = work / "typeof_unqual.c"
    snippet.parent.mkdir(parents=True, exist_ok=True)
    snippet.write_text(TYPEOF_UNQUAL_C)
    proc = builder.run(["sh", "-c", 'command -v sparse >/dev/null || exit 127; sparse "$1" 2>&1',
                        "sh", builder.path(snippet)], env={}, check=False)
    return proc.returncode != 127 and "error" in proc.stdout


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
    notes = []
    if refused:
        builder = builder_for(tree)
        if not sparse_lacks_typeof_unqual(builder, builder.work_dir(build_dir_for(tree, root))):
            return LintResult(name, False, [f"{refused}, and not for __typeof_unqual__: "
                                            "sparse is missing or broken", *findings])
        name = f"W=1 on {line}"
        notes = [f"sparse not run: {refused} (this sparse cannot parse __typeof_unqual__, "
                 "which these headers use)"]
    return LintResult(name, not findings, findings, notes, res.probes)


def probe_check(builds: dict[str, LintResult]) -> LintResult:
    """No compat probe that compiles on an older line fails on a newer one without a reason
    named in its file (capabilities.lost_probes); the probe x line table as notes."""
    by_line = {ln: r.probes for ln, r in builds.items() if r.probes}
    order = [ln for ln in LINES if ln in by_line]
    table, problems = report(by_line, order, newest=list(LINES)[-1])
    return LintResult(f"no probe lost on a newer line ({', '.join(order)})", not problems,
                      problems, table.splitlines() if len(order) > 1 else [])
