"""The debug-kernel lane: a KASAN + lockdep + kmemleak + fault-injection kernel built from
Debian's linux-source package, inside the Debian root of its line, cached like the other lines.

Recipe: `make tinyconfig`, `make kvm_guest.config`, then the repo's fragment
(kconfig/<line>.config) merged with scripts/kconfig/merge_config.sh and `make olddefconfig`.
Every option the fragment names is checked in the final .config: one dropped by a missing
dependency fails the build with its name. Then `make bzImage modules`, `modules_install`.

The cache key is the source package's version and a hash of the recipe (fragment text and the
make targets): <cache>/kernels/<version>-debug-<sha12>/ holds a manifest.json (a KernelTree),
root/lib/modules/<release>, root/boot/{vmlinuz,config}-<release> and the ELF vmlinux the guest
boots through PVH. The build tree stays in the root (/usr/src/linux-pvnet-<key>), where DKMS
builds pvnet against it (KernelTree.kbuild_dir).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT
from .debroot import DebianRoot
from .kernels import LINES, DebugLine, KernelCache, KernelTree, _ref, newest_for_line
from .util import log as ulog
from .util import progress, run

# What `make` needs in the root beyond debroot.BASE_PACKAGES.
BUILD_PACKAGES = ("bc", "bison", "flex", "libssl-dev", "libelf-dev", "cpio", "dwarves",
                  "python3", "gcc", "make", "kmod", "gzip")
RECIPE = ("tinyconfig", "kvm_guest.config")
ARCH = "x86_64"
TARGETS = ("bzImage", "modules")
KEY_FILE = "pvnet-config-key"  # in the build tree: the key its objects were last built for


# ---------------------------------------------------------------- pure helpers


def recipe_hash(fragment_text: str) -> str:
    """sha256[:12] of what decides the .config: the make targets of the recipe and the
    fragment's options (sorted; comments and order do not count)."""
    h = hashlib.sha256()
    h.update(f"arch={ARCH} recipe={'+'.join(RECIPE)} targets={'+'.join(TARGETS)}\n".encode())
    for opt, val in sorted(parse_config(fragment_text).items()):
        h.update(f"{opt}={'n' if val is None else val}\n".encode())
    return h.hexdigest()[:12]


_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")


