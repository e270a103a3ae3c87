"""A Debian root made with debootstrap in the harness cache, for kernels the host cannot build for.

Debian 13's kernels are built with its gcc-14, and their kbuild tools (fixdep, modpost) link
against its libc: on this Debian 12 host they do not run. So pvnet is built for them the way a
Debian 13 user builds it, inside a Debian 13 root: its own apt installs gcc, make, dkms and the
`linux-headers-*` packages, and `dkms build` runs there under chroot. The root is made once
(debootstrap, ~40 s) and reused; the host's apt sources and packages are never touched.

Commands run under `chroot(8)` with a clean environment, in a mount and PID namespace of their
own (`unshare --mount --pid --fork --mount-proc`): 7.x's objtool reads /proc, and a /proc
mounted in a private namespace goes away with the command, so a run that dies leaves no mount.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .util import CommandError, progress, run

DEBIAN = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
LISTS_MAX_AGE_S = 24 * 3600
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the build needs beyond minbase: the compiler and make, dkms, libelf for objtool, perl for
# W=1's kernel-doc, pahole for BTF, sparse for `invoke lint`, kmod for depmod.
BASE_PACKAGES = ("gcc", "make", "libc6-dev", "libelf-dev", "perl", "dwarves", "dkms", "sparse",
                 "kmod", "xz-utils", "zstd")


@dataclass(frozen=True)
class RootSpec:
    """A Debian release to bootstrap and the apt suites its root uses."""

    suite: str
    sources: tuple[tuple[str, str], ...]

    def sources_text(self) -> str:
        return "".join(f"deb {uri} {suite} main\n" for uri, suite in self.sources)


ROOTS: dict[str, RootSpec] = {
    "trixie": RootSpec("trixie", (
        (DEBIAN, "trixie"), (DEBIAN, "trixie-updates"), (SECURITY, "trixie-security"),
        (DEBIAN, "trixie-backports"),
    )),
}


# A private mount namespace whose child dies with unshare (a timeout kills unshare), so nothing
# mounted inside outlives the command.
PRIVATE_NS = ("unshare", "--mount", "--propagation", "private", "--fork", "--kill-child")


def mounts_below(path: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or below path in this process's mount namespace."""
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    base = str(path.resolve()) if mountinfo is None else str(path)
    points = [ln.split()[4] for ln in text.splitlines() if len(ln.split()) > 4]
    return [m for m in points if m == base or m.startswith(base + "/")]


def _remove_unmounted(path: Path) -> None:
    """rmtree, refusing while anything is mounted below (it would delete through the mount)."""
    busy = mounts_below(path)
    if busy:
        raise RuntimeError(f"cannot remove {path}: still mounted there: {', '.join(busy)} "
                           "(umount them, then run again)")
    shutil.rmtree(path)


