"""Packaging end to end (root, no QEMU): the DKMS tarball on every kernel line, the .deb
installed on this machine and in the Debian 13 root, lintian of both releases, the signed
module, and the modprobe.d recipes resolved by libkmod.

The host .deb test installs Debian's linux-headers-amd64 (system bookworm suite, no apt source
is added) when it is missing, installs pvnet-dkms with apt-get and always purges it again. The
Debian 13 test does the same in the harness's trixie root (debroot.py), with the headers of
every line built there (6.12 and 7.x), and leaves no trace of pvnet in the root: the harness
builds in it afterwards. lintian (and with it openssl) stays installed there once the lintian
test has added it; a dkms signing key pair that appears then is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT, read_version
from pvnet_harness.build import Builder, BuildResult, builder_for, dkms_build
from pvnet_harness.debroot import DebianRoot, chroot_available
from pvnet_harness.dist import (
    NO_DKMS_SIGNING,
    PACKAGE,
    DistResult,
    build_dist,
    deb_leftovers,
    dkms_build_from_tarball,
    dkms_installed_kernels,
    render_modprobe_conf,
    sign_module,
    signed_module_name,
    strip_module_signature,
)
from pvnet_harness.kernels import LINES, KernelCache, KernelTree
from pvnet_harness.util import CommandError, cache_dir, run

pytestmark = pytest.mark.packaging

VERSION = read_version()
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
DKMS_KEYS = ("/var/lib/dkms/mok.key", "/var/lib/dkms/mok.pub")
VIRTIO_NET_ALIAS = "virtio:d00000001v00001AF4"
# The Debian 13 root of debroot.py and the lines built in it (6.12 and 7.x today).
DEBIAN13 = "trixie"
DEBIAN13_LINES = tuple(n for n, kl in LINES.items() if kl.build_root == DEBIAN13)
# Signing runs on the host's own line, 6.1, and on the newest line through the Debian 13 root
# (its sign-file runs there); 5.10's sign-file needs OpenSSL 1.1, absent on Debian 12.
# The host-only features below run on the host's own line, 6.1 (Debian 12):
# - the modprobe.d recipes are resolved by this machine's libkmod, whatever the line;
# - the host .deb test installs the headers of this machine's suite (bookworm: 6.1).
# The Debian 13 root covers the .deb and lintian for 6.12 and 7.x.
HOST_LINE = "6.1"


def _installed(pkg: str) -> bool:
    proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "install ok installed"


def _ensure_apt(*pkgs: str) -> None:
    missing = [p for p in pkgs if not _installed(p)]
    if missing:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=APT_ENV, timeout=1800)


def _modinfo(field: str, module: Path) -> str:
    return run(["modinfo", "-F", field, module]).stdout.strip()


def _kernel(line: str) -> KernelTree:
    """The line's current kernel (apt lists are cached for a day: no download when fresh);
    a rooted line's Debian root made and its headers installed, outside any test's try: a
    failure there is the harness's, never a 'does not build' skip."""
    tree = KernelCache(cache_dir()).fetch(line)
    builder_for(tree)
    return tree


def _root_work(tree: KernelTree, wanted: Path) -> Path | None:
    """The folder inside its line's Debian root where a build asked to work in `wanted` runs
    (build.Builder.work_dir), None for a host-built line: removed after the test, the root
    keeps no test leftovers."""
    if not tree.build_root:
        return None
    return Builder(tree, DebianRoot(cache_dir(), tree.build_root)).work_dir(wanted)


def _remove_root_work(tree: KernelTree, wanted: Path) -> None:
    if tree.build_root:
        Builder(tree, DebianRoot(cache_dir(), tree.build_root)).remove_work(wanted)


def _reason(err: Exception) -> str:
    text = str(err)
    errors = [ln.strip() for ln in text.splitlines() if "error:" in ln or "Error" in ln]
    return " | ".join(errors[:3]) or text.strip().splitlines()[-1]


