"""Small shared helpers: the one subprocess runner, logging, cache location."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("pvnet")


class CommandError(RuntimeError):
    """A command failed; carries the command line and its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = "\n".join((stderr or stdout).strip().splitlines()[-40:])
        super().__init__(f"command failed ({returncode}): {shlex.join(self.argv)}\n{tail}")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it; raise CommandError with its stderr on failure."""
    args = [os.fspath(a) for a in argv]
    log.info("$ %s", shlex.join(args))
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        text=True,
        capture_output=capture,
        timeout=timeout,
        input=input_text,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout or "", proc.stderr or "")
    return proc


def cache_dir() -> Path:
    """Where kernels, images and builds are cached (PVNET_CACHE overrides)."""
    env = os.environ.get("PVNET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pvnet"


def progress(msg: str) -> None:
    """One progress line for long steps, always visible (stderr, flushed)."""
    print(f"[pvnet] {msg}", file=sys.stderr, flush=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
