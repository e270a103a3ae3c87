"""Build pvnet against an extracted kernel: through DKMS (the product path) or plain kbuild."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO_ROOT, read_version
from .capabilities import module_probes
from .debroot import DebianRoot
from .kernels import KernelTree
from .templates import render
from .util import CommandError, cache_dir, progress, run

# The module source: these files plus driver/**/*.{c,h} (see source_files)
TOP_LEVEL_FILES = ("Kbuild", "VERSION", "dkms.conf")
SOURCE_DIR = "driver"
SOURCE_SUFFIXES = frozenset({".c", ".h"})
# Written by Kbuild into driver/ by in-place builds: never source
GENERATED = frozenset({"pvnet_compat_probed.h"})
NO_DKMS_SIGNING = "/nonexistent/pvnet-no-dkms-signing"


@dataclass(frozen=True)
class BuildResult:
    module: Path
    kernel_release: str
    version: str
    log: Path | None
    log_text: str = ""
    # The compat probes (driver/compat/<name>.c) that compiled for this kernel, read from
    # the module's own modinfo (pvnet_probes=...): what the build found, for tests to ask.
    probes: frozenset[str] = field(default_factory=frozenset)

    def has(self, probe: str) -> bool:
        """Whether the probe driver/compat/<probe>.c compiled (name in any case)."""
        return probe.lower() in self.probes


def render_dkms_conf(version: str) -> str:
    return render("dkms.conf.j2", version=version)


def compiler_env(tree: KernelTree, shim_dir: Path) -> dict[str, str]:
    """PATH with a shim for the compiler name the headers ask for, when it is missing.

    Debian's 5.10 headers name gcc-10, absent on Debian 12; the machine's gcc builds a module
    that loads. The shim is only created when the named compiler is not on PATH.
    """
    cc = tree.compiler()
    path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    if shutil.which(cc):
        return {"PATH": path}
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError(f"the headers want {cc} and no gcc is installed")
    shim_dir.mkdir(parents=True, exist_ok=True)
    link = shim_dir / cc
    if not link.exists():
        link.symlink_to(gcc)
    progress(f"{cc} not installed: using {gcc} through a PATH shim")
    return {"PATH": f"{shim_dir}:{path}"}


def source_files(src_root: Path = REPO_ROOT) -> list[Path]:
    """The module source, relative to src_root: Kbuild, VERSION, dkms.conf, driver/**/*.{c,h}.

    Build products of in-place builds (*.o, *.ko, .*.cmd, ...) are never part of it.
    """
    files = []
    for name in TOP_LEVEL_FILES:
        if not (src_root / name).is_file():
            raise FileNotFoundError(f"module source incomplete: {src_root / name} missing")
        files.append(Path(name))
    driver = src_root / SOURCE_DIR
    for p in sorted(driver.rglob("*")):
        rel = p.relative_to(src_root)
        if p.is_file() and p.suffix in SOURCE_SUFFIXES and not any(
            part.startswith(".") for part in rel.parts
        ) and not p.name.endswith(".mod.c") and p.name not in GENERATED:
            files.append(rel)
    if not any(f.suffix == ".c" for f in files):
        raise FileNotFoundError(f"no C source under {driver}")
    return files



def stage_module_source(src_root: Path, dest: Path) -> list[Path]:
    """Copy the module source into dest (created fresh) with normalized modes."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    dest.chmod(0o755)
    files = source_files(src_root)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_root / rel, target)
        target.chmod(0o644)
    for d in dest.rglob("*"):
        if d.is_dir():
            d.chmod(0o755)
    return files


def build_dir_for(tree: KernelTree, root: Path = REPO_ROOT) -> Path:
    return root / "build" / tree.release


@dataclass(frozen=True)
class Builder:
    """Where a line's module is built: on this machine (root None), or inside a Debian root
    under chroot for lines whose kbuild tools need that root's libc (KernelLine.build_root).

    Paths handed to `run` are host paths; they are translated for the chroot.
    """

    tree: KernelTree
    root: DebianRoot | None = None

    def path(self, host: Path) -> str:
        return self.root.inside(host) if self.root else str(host)

    def headers(self) -> str:
        if self.tree.kbuild_dir:  # a harness-built kernel: its build tree in the root
            return self.tree.kbuild_dir
        if self.root:
            return f"/usr/src/{self.tree.headers_package}"
        return str(self.tree.headers_dir)

    def work_dir(self, wanted: Path) -> Path:
        """`wanted` on the host; in a root, a folder inside it named after `wanted`."""
        if self.root is None:
            return wanted
        key = hashlib.sha1(str(wanted.resolve()).encode()).hexdigest()[:10]
        return self.root.host_path(f"/var/tmp/pvnet-build/{key}-{wanted.name}")

    def remove_work(self, wanted: Path) -> None:
        """Remove the in-root folder work_dir(wanted) stands for (a host folder is the
        caller's own to remove)."""
        if self.root is not None:
            shutil.rmtree(self.work_dir(wanted), ignore_errors=True)

    def env(self, work: Path) -> dict[str, str]:
        """Compiler PATH for host-built headers (the root has the compiler its headers name)."""
        return {} if self.root else compiler_env(self.tree, work / "shims")

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 1800,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.root:
            return self.root.run(argv, env=env, timeout=timeout, check=check)
        return run(argv, env=env, timeout=timeout, check=check)


