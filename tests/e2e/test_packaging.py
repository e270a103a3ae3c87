"""Packaging end to end (root, no QEMU): the DKMS tarball, the .deb installed on this machine,
lintian, the signed module, and the modprobe.d recipes resolved by libkmod.

The .deb test installs Debian's linux-headers-amd64 (system bookworm suite, no apt source is
added) when it is missing, installs pvnet-dkms with apt-get and always purges it again.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT, read_version
from pvnet_harness.build import BuildResult, dkms_build
from pvnet_harness.dist import (
    NO_DKMS_SIGNING,
    PACKAGE,
    DistResult,
    build_dist,
    dkms_build_from_tarball,
    render_modprobe_conf,
    sign_module,
    signed_module_name,
    strip_module_signature,
)
from pvnet_harness.kernels import KernelCache, KernelTree
from pvnet_harness.util import CommandError, cache_dir, run

pytestmark = pytest.mark.packaging

VERSION = read_version()
LINES = ("5.10", "6.1", "6.12")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
DKMS_KEYS = (Path("/var/lib/dkms/mok.key"), Path("/var/lib/dkms/mok.pub"))
VIRTIO_NET_ALIAS = "virtio:d00000001v00001AF4"


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
    cache = KernelCache(cache_dir())
    try:
        return cache.fetch(line, offline=True)
    except LookupError:
        return cache.fetch(line)


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
    mp = pytest.MonkeyPatch()
    mp.setenv("sign_file", NO_DKMS_SIGNING["sign_file"])  # no /var/lib/dkms/mok.key from us

    def get(line: str) -> PlainBuild:
        if line not in done:
            tree = _kernel(line)
            out = tmp_path_factory.mktemp(f"plain-{line}")
            try:
                done[line] = PlainBuild(tree, dkms_build(tree, REPO_ROOT, out=out))
            except (CommandError, RuntimeError) as err:
                done[line] = PlainBuild(tree, None, _reason(err))
        return done[line]

    yield get
    mp.undo()


def _built_or_skip(pb: PlainBuild, line: str) -> BuildResult:
    if pb.result is None:
        pytest.skip(f"pvnet does not build on {line} ({pb.tree.release}) with the plain "
                    f"harness DKMS build yet: {pb.error}")
    return pb.result


# ---------------------------------------------------------------- DKMS tarball


@pytest.mark.parametrize("line", LINES)
def test_tarball_loads_and_builds(line: str, dist: DistResult,
                                  plain_build: Callable[[str], PlainBuild], tmp_path: Path) -> None:
    pb = plain_build(line)
    _built_or_skip(pb, line)
    assert dist.tarball.name == f"pvnet-{VERSION}-source-only.dkms.tar.gz"
    module = dkms_build_from_tarball(dist.tarball, pb.tree, tmp_path)
    assert (tmp_path / "src" / f"pvnet-{VERSION}" / "dkms.conf").is_file()  # private source tree
    assert _modinfo("version", module) == VERSION
    assert _modinfo("vermagic", module).split()[0] == pb.tree.release
    assert _modinfo("signer", module) == ""  # private builds are never signed by dkms


# ---------------------------------------------------------------- signing


def test_signed_module(tmp_path: Path, plain_build: Callable[[str], PlainBuild]) -> None:
    _ensure_apt("openssl")
    pb = plain_build("6.1")
    _built_or_skip(pb, "6.1")
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


def test_lintian_reports_no_errors(dist: DistResult) -> None:
    _ensure_apt("lintian")
    proc = run(["lintian", "--pedantic", dist.deb], check=False)
    tags = [ln for ln in proc.stdout.splitlines() if re.match(r"[EWIPX]: ", ln)]
    for tag in tags:
        if not tag.startswith("E:"):
            warnings.warn(f"lintian: {tag}", stacklevel=1)
    assert not [t for t in tags if t.startswith("E:")], "\n".join(tags)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- the .deb on this machine


@pytest.fixture(scope="module")
def headers_61() -> list[str]:
    """Releases of the 6.1 kernels whose headers are installed (installs linux-headers-amd64)."""
    _ensure_apt("linux-headers-amd64")
    releases = sorted(p.parent.name for p in Path("/lib/modules").glob("6.1.*/build")
                      if (p / "include").is_dir())
    assert releases, "linux-headers-amd64 is installed but no /lib/modules/6.1.*/build"
    return releases


def _leftovers() -> list[str]:
    found = [str(p) for p in (Path(f"/usr/src/pvnet-{VERSION}"), Path("/var/lib/dkms/pvnet"),
                              Path("/etc/modprobe.d/pvnet.conf")) if p.exists()]
    found += [str(p) for p in Path("/lib/modules").glob("*/updates/dkms/pvnet.ko*")]
    return found


def _purge() -> None:
    run(["apt-get", "purge", "-y", "-q", PACKAGE], env=APT_ENV, timeout=600)


def test_deb_installs_builds_and_purges(dist: DistResult, headers_61: list[str]) -> None:
    if _installed(PACKAGE) or run(["dpkg-query", "-W", PACKAGE], check=False).returncode == 0:
        _purge()  # a previous run that was killed
    keys_before = {k: k.exists() for k in DKMS_KEYS}
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
    assert _leftovers() == []


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
    pb = plain_build("6.1")
    built = _built_or_skip(pb, "6.1")
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