def parse_config(text: str) -> dict[str, str | None]:
    """A .config or fragment -> {option: value}, None for `# CONFIG_X is not set`."""
    out: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET.match(line):
            out[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            out[m.group(1)] = None
    return out


def config_mismatches(fragment: str, final: str) -> list[str]:
    """Fragment options the final .config does not have as asked, one line each
    ('CONFIG_X: asked y, got not set')."""
    want = parse_config(fragment)
    have = {k: v for k, v in parse_config(final).items() if v is not None}
    bad = []
    for opt, val in want.items():
        got = have.get(opt)
        if got != val:
            asked = "not set" if val is None else val
            bad.append(f"{opt}: asked {asked}, got {'not set' if got is None else got}")
    return bad


def release_of(makefile: str, localversion: str) -> str:
    """`uname -r` of a tree: VERSION.PATCHLEVEL.SUBLEVEL EXTRAVERSION + CONFIG_LOCALVERSION."""
    vals = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{key}\s*=\s*(\S*)\s*$", makefile, re.M)
        vals[key] = m.group(1) if m else ""
    return (f"{vals['VERSION']}.{vals['PATCHLEVEL']}.{vals['SUBLEVEL']}{vals['EXTRAVERSION']}"
            f"{localversion}")


def make_progress(line: str) -> str | None:
    """The object a kbuild line names ('  CC      net/core/dev.o' -> 'net/core/dev.o'),
    None for other lines."""
    m = re.match(r"^\s+(CC \[M\]|LD \[M\]|CC|LD|AR|AS)\s+(\S+)", line)
    return m.group(2) if m else None


# ---------------------------------------------------------------- the build


@dataclass(frozen=True)
class DebugBuild:
    """Where one debug line's build lives."""

    line: DebugLine
    version: str  # the linux-source package version
    key: str  # recipe hash
    cache: Path

    @property
    def name(self) -> str:
        return f"{self.version}-debug-{self.key}"

    @property
    def tdir(self) -> Path:
        return self.cache / "kernels" / self.name

    @property
    def kbuild_dir(self) -> str:
        """The build tree inside the root: one per source version, so a changed fragment
        rebuilds incrementally; its pvnet-config-key says which key it was last built for."""
        return f"/usr/src/linux-pvnet-{self.version}-debug"


def fragment_text(line: DebugLine) -> str:
    return (REPO_ROOT / line.fragment).read_text()


def cached_tree(kc: KernelCache, line: DebugLine) -> KernelTree | None:
    """The cached tree of the line built from the current fragment (any source version:
    --offline), the newest first."""
    key = recipe_hash(fragment_text(line))
    best = None
    for manifest in sorted((kc.cache / "kernels").glob(f"*-debug-{key}/manifest.json")):
        tree = KernelTree.from_json(manifest.read_text())
        if tree.line == line.name:
            best = tree
    return best


def fetch_debug(kc: KernelCache, line: DebugLine, offline: bool = False) -> KernelTree:
    """The debug kernel of `line`: cached when built from the same source version and
    fragment, else built (about a quarter of an hour on 2 cores)."""
    if offline:
        tree = cached_tree(kc, line)
        if tree is None:
            raise LookupError(f"no cached {line.name} kernel for this fragment; run without "
                              "offline")
        return tree
    base = LINES[line.base]
    kc.apt.update()
    meta = newest_for_line(kc.apt.show(f"linux-source-{line.base}"), base)
    b = DebugBuild(line, meta["Version"], recipe_hash(fragment_text(line)), kc.cache)
    manifest = b.tdir / "manifest.json"
    if manifest.exists():
        tree = KernelTree.from_json(manifest.read_text())
        root = DebianRoot(kc.cache, line.build_root)
        kdir = root.host_path(tree.kbuild_dir)
        key_file = kdir / KEY_FILE
        if (kdir / "Module.symvers").exists() and key_file.exists() \
                and key_file.read_text().strip() == b.key:
            progress(f"kernel {line.name}: {b.name} cached ({b.tdir})")
            return tree
    ref = _ref(meta)
    debs = kc.cache / "checkpatch" / "debs"  # shared with KernelCache.checkpatch()
    kc._download_verified([ref], debs, f"{ref.name} {ref.version}")
    return build(b, debs / ref.deb_name)


def _ensure_source(root: DebianRoot, b: DebugBuild, deb: Path) -> Path:
    """The unpacked source in the root (once per key); its host path."""
    src = root.host_path(b.kbuild_dir)
    if (src / ".pvnet-unpacked").exists():
        return src
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    progress(f"unpacking {deb.name} into the root ({b.kbuild_dir})")
    run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -O --wildcards '
         '"./usr/src/linux-source-*.tar.xz" | tar -C "$2" --strip-components=1 -xJ',
         "sh", deb, src], timeout=900)
    (src / ".pvnet-unpacked").write_text(b.version + "\n")
    return src


def _configure(root: DebianRoot, b: DebugBuild, src: Path) -> str:
    """tinyconfig + kvm_guest.config + the fragment; checked; the final .config text."""
    frag = fragment_text(b.line)
    (src / "pvnet-fragment.config").write_text(frag)
    progress(f"kernel {b.line.name}: make {' + '.join(RECIPE)} + {b.line.fragment}")
    mk = ["make", f"ARCH={ARCH}"]
    for target in RECIPE:
        root.run([*mk, target], cwd=b.kbuild_dir, timeout=600)
    root.run(["scripts/kconfig/merge_config.sh", "-m", ".config", "pvnet-fragment.config"],
             cwd=b.kbuild_dir, timeout=600)
    root.run([*mk, "olddefconfig"], cwd=b.kbuild_dir, timeout=600)
    final = (src / ".config").read_text()
    bad = config_mismatches(frag, final)
    if bad:
        raise RuntimeError(f"{b.line.fragment}: options not in the merged .config (a missing "
                           "dependency?):\n  " + "\n  ".join(bad))
    return final


def _make_logged(root: DebianRoot, b: DebugBuild, log: Path, argv: list[str],
                 on_line: Callable[[str], None]) -> None:
    """Run make in the root with its output in `log`, feeding each line to on_line."""
    cmd = root.command(argv, cwd=b.kbuild_dir)
    ulog.info("$ %s (output in %s)", shlex.join(cmd), log)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            on_line(line)
        rc = proc.wait()
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"kernel build failed ({rc}): {' '.join(argv)}; log {log}\n{tail}")