def builder_for(tree: KernelTree) -> Builder:
    """The builder of tree's line; for a rooted line the root is made (once) and the headers
    package of tree's exact version installed in it with the root's apt."""
    if not tree.build_root:
        return Builder(tree)
    root = DebianRoot(cache_dir(), tree.build_root).ensure()
    if tree.kbuild_dir:  # a harness-built kernel (debugkernel.py): no headers package
        return Builder(tree, root)
    root.ensure_packages({tree.headers_package: tree.version},
                         f"{tree.headers_package} {tree.version}")
    return Builder(tree, root)


def dkms_tree_args(work: Path, builder: Builder | None = None) -> list[str]:
    """--dkmstree/--sourcetree/--installtree of a private DKMS tree under work (created)."""
    for d in ("dkms", "src", "install"):
        (work / d).mkdir(parents=True, exist_ok=True)
    where = builder.path if builder else str
    return [
        "--dkmstree", where(work / "dkms"),
        "--sourcetree", where(work / "src"),
        "--installtree", where(work / "install"),
    ]


def dkms_build_module(version: str, builder: Builder, work: Path, env: dict[str, str]) -> Path:
    """`dkms build` of pvnet/version (already added to the private tree under work) for the
    builder's kernel; the built module. A failure carries the tail of DKMS's make.log."""
    tree = builder.tree
    config = [] if builder.root else ["--config", str(tree.config)]
    try:
        builder.run(
            [
                "dkms", "build", "-m", "pvnet", "-v", version, "-k", tree.release,
                "--kernelsourcedir", builder.headers(), *config,
                *dkms_tree_args(work, builder),
            ],
            env=env,
        )
    except CommandError as err:
        log = work / "dkms" / "pvnet" / version / "build" / "make.log"
        if log.exists():
            err.args = (f"{err.args[0]}\n--- make.log ---\n{log.read_text()[-4000:]}",)
        raise
    base = work / "dkms" / "pvnet" / version / tree.release / "x86_64" / "module"
    mods = sorted(base.glob("pvnet.ko*"))
    if not mods:
        raise RuntimeError(f"dkms reported success but no pvnet.ko under {base}")
    return mods[0]


def dkms_env(builder: Builder, work: Path) -> dict[str, str]:
    """Compiler PATH for the headers, and no DKMS signing.

    dkms signs with a self-made /var/lib/dkms/mok.key whenever it finds a sign-file at a
    system path (linux-kbuild installed); the harness never touches the machine's keys.
    """
    return {**builder.env(work), "sign_file": NO_DKMS_SIGNING}


def dkms_build(tree: KernelTree, src_root: Path = REPO_ROOT, out: Path | None = None) -> BuildResult:
    """dkms add + build in a private dkms tree; returns the built module and its probe set."""
    version = read_version(src_root)
    builder = builder_for(tree)
    bdir = builder.work_dir(out or build_dir_for(tree, src_root))
    if (bdir / "dkms").exists():
        shutil.rmtree(bdir / "dkms")
    trees = dkms_tree_args(bdir, builder)
    stage_module_source(src_root, bdir / "src" / f"pvnet-{version}")
    env = dkms_env(builder, bdir)
    where = f" in the {tree.build_root} root" if builder.root else ""
    progress(f"dkms build pvnet/{version} for {tree.release}{where}")
    builder.run(["dkms", "add", "-m", "pvnet", "-v", version, *trees], env=env)
    module = dkms_build_module(version, builder, bdir, env)
    log = module.parent.parent / "log" / "make.log"
    res = BuildResult(module, tree.release, version, log if log.exists() else None,
                      probes=module_probes(module))
    progress(f"probes passed on {tree.release}: {' '.join(sorted(res.probes)) or 'none'}")
    return res


def kbuild(
    tree: KernelTree,
    src_root: Path = REPO_ROOT,
    extra: tuple[str, ...] = (),
    out: Path | None = None,
    capture_log: bool = False,
) -> BuildResult:
    """Plain `make -C headers M=...` in a staged copy (developer loop, lint builds)."""
    version = read_version(src_root)
    builder = builder_for(tree)
    bdir = builder.work_dir(out or build_dir_for(tree, src_root)) / "kbuild"
    stage_module_source(src_root, bdir)
    env = builder.env(bdir.parent)
    proc = builder.run(["make", "-C", builder.headers(), f"M={builder.path(bdir)}", *extra,
                        "modules"], env=env)
    text = (proc.stdout or "") + (proc.stderr or "") if capture_log else ""
    if not capture_log and proc.stderr:
        print(proc.stderr, end="")
    module = bdir / "pvnet.ko"
    return BuildResult(module, tree.release, version, None, text, probes=module_probes(module))
