"""Release artifacts: the DKMS source tarball, the pvnet-dkms .deb and an optionally signed module.

Everything is built in private trees under a temporary folder: DKMS runs with its own
--dkmstree/--sourcetree/--installtree, never /var/lib/dkms or /usr/src of the machine.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import REPO_ROOT, read_version
from .build import NO_DKMS_SIGNING as NO_SIGN_FILE
from .build import (
    builder_for,
    dkms_build_module,
    dkms_env,
    dkms_tree_args,
    render_dkms_conf,
    stage_module_source,
)
from .image import decompress_module
from .kernels import KernelCache, KernelTree
from .templates import render
from .util import cache_dir, progress, run

MODULE = "pvnet"
PACKAGE = "pvnet-dkms"
DEFAULT_MAINTAINER = "pvnet developers <pvnet@example.org>"
MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")
MODPROBE_CONF = "etc/modprobe.d/pvnet.conf"
SIG_MAGIC = b"~Module signature appended~\n"
SIG_INFO_LEN = 12  # struct module_signature: 8 bytes of fields, then __be32 sig_len
DEB_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+~]*")
# dkms reads sign_file from the environment as well as framework.conf: a path that does not
# exist makes private builds skip signing instead of creating /var/lib/dkms/mok.key.
NO_DKMS_SIGNING = {"sign_file": NO_SIGN_FILE}


@dataclass(frozen=True)
class DistResult:
    version: str
    tarball: Path
    deb: Path
    signed_module: Path | None = None
    kernel_release: str | None = None


# ---------------------------------------------------------------- pure helpers


def deb_file_name(version: str) -> str:
    return f"{PACKAGE}_{version}_all.deb"


def tarball_file_name(version: str) -> str:
    """The name `dkms mktarball --source-only` gives the archive."""
    return f"{MODULE}-{version}-source-only.dkms.tar.gz"


def signed_module_name(version: str, release: str) -> str:
    return f"{MODULE}-{version}-{release}-signed.ko"


def maintainer_from_env(env: Mapping[str, str] | None = None) -> str:
    """'Name <email>' from DEBFULLNAME/DEBEMAIL (the Debian tools' variables), else a default."""
    env = os.environ if env is None else env
    mail = env.get("DEBEMAIL", "").strip()
    name = env.get("DEBFULLNAME", "").strip()
    if "<" in mail:
        return mail
    if mail:
        return f"{name or 'pvnet developers'} <{mail}>"
    return DEFAULT_MAINTAINER


def build_epoch(src_root: Path = REPO_ROOT, env: Mapping[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH if set, else the time of the checkout's HEAD commit, else now."""
    env = os.environ if env is None else env
    if env.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(env["SOURCE_DATE_EPOCH"])
    proc = run(["git", "-C", src_root, "log", "-1", "--format=%ct"], check=False)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else int(time.time())


def changelog_date(epoch: int) -> str:
    """RFC 2822 date of a Debian changelog trailer line."""
    return email.utils.format_datetime(datetime.fromtimestamp(epoch, UTC))


def check_version(version: str) -> None:
    if not DEB_VERSION_RE.fullmatch(version):
        raise ValueError(f"VERSION {version!r} is not usable as a native Debian version")


def render_control(version: str, maintainer: str, installed_size: int) -> str:
    return render("deb/control.j2", package=PACKAGE, module=MODULE, version=version,
                  maintainer=maintainer, installed_size=installed_size)


def render_maintainer_scripts(version: str) -> dict[str, str]:
    return {s: render(f"deb/{s}.j2", package=PACKAGE, module=MODULE, version=version)
            for s in MAINTAINER_SCRIPTS}


def render_modprobe_conf(version: str) -> str:
    return render("deb/modprobe-pvnet.conf.j2", package=PACKAGE, version=version)


def render_copyright(maintainer: str, year: int) -> str:
    return render("deb/copyright.j2", module=MODULE, maintainer=maintainer, year=year)


def render_changelog(version: str, maintainer: str, epoch: int) -> str:
    return render("deb/changelog.j2", module=MODULE, package=PACKAGE, version=version,
                  maintainer=maintainer, date=changelog_date(epoch))


def module_sig_hash(config_text: str) -> str:
    """CONFIG_MODULE_SIG_HASH of a kernel config (dkms falls back to sha512 the same way)."""
    m = re.search(r'^CONFIG_MODULE_SIG_HASH="?([\w-]+)"?\s*$', config_text, re.M)
    return m.group(1) if m else "sha512"


def strip_module_signature(data: bytes) -> bytes:
    """A module without its appended signature (unchanged when it has none)."""
    if not data.endswith(SIG_MAGIC):
        return data
    info_end = len(data) - len(SIG_MAGIC)
    (sig_len,) = struct.unpack(">I", data[info_end - 4:info_end])
    start = info_end - SIG_INFO_LEN - sig_len
    if start < 0:
        raise ValueError("malformed module signature trailer")
    return data[:start]


def installed_size_kib(root: Path) -> int:
    """Installed-Size the way dpkg-gencontrol counts it: KiB per file rounded up, 1 per dir."""
    total = 0
    for p in root.rglob("*"):
        if p.relative_to(root).parts[0] == "DEBIAN":
            continue
        if p.is_symlink() or p.is_dir():
            total += 1
        else:
            total += math.ceil(p.stat().st_size / 1024)
    return total


def dkms_installed_kernels(status: str, version: str, module: str = MODULE) -> set[str]:
    """Kernel releases that `dkms status` output lists module/version as installed for.

    dkms 3.0 (Debian 12) and 3.2 (Debian 13) both print `pvnet/VER, <release>, x86_64:
    installed`, maybe followed by a note such as `(Original modules exist)`; `built` or
    `added` lines do not count.
    """
    pat = re.compile(rf"^{re.escape(module)}/{re.escape(version)}, ([^,\s]+), [^:,\s]+: installed\b",
                     re.M)
    return set(pat.findall(status))


def deb_leftovers(base: Path, version: str) -> list[str]:
    """What an installed-then-purged pvnet-dkms must not leave in the system under base ("/"
    for this machine, a Debian root's folder): the source and dkms trees, the modprobe.d
    conffile, and any pvnet.ko* below lib/modules (symbolic links such as build/ not followed).
    """
    found = [str(p) for p in (base / "usr/src" / f"{MODULE}-{version}",
                              base / "var/lib/dkms" / MODULE, base / MODPROBE_CONF)
             if p.exists() or p.is_symlink()]
    for top, _dirs, files in os.walk(base / "lib/modules"):
        found += [os.path.join(top, f) for f in files if f.startswith(f"{MODULE}.ko")]
    return sorted(found)


# ---------------------------------------------------------------- source staging


def check_source(src_root: Path, version: str) -> None:
    """dkms.conf must be the one rendered from VERSION (one version source)."""
    check_version(version)
    if (src_root / "dkms.conf").read_text() != render_dkms_conf(version):
        raise RuntimeError(
            f"{src_root / 'dkms.conf'} is not in sync with VERSION {version}: run `invoke dkms-conf`"
        )


# ---------------------------------------------------------------- artifacts


def make_source_tarball(src_root: Path, out_dir: Path, work: Path) -> Path:
    """`dkms mktarball --source-only` from a private dkms tree; copied to out_dir."""
    version = read_version(src_root)
    trees = dkms_tree_args(work)
    stage_module_source(src_root, work / "src" / f"{MODULE}-{version}")
    run(["dkms", "add", "-m", MODULE, "-v", version, *trees], env=NO_DKMS_SIGNING)
    run(["dkms", "mktarball", "-m", MODULE, "-v", version, "--source-only", *trees],
        env=NO_DKMS_SIGNING)
    made = work / "dkms" / MODULE / version / "tarball" / tarball_file_name(version)
    if not made.is_file():
        raise RuntimeError(f"dkms mktarball reported success but wrote no {made}")
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / made.name
    shutil.copyfile(made, dest)
    return dest


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)


def stage_deb_tree(src_root: Path, root: Path, maintainer: str, epoch: int) -> str:
    """Lay out the pvnet-dkms package tree (DEBIAN/ included) in root; returns the version."""
    version = read_version(src_root)
    check_source(src_root, version)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    stage_module_source(src_root, root / "usr/src" / f"{MODULE}-{version}")
    doc = root / "usr/share/doc" / PACKAGE
    _write(doc / "copyright", render_copyright(maintainer, datetime.fromtimestamp(epoch, UTC).year))
    changelog = doc / "changelog"
    _write(changelog, render_changelog(version, maintainer, epoch))
    run(["gzip", "-9n", changelog])
    (doc / "changelog.gz").chmod(0o644)
    _write(root / MODPROBE_CONF, render_modprobe_conf(version))
    for d in [p for p in root.rglob("*") if p.is_dir()] + [root]:
        d.chmod(0o755)

    control = root / "DEBIAN"
    control.mkdir(mode=0o755)
    for name, text in render_maintainer_scripts(version).items():
        _write(control / name, text, 0o755)
    _write(control / "conffiles", f"/{MODPROBE_CONF}\n")
    sums = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] != "DEBIAN" and p.is_file() and not p.is_symlink():
            sums.append(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {rel}\n")
    _write(control / "md5sums", "".join(sums))
    _write(control / "control", render_control(version, maintainer, installed_size_kib(root)))
    return version


def build_deb(src_root: Path, out_dir: Path, work: Path, maintainer: str | None = None,
              epoch: int | None = None) -> Path:
    """pvnet-dkms_VER_all.deb from a staged tree, with dpkg-deb --root-owner-group."""
    epoch = build_epoch(src_root) if epoch is None else epoch
    root = work / "deb-root"
    version = stage_deb_tree(src_root, root, maintainer or maintainer_from_env(), epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / deb_file_name(version)
    run(["dpkg-deb", "--build", "--root-owner-group", "-Zxz", root, deb],
        env={"SOURCE_DATE_EPOCH": str(epoch)})
    return deb


def sign_module(module: Path, tree: KernelTree, key: Path, cert: Path, dest: Path) -> Path:
    """Sign a copy of module with the kernel's own scripts/sign-file and the config's hash
    (run in the line's Debian root where it has one: that sign-file links trixie's libcrypto).

    A signature already present (dkms signs with /var/lib/dkms/mok.key when it finds a
    sign-file at the system paths) is removed first, so the result carries exactly one.
    """
    for f in (key, cert):
        if not f.is_file():
            raise FileNotFoundError(f"signing: {f} does not exist")
    builder = builder_for(tree)
    sign_file = Path(builder.headers()) / "scripts" / "sign-file"
    host_sign_file = builder.root.host_path(sign_file) if builder.root else sign_file
    if not host_sign_file.is_file():
        raise FileNotFoundError(f"no sign-file in the headers: {host_sign_file}")
    algo = module_sig_hash(tree.config.read_text())
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(strip_module_signature(decompress_module(module)))
    if builder.root is None:
        run([sign_file, algo, key, cert, dest])
    else:
        with builder.root.copied_in([key, cert, dest]) as (k, c, m):
            builder.run([str(sign_file), algo, k, c, m], env={})
            shutil.copyfile(builder.root.host_path(m), dest)
    signer = run(["modinfo", "-F", "signer", dest]).stdout.strip()
    if not signer:
        raise RuntimeError(f"{sign_file} ran but {dest} carries no signature")
    progress(f"signed {dest.name} ({algo}, signer {signer!r})")
    return dest


def dkms_build_from_tarball(tarball: Path, tree: KernelTree, work: Path) -> Path:
    """`dkms ldtarball` into a private tree, then `dkms build` for tree (in its line's Debian
    root where it has one); returns the module."""
    builder = builder_for(tree)
    work = builder.work_dir(work)
    trees = dkms_tree_args(work, builder)
    env = dkms_env(builder, work)
    archive = work / tarball.name
    shutil.copyfile(tarball, archive)
    builder.run(["dkms", "ldtarball", "--archive", builder.path(archive), *trees], env=env)
    versions = [d.name for d in (work / "dkms" / MODULE).iterdir() if d.is_dir()]
    if len(versions) != 1:
        raise RuntimeError(f"expected one {MODULE} version after ldtarball, found {versions}")
    return dkms_build_module(versions[0], builder, work, env)


def build_dist(
    out_dir: Path,
    sign_key: Path | None = None,
    sign_cert: Path | None = None,
    *,
    kernel_line: str = "6.1",
    tree: KernelTree | None = None,
    src_root: Path = REPO_ROOT,
    maintainer: str | None = None,
) -> DistResult:
    """The DKMS source tarball and the .deb in out_dir; with a key and certificate, also
    pvnet-VER-<release>-signed.ko: the tarball built by DKMS (private tree) for the kernel
    line (or tree), signed with the kernel's scripts/sign-file."""
    if (sign_key is None) != (sign_cert is None):
        raise ValueError("signing needs both a key and a certificate")
    for f in (sign_key, sign_cert):
        if f is not None and not f.is_file():
            raise FileNotFoundError(f"signing: {f} does not exist")
    version = read_version(src_root)
    check_source(src_root, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pvnet-dist-") as tmp:
        work = Path(tmp)
        progress(f"dkms mktarball {MODULE}/{version} --source-only (private dkms tree)")
        tarball = make_source_tarball(src_root, out_dir, work / "tarball")
        progress(f"dpkg-deb --build {deb_file_name(version)}")
        deb = build_deb(src_root, out_dir, work / "deb", maintainer)
        if sign_key is None or sign_cert is None:
            return DistResult(version, tarball, deb)
        if tree is None:
            tree = KernelCache(cache_dir()).fetch(kernel_line)
        progress(f"dkms build of the tarball for {tree.release}, to sign")
        try:
            module = dkms_build_from_tarball(tarball, tree, work / "sign-build")
            signed = sign_module(module, tree, sign_key, sign_cert,
                                 out_dir / signed_module_name(version, tree.release))
        finally:
            builder_for(tree).remove_work(work / "sign-build")
        return DistResult(version, tarball, deb, signed, tree.release)
