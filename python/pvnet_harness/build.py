"""Build pvnet against an extracted kernel: through DKMS (the product path) or plain kbuild."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT, read_version
from .kernels import KernelTree
from .templates import render
from .util import CommandError, progress, run

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


def dkms_tree_args(work: Path) -> list[str]:
    """--dkmstree/--sourcetree/--installtree of a private DKMS tree under work (created)."""
    for d in ("dkms", "src", "install"):
        (work / d).mkdir(parents=True, exist_ok=True)
    return [
        "--dkmstree", str(work / "dkms"),
        "--sourcetree", str(work / "src"),
        "--installtree", str(work / "install"),
    ]


def dkms_build_module(version: str, tree: KernelTree, work: Path, env: dict[str, str]) -> Path:
    """`dkms build` of pvnet/version (already added to the private tree under work) for tree;
    the built module. A failure carries the tail of DKMS's make.log."""
    try:
        run(
            [
                "dkms", "build", "-m", "pvnet", "-v", version, "-k", tree.release,
                "--kernelsourcedir", str(tree.headers_dir), "--config", str(tree.config),
                *dkms_tree_args(work),
            ],
            env=env,
            timeout=1800,
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


def dkms_env(tree: KernelTree, work: Path) -> dict[str, str]:
    """Compiler PATH for the headers, and no DKMS signing.

    dkms signs with a self-made /var/lib/dkms/mok.key whenever it finds a sign-file at a
    system path (linux-kbuild installed); the harness never touches the machine's keys.
    """
    return {**compiler_env(tree, work / "shims"), "sign_file": NO_DKMS_SIGNING}


def dkms_build(tree: KernelTree, src_root: Path = REPO_ROOT, out: Path | None = None) -> BuildResult:
    """dkms add + build in a private dkms tree; returns the built module."""
    version = read_version(src_root)
    bdir = out or build_dir_for(tree, src_root)
    if (bdir / "dkms").exists():
        shutil.rmtree(bdir / "dkms")
    trees = dkms_tree_args(bdir)
    stage_module_source(src_root, bdir / "src" / f"pvnet-{version}")
    env = dkms_env(tree, bdir)
    progress(f"dkms build pvnet/{version} for {tree.release}")
    run(["dkms", "add", "-m", "pvnet", "-v", version, *trees], env=env)
    module = dkms_build_module(version, tree, bdir, env)
    log = module.parent.parent / "log" / "make.log"
    return BuildResult(module, tree.release, version, log if log.exists() else None)


def kbuild(
    tree: KernelTree,
    src_root: Path = REPO_ROOT,
    extra: tuple[str, ...] = (),
    out: Path | None = None,
    capture_log: bool = False,
) -> BuildResult:
    """Plain `make -C headers M=...` in a staged copy (developer loop, lint builds)."""
    version = read_version(src_root)
    bdir = (out or build_dir_for(tree, src_root)) / "kbuild"
    stage_module_source(src_root, bdir)
    env = compiler_env(tree, bdir.parent / "shims")
    proc = run(["make", "-C", str(tree.headers_dir), f"M={bdir}", *extra, "modules"], env=env,
               timeout=1800)
    text = (proc.stdout or "") + (proc.stderr or "") if capture_log else ""
    if not capture_log and proc.stderr:
        print(proc.stderr, end="")
    return BuildResult(bdir / "pvnet.ko", tree.release, version, None, text)