@dataclass
class PlainBuild:
    tree: KernelTree
    result: BuildResult | None
    error: str = ""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> DistResult:
    return build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def plain_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], PlainBuild]]:
    """The harness's own DKMS build per line (pvnet_harness.build.dkms_build), done once."""
    done: dict[str, PlainBuild] = {}
    outs: list[tuple[KernelTree, Path]] = []
    mp = pytest.MonkeyPatch()
    mp.setenv("sign_file", NO_DKMS_SIGNING["sign_file"])  # no /var/lib/dkms/mok.key from us

    def get(line: str) -> PlainBuild:
        if line not in done:
            tree = _kernel(line)
            out = tmp_path_factory.mktemp(f"plain-{line}")
            outs.append((tree, out))
            try:
                done[line] = PlainBuild(tree, dkms_build(tree, REPO_ROOT, out=out))
            except (CommandError, RuntimeError) as err:
                done[line] = PlainBuild(tree, None, _reason(err))
        return done[line]

    yield get
    mp.undo()
    for tree, out in outs:
        _remove_root_work(tree, out)


def _built_or_skip(pb: PlainBuild, line: str) -> BuildResult:
    if pb.result is None:
        pytest.skip(f"pvnet does not build on {line} ({pb.tree.release}) with the plain "
                    f"harness DKMS build yet: {pb.error}")
    return pb.result


# ---------------------------------------------------------------- DKMS tarball


@pytest.mark.parametrize("line", list(LINES))
def test_tarball_loads_and_builds(line: str, dist: DistResult,
                                  plain_build: Callable[[str], PlainBuild], tmp_path: Path) -> None:
    """Every line, rooted ones (6.12, 7.x) through `dkms ldtarball` + `dkms build` in the root.

    The plain harness build is only asked when the tarball's build fails: where it fails too,
    pvnet does not build on the line yet (skip, with its errors); where it passes, the tarball
    is at fault (fail). A passing line costs one build, not two.
    """
    assert dist.tarball.name == f"pvnet-{VERSION}-source-only.dkms.tar.gz"
    tree = _kernel(line)
    work = _root_work(tree, tmp_path) or tmp_path
    try:
        try:
            module = dkms_build_from_tarball(dist.tarball, tree, tmp_path)
        except (CommandError, RuntimeError):
            _built_or_skip(plain_build(line), line)
            raise
        assert (work / "src" / f"pvnet-{VERSION}" / "dkms.conf").is_file()  # private source tree
        assert _modinfo("version", module) == VERSION
        assert _modinfo("vermagic", module).split()[0] == tree.release
        assert _modinfo("signer", module) == ""  # private builds are never signed by dkms
    finally:
        _remove_root_work(tree, tmp_path)


# ---------------------------------------------------------------- signing


@pytest.mark.parametrize("line", [HOST_LINE, list(LINES)[-1]])
def test_signed_module(line: str, tmp_path: Path,
                       plain_build: Callable[[str], PlainBuild]) -> None:
    _ensure_apt("openssl")
    pb = plain_build(line)
    _built_or_skip(pb, line)
    key, cert = tmp_path / "signing_key.pem", tmp_path / "signing_cert.der"
    run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=pvnet test signing key", "-keyout", key, "-outform", "DER", "-out", cert])
    res = build_dist(tmp_path / "out", key, cert, tree=pb.tree)
    assert res.signed_module == tmp_path / "out" / signed_module_name(VERSION, pb.tree.release)
    assert res.kernel_release == pb.tree.release
    assert _modinfo("signer", res.signed_module) == "pvnet test signing key"
    assert _modinfo("sig_hashalgo", res.signed_module) == "sha256"
    assert _modinfo("version", res.signed_module) == VERSION
    assert res.deb.is_file() and res.tarball.is_file()
    # signing a signed module replaces its signature instead of stacking a second one
    key2, cert2 = tmp_path / "key2.pem", tmp_path / "cert2.pem"
    run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=second key", "-keyout", key2, "-out", cert2])
    again = sign_module(res.signed_module, pb.tree, key2, cert2, tmp_path / "again.ko")
    assert _modinfo("signer", again) == "second key"
    assert strip_module_signature(again.read_bytes()) == strip_module_signature(
        res.signed_module.read_bytes())


# ---------------------------------------------------------------- lintian