def build(b: DebugBuild, deb: Path) -> KernelTree:
    """Unpack, configure, compile and install the debug kernel; write its manifest."""
    root = DebianRoot(b.cache, b.line.build_root).ensure()
    root.ensure_packages({p: None for p in BUILD_PACKAGES}, "the kernel build tools")
    start = time.monotonic()
    src = _ensure_source(root, b, deb)
    (src / KEY_FILE).unlink(missing_ok=True)
    config = _configure(root, b, src)
    release = release_of((src / "Makefile").read_text(),
                         (parse_config(config).get("CONFIG_LOCALVERSION") or "").strip('"'))
    b.tdir.mkdir(parents=True, exist_ok=True)
    log = b.tdir / "build.log"
    log.write_text("")
    jobs = os.cpu_count() or 2
    progress(f"kernel {b.line.name}: make -j{jobs} {' '.join(TARGETS)} ({release}; log {log})")
    count = [0]
    last = [time.monotonic()]

    def tick(line: str) -> None:
        obj = make_progress(line)
        if obj is None:
            return
        count[0] += 1
        now = time.monotonic()
        if now - last[0] >= 30:
            last[0] = now
            progress(f"kernel {b.line.name}: {count[0]} objects, {now - start:.0f} s ({obj})")

    _make_logged(root, b, log, ["make", f"ARCH={ARCH}", f"-j{jobs}", *TARGETS], tick)
    progress(f"kernel {b.line.name}: compiled {count[0]} objects in "
             f"{time.monotonic() - start:.0f} s; installing modules")
    stage = f"/var/tmp/pvnet-kbuild/{b.name}-modules"
    stage_host = root.host_path(stage)
    if stage_host.exists():
        shutil.rmtree(stage_host)
    _make_logged(root, b, log, ["make", f"ARCH={ARCH}", f"INSTALL_MOD_PATH={stage}",
                                "INSTALL_MOD_STRIP=1", "modules_install"], lambda _: None)
    tree = _install(b, root, src, stage_host, release)
    shutil.rmtree(stage_host, ignore_errors=True)
    (src / KEY_FILE).write_text(b.key + "\n")
    _prune_other_versions(root, b)
    secs = time.monotonic() - start
    (b.tdir / "build-seconds").write_text(f"{secs:.0f}\n")
    progress(f"kernel {b.line.name}: {release} built in {secs:.0f} s ({b.tdir})")
    return tree


def _prune_other_versions(root: DebianRoot, b: DebugBuild) -> None:
    """Remove the build trees of older source versions (2 GB each) from the root; their
    cached kernels then no longer count (fetch_debug asks for the tree)."""
    for tree in root.host_path("/usr/src").glob("linux-pvnet-*-debug"):
        if tree.name != Path(b.kbuild_dir).name:
            progress(f"removing the old debug build tree {root.inside(tree)}")
            shutil.rmtree(tree, ignore_errors=True)


def _install(b: DebugBuild, root: DebianRoot, src: Path, stage: Path, release: str) -> KernelTree:
    troot = b.tdir / "root"
    if troot.exists():
        shutil.rmtree(troot)
    (troot / "boot").mkdir(parents=True)
    (troot / "lib").mkdir()
    shutil.copytree(stage / "lib" / "modules" / release, troot / "lib" / "modules" / release,
                    symlinks=True)
    for link in ("build", "source"):  # point into the root's build tree, not followed here
        (troot / "lib" / "modules" / release / link).unlink(missing_ok=True)
    shutil.copyfile(src / "arch/x86/boot/bzImage", troot / "boot" / f"vmlinuz-{release}")
    shutil.copyfile(src / ".config", troot / "boot" / f"config-{release}")
    shutil.copyfile(src / "System.map", troot / "boot" / f"System.map-{release}")
    shutil.copyfile(src / "vmlinux", b.tdir / "vmlinux")
    run(["depmod", "-b", troot, "-a", release])
    tree = KernelTree(
        line=b.line.name,
        version=b.version,
        release=release,
        root=troot,
        # What QEMU boots: the bzImage. The PVH entry of the ELF vmlinux (the production
        # lines' fast path) faults with KASAN on 6.12: it runs instrumented memcmp before
        # the KASAN shadow exists (a page fault at a shadow address, then a triple fault).
        # The ELF vmlinux stays next to the manifest for symbolizing reports.
        vmlinux=troot / "boot" / f"vmlinuz-{release}",
        packages=[{"name": f"linux-source-{b.line.base}", "version": b.version,
                   "config": b.key}],
        build_root=b.line.build_root,
        kbuild_dir=b.kbuild_dir,
    )
    (b.tdir / "manifest.json").write_text(tree.to_json())
    return tree