class DebianRoot:
    """One bootstrapped root under <cache>/roots/<suite>; `ensure()` makes or refreshes it."""

    def __init__(self, cache: Path, suite: str) -> None:
        if suite not in ROOTS:
            raise ValueError(f"no Debian root spec for {suite!r}; known: {', '.join(ROOTS)}")
        self.spec = ROOTS[suite]
        self.path = cache / "roots" / suite
        self._lock = cache / "roots" / f".{suite}.lock"

    # ------------------------------------------------------------------ paths

    def host_path(self, inside: str | Path) -> Path:
        """The host path of a path inside the root ('/usr/src' -> <root>/usr/src)."""
        return self.path / str(inside).lstrip("/")

    def inside(self, host: Path) -> str:
        """The in-root path of a host path below the root."""
        return "/" + str(host.resolve().relative_to(self.path.resolve()))

    @property
    def ready(self) -> bool:
        return (self.path / ".pvnet-ready").exists()

    # ------------------------------------------------------------------ running

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float | None = 1800, check: bool = True,
            cwd: str = "/") -> subprocess.CompletedProcess[str]:
        """Run a command inside the root with a clean environment (no host variables)."""
        base = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8",
                "DEBIAN_FRONTEND": "noninteractive", "TMPDIR": "/tmp"}
        base.update(env or {})
        assigns = [f"{k}={v}" for k, v in base.items()]
        script = 'cd "$1" && shift && exec "$@"'
        return run([*PRIVATE_NS, "--pid", f"--mount-proc={self.path}/proc", "chroot",
                    str(self.path), "/usr/bin/env", "-i", *assigns, "/bin/sh", "-c", script,
                    "sh", cwd, *argv], timeout=timeout, check=check, env={})

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                cwd: str = "/") -> list[str]:
        """The host argv that runs `argv` inside the root as run() does, for a caller that
        streams the output itself (a kernel build's log)."""
        base = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8",
                "DEBIAN_FRONTEND": "noninteractive", "TMPDIR": "/tmp"}
        base.update(env or {})
        assigns = [f"{k}={v}" for k, v in base.items()]
        return [*PRIVATE_NS, "--pid", f"--mount-proc={self.path}/proc", "chroot",
                str(self.path), "/usr/bin/env", "-i", *assigns, "/bin/sh", "-c",
                'cd "$1" && shift && exec "$@"', "sh", cwd, *argv]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes to the root (bootstrap, apt) between harness processes."""
        self._lock.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ making it

    def ensure(self) -> DebianRoot:
        """Bootstrap the root if it is missing or half made (no network use otherwise: the
        apt lists are refreshed only when something is installed)."""
        with self.locked():
            if not self.ready:
                self._bootstrap()
            self._write_sources()
        return self

    def _bootstrap(self) -> None:
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
        tmp = self.path.with_name(self.path.name + ".partial")
        for old in (self.path, tmp):
            if old.exists():
                progress(f"removing a half-made Debian root at {old}")
                _remove_unmounted(old)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        progress(f"debootstrap {self.spec.suite} into {self.path} (about a minute, once)")
        start = time.monotonic()
        # debootstrap mounts proc/sys (and may bind /dev) inside the target and unmounts them
        # from an exit trap, which a kill skips: in a private mount namespace they die with it.
        run([*PRIVATE_NS, "debootstrap", "--variant=minbase",
             f"--include={','.join(BASE_PACKAGES)}", self.spec.suite, str(tmp), DEBIAN],
            timeout=1800)
        tmp.rename(self.path)
        (self.path / ".pvnet-ready").write_text(f"{time.time():.0f}\n")
        progress(f"Debian root {self.spec.suite} ready in {time.monotonic() - start:.0f} s")

    def _write_sources(self) -> None:
        src = self.host_path("/etc/apt/sources.list")
        if not src.exists() or src.read_text() != self.spec.sources_text():
            src.write_text(self.spec.sources_text())
            (self.path / ".pvnet-apt-updated").unlink(missing_ok=True)

    def _update(self, force: bool = False) -> None:
        stamp = self.path / ".pvnet-apt-updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S:
            return
        progress(f"apt-get update in the {self.spec.suite} root")
        self.run(["apt-get", "-q", "update"], timeout=900)
        stamp.touch()

    # ------------------------------------------------------------------ packages

    def installed_version(self, package: str) -> str | None:
        proc = self.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package], check=False)
        words = proc.stdout.split()
        if proc.returncode == 0 and words[:3] == ["install", "ok", "installed"]:
            return words[3]
        return None

    def install(self, specs: Sequence[str], what: str) -> None:
        """apt-get install `name` or `name=version` specs in the root (no recommends)."""
        with self.locked():
            progress(f"installing {what} in the {self.spec.suite} root")
            self._update()
            try:
                self._apt_install(specs)
            except CommandError:
                self._update(force=True)  # a version newer than the lists: fetch them again
                self._apt_install(specs)

    def _apt_install(self, specs: Sequence[str]) -> None:
        # Debian's 6.12 headers pull their linux-image, and with it initramfs-tools: INITRD=No
        # skips an initrd for a kernel this root never boots (initramfs-tools' kernel hook).
        self.run(["apt-get", "-q", "-y", "--no-install-recommends", "install", *specs],
                 env={"INITRD": "No"}, timeout=1800)

    def ensure_packages(self, wanted: Mapping[str, str | None], what: str) -> None:
        """Install the packages of `wanted` (name -> exact version or None) that are missing."""
        missing = [f"{n}={v}" if v else n for n, v in wanted.items()
                   if (have := self.installed_version(n)) is None or (v and have != v)]
        if missing:
            self.install(missing, what)

    def dpkg_status(self, package: str) -> str | None:
        """dpkg's Status of a package in the root ('install ok installed', 'deinstall ok
        config-files', ...), None when dpkg has no record of it (never installed, or purged)."""
        proc = self.run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
        status = proc.stdout.strip() if proc.returncode == 0 else ""
        return status or None

    @contextmanager
    def copied_in(self, files: Sequence[Path]) -> Iterator[list[str]]:
        """Copies of host files in a fresh folder under the root's /var/tmp, removed on exit;
        yields their in-root paths."""
        tmp = self.host_path("/var/tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="pvnet-in-", dir=tmp))
        try:
            folder.chmod(0o755)  # apt's _apt user reads local .debs it installs
            paths = []
            for f in files:
                dest = folder / f.name
                shutil.copyfile(f, dest)
                dest.chmod(0o644)
                paths.append(self.inside(dest))
            yield paths
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def install_local(self, debs: Sequence[Path], what: str) -> subprocess.CompletedProcess[str]:
        """`apt-get install ./name.deb` of host .deb files in the root, the way a user installs
        a downloaded package: copied in, dependencies from the root's apt, maintainer scripts
        run there. Returns apt's output (a postinst's warnings are in it)."""
        with self.locked(), self.copied_in(debs) as paths:
            progress(f"apt-get install {what} in the {self.spec.suite} root")
            self._update()
            return self.run(["apt-get", "-q", "-y", "--no-install-recommends", "install", *paths],
                            env={"INITRD": "No"}, timeout=1800)

    def purge(self, packages: Sequence[str], what: str) -> subprocess.CompletedProcess[str] | None:
        """`apt-get purge` of the packages dpkg knows in the root (None when it knows none)."""
        with self.locked():
            known = [p for p in packages if self.dpkg_status(p) is not None]
            if not known:
                return None
            progress(f"apt-get purge {what} in the {self.spec.suite} root")
            return self.run(["apt-get", "-q", "-y", "purge", *known], timeout=1800)


def chroot_available() -> bool:
    """Whether this process may chroot (root)."""
    return os.geteuid() == 0 and shutil.which("chroot") is not None