def _check_lintian(proc: subprocess.CompletedProcess[str], where: str) -> None:
    """No E: tag and exit 0; every other tag (W:, I:, P:, X:) is reported as a pytest warning."""
    tags = [ln for ln in proc.stdout.splitlines() if re.match(r"[EWIPX]: ", ln)]
    for tag in tags:
        if not tag.startswith("E:"):
            warnings.warn(f"lintian ({where}): {tag}", stacklevel=2)
    assert not [t for t in tags if t.startswith("E:")], "\n".join(tags)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lintian_reports_no_errors(dist: DistResult) -> None:
    _ensure_apt("lintian")
    _check_lintian(run(["lintian", "--pedantic", dist.deb], check=False), "Debian 12")


# ---------------------------------------------------------------- the .deb on this machine


@pytest.fixture(scope="module")
def headers_61() -> list[str]:
    """Releases of the 6.1 kernels whose headers are installed (installs linux-headers-amd64 of
    this machine's suite: the host test is about the host's line, see HOST_LINE)."""
    _ensure_apt("linux-headers-amd64")
    releases = sorted(p.parent.name for p in Path("/lib/modules").glob("6.1.*/build")
                      if (p / "include").is_dir())
    assert releases, "linux-headers-amd64 is installed but no /lib/modules/6.1.*/build"
    return releases


def _purge() -> None:
    run(["apt-get", "purge", "-y", "-q", PACKAGE], env=APT_ENV, timeout=600)


def test_deb_installs_builds_and_purges(dist: DistResult, headers_61: list[str]) -> None:
    if _installed(PACKAGE) or run(["dpkg-query", "-W", PACKAGE], check=False).returncode == 0:
        _purge()  # a previous run that was killed
    keys_before = {Path(k): Path(k).exists() for k in DKMS_KEYS}
    try:
        run(["apt-get", "install", "-y", "-q", str(dist.deb)], env=APT_ENV, timeout=1800)
        assert _installed(PACKAGE)
        status = run(["dkms", "status", "-m", "pvnet", "-v", VERSION]).stdout
        for release in headers_61:
            assert re.search(rf"^pvnet/{re.escape(VERSION)}, {re.escape(release)}, x86_64: installed",
                             status, re.M), status
            module = Path(f"/lib/modules/{release}/updates/dkms/pvnet.ko")
            assert module.is_file(), sorted(map(str, module.parent.glob("*")))
            assert _modinfo("version", module) == VERSION
            assert _modinfo("vermagic", module).split()[0] == release
        conf = Path("/etc/modprobe.d/pvnet.conf")
        assert conf.read_text() == render_modprobe_conf(VERSION)
        assert Path(f"/usr/src/pvnet-{VERSION}/dkms.conf").is_file()
    finally:
        try:
            _purge()
        finally:
            for k, existed in keys_before.items():  # dkms made a MOK key pair while building
                if not existed:
                    k.unlink(missing_ok=True)
    assert not _installed(PACKAGE)
    assert run(["dkms", "status", "-m", "pvnet"]).stdout.strip() == ""
    assert deb_leftovers(Path("/"), VERSION) == []


# ---------------------------------------------------------------- the .deb on Debian 13


@dataclass
class Debian13:
    root: DebianRoot
    trees: dict[str, KernelTree]  # line -> tree, every line built in this root


@pytest.fixture(scope="module")
def debian13() -> Debian13:
    """The harness's Debian 13 root with the headers of every line built in it installed at
    the exact versions of the lines' cached images (what build.builder_for installs too)."""
    if not DEBIAN13_LINES:
        pytest.skip(f"no kernel line is built in the {DEBIAN13} root (kernels.LINES build_root)")
    if not chroot_available():
        pytest.skip("the Debian 13 root needs root and chroot(8)")
    trees = {line: _kernel(line) for line in DEBIAN13_LINES}
    root = DebianRoot(cache_dir(), DEBIAN13).ensure()
    root.ensure_packages({t.headers_package: t.version for t in trees.values()},
                         ", ".join(f"{t.headers_package} {t.version}" for t in trees.values()))
    return Debian13(root, trees)


def _tree_files(top: Path) -> set[Path]:
    """Every path below top, symbolic links (such as build/) not followed."""
    found: set[Path] = set()
    for dirpath, dirs, files in os.walk(top):
        found.update(Path(dirpath, n) for n in (*dirs, *files))
    return found


