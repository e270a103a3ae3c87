"""Kernel-code lint: checkpatch --strict, and W=1 + sparse builds per kernel line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT
from .build import kbuild
from .kernels import KernelCache
from .util import CommandError, cache_dir, progress, run

WARNING_RE = re.compile(r"(warning|error):", re.I)


@dataclass
class LintResult:
    name: str
    ok: bool
    findings: list[str] = field(default_factory=list)


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


def warning_build(line: str, root: Path = REPO_ROOT) -> LintResult:
    """W=1 build with sparse on every file (C=2); any warning fails."""
    name = f"W=1 + sparse on {line}"
    progress(f"lint build: {name}")
    try:
        tree = KernelCache(cache_dir()).fetch(line)
        res = kbuild(tree, root, ("W=1", "C=2"), capture_log=True)
    except CommandError as err:
        return LintResult(name, False, compiler_warnings(err.stdout + err.stderr) or [str(err)])
    findings = compiler_warnings(res.log_text)
    return LintResult(name, not findings, findings)