def _module_dirs_diff(root: DebianRoot, before: set[Path]) -> tuple[set[Path], set[Path]]:
    """(made, gone): paths added to and removed from the root's /lib/modules/<release> folders
    that existed in `before` (a kernel another harness process installs meanwhile is its own)."""
    modules = root.host_path("/lib/modules")
    releases = {p for p in before if p.parent == modules}
    now = {p for p in _tree_files(modules) if any(r == p or r in p.parents for r in releases)}
    return now - before, before - now


def test_lintian_debian13_reports_no_errors(dist: DistResult, debian13: Debian13) -> None:
    """Debian 13's lintian (installed in the root) on the .deb; same policy as Debian 12's."""
    root = debian13.root
    root.ensure_packages({"lintian": None}, "lintian")
    with root.copied_in([dist.deb]) as (deb,):
        proc = root.run(["lintian", "--pedantic", deb], check=False, timeout=900)
    version = root.installed_version("lintian")
    _check_lintian(proc, f"Debian 13, lintian {version}")


def test_deb_installs_builds_and_purges_debian13(
    dist: DistResult, debian13: Debian13, plain_build: Callable[[str], PlainBuild],
) -> None:
    """`apt install ./pvnet-dkms_VER_all.deb` in the Debian 13 root: its postinst builds and
    installs pvnet with trixie's dkms for every line's headers there, `apt-get purge` leaves
    nothing, and the root is left as it was (purged even when an assertion fails)."""
    root = debian13.root
    if root.dpkg_status(PACKAGE) is not None:
        root.purge([PACKAGE], f"{PACKAGE} left by a killed run")
    keys_before = {k: root.host_path(k).exists() for k in DKMS_KEYS}
    modules_before = _tree_files(root.host_path("/lib/modules"))
    not_built: dict[str, str] = {}
    try:
        apt = root.install_local([dist.deb], dist.deb.name)
        assert root.installed_version(PACKAGE) == VERSION
        status = root.run(["dkms", "status", "-m", "pvnet", "-v", VERSION]).stdout
        installed = dkms_installed_kernels(status, VERSION)
        for line, tree in debian13.trees.items():
            rel = tree.release
            if rel not in installed:
                log = root.host_path(f"/var/lib/dkms/pvnet/{VERSION}/build/make.log")
                tail = log.read_text()[-2000:] if log.is_file() else "(no make.log)"
                not_built[line] = (f"dkms status:\n{status}\napt output:\n"
                                   f"{apt.stdout[-3000:]}{apt.stderr[-2000:]}\nmake.log:\n{tail}")
                continue
            # trixie's dkms 3.2 installs into /updates/dkms on Debian, dkms.conf's location too
            mods = sorted(root.host_path(f"/lib/modules/{rel}/updates/dkms").glob("pvnet.ko*"))
            assert len(mods) == 1, (f"{status}\npvnet modules of {rel}: " + " ".join(
                sorted(root.inside(p) for p in root.host_path(f"/lib/modules/{rel}").rglob("pvnet.ko*"))))
            mod = root.inside(mods[0])
            info = {f: root.run(["modinfo", "-F", f, mod]).stdout.strip()
                    for f in ("version", "vermagic")}
            assert info["version"] == VERSION, (mod, info)
            assert info["vermagic"].split()[0] == rel, (mod, info)
        assert root.host_path("/etc/modprobe.d/pvnet.conf").read_text() == render_modprobe_conf(VERSION)
        assert root.host_path(f"/usr/src/pvnet-{VERSION}/dkms.conf").is_file()
    finally:
        try:
            root.purge([PACKAGE], PACKAGE)
        finally:
            for k, existed in keys_before.items():  # a MOK key pair dkms may make to sign
                if not existed:
                    root.host_path(k).unlink(missing_ok=True)
    assert root.dpkg_status(PACKAGE) is None, root.dpkg_status(PACKAGE)  # no dpkg entry left
    assert root.run(["dkms", "status", "-m", "pvnet"]).stdout.strip() == ""
    assert deb_leftovers(root.path, VERSION) == []
    # nothing else either in the kernels' module folders: no emptied updates/dkms, no depmod
    # indexes made for a headers-only kernel (measured: dkms 3.2's remove leaves none)
    made, gone = _module_dirs_diff(root, modules_before)
    assert (sorted(map(root.inside, made)), sorted(map(str, gone))) == ([], [])
    # A line the postinst did not build for: a skip when pvnet does not build there at all
    # (the harness's plain build fails too, as for the tarball), else a packaging failure.
    failures = []
    for line, why in not_built.items():
        pb = plain_build(line)
        if pb.result is not None:
            failures.append(f"{line} ({debian13.trees[line].release}): the plain harness build "
                            f"passes, the .deb's dkms autoinstall did not install:\n{why}")
    assert not failures, "\n\n".join(failures)
    if not_built:
        pytest.skip("; ".join(f"pvnet does not build on {line} "
                              f"({debian13.trees[line].release}) with the plain harness DKMS "
                              f"build yet: {plain_build(line).error}" for line in not_built))


# ---------------------------------------------------------------- modprobe.d recipes


def _module_root(tree: KernelTree, pvnet: Path | None, root: Path) -> None:
    """A minimal /lib/modules/<release> with virtio_net, its dependencies and pvnet."""
    mdir = tree.modules_dir
    dep: dict[str, list[str]] = {}
    for line in (mdir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        dep[Path(path).name.split(".")[0]] = [path, *deps.split()]
    dest = root / "lib/modules" / tree.release
    for rel in dep["virtio_net"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mdir / rel, dest / rel)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (mdir / f).exists():
            shutil.copyfile(mdir / f, dest / f)
    if pvnet is not None:
        (dest / "updates/dkms").mkdir(parents=True)
        shutil.copyfile(pvnet, dest / "updates/dkms/pvnet.ko")
    run(["depmod", "-b", root, tree.release])


def _uncommented(option: str) -> str:
    """The shipped file with exactly one example line uncommented."""
    text = render_modprobe_conf(VERSION)
    assert f"\n# {option}\n" in text
    return text.replace(f"\n# {option}\n", f"\n{option}\n")


def _udev_load_order(root: Path, release: str, conf_text: str, tmp: Path) -> list[str]:
    """What udev loads for a virtio-net device: modprobe -b (blacklist applied) of its alias."""
    conf = tmp / "pvnet.conf"
    conf.write_text(conf_text)
    out = run(["modprobe", "-d", root, "-S", release, "-C", conf, "-b", "--show-depends",
               VIRTIO_NET_ALIAS]).stdout
    return [Path(ln.split()[1]).name.split(".")[0] for ln in out.splitlines()
            if ln.startswith("insmod ")]


def test_modprobe_conf_recipes(tmp_path: Path, plain_build: Callable[[str], PlainBuild]) -> None:
    pb = plain_build(HOST_LINE)  # this machine's libkmod resolves the recipes: see HOST_LINE
    built = _built_or_skip(pb, HOST_LINE)
    rel = pb.tree.release
    with_pvnet, without = tmp_path / "with", tmp_path / "without"
    _module_root(pb.tree, built.module, with_pvnet)
    _module_root(pb.tree, None, without)
    shipped = render_modprobe_conf(VERSION)

    def order(root: Path, text: str) -> list[str]:
        return [m for m in _udev_load_order(root, rel, text, tmp_path) if m in ("pvnet", "virtio_net")]

    # as shipped (all commented): both drivers match the alias and both are loaded
    assert sorted(order(with_pvnet, shipped)) == ["pvnet", "virtio_net"]
    # option 1: pvnet is loaded before virtio_net; without pvnet, virtio_net still loads
    softdep = _uncommented("softdep virtio_net pre: pvnet")
    assert order(with_pvnet, softdep)[:2] == ["pvnet", "virtio_net"]
    assert order(without, softdep) == ["virtio_net"]
    # option 2: only pvnet; without pvnet, nothing drives the NIC
    blacklist = _uncommented("blacklist virtio_net")
    assert order(with_pvnet, blacklist) == ["pvnet"]
    assert order(without, blacklist) == []
    assert os.path.exists(with_pvnet / "lib/modules" / rel / "modules.alias")
