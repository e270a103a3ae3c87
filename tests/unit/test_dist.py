"""Packaging pieces without root or QEMU: control file, maintainer scripts, staged tree."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT, read_version
from pvnet_harness.build import render_dkms_conf, source_files
from pvnet_harness.dist import (
    MODPROBE_CONF,
    PACKAGE,
    SIG_MAGIC,
    build_deb,
    changelog_date,
    deb_leftovers,
    dkms_installed_kernels,
    maintainer_from_env,
    module_sig_hash,
    render_control,
    render_maintainer_scripts,
    render_modprobe_conf,
    stage_deb_tree,
    strip_module_signature,
)
from pvnet_harness.kernels import parse_stanzas

VERSION = read_version()
EPOCH = 1_700_000_000


def _control(version: str = VERSION) -> dict[str, str]:
    return parse_stanzas(render_control(version, "A B <a@b.example>", 42))[0]


def test_control_fields() -> None:
    c = _control()
    assert c["Package"] == "pvnet-dkms"
    assert c["Version"] == VERSION
    assert c["Architecture"] == "all"
    assert c["Depends"] == "dkms (>= 2.1.0.0)"
    assert c["Maintainer"] == "A B <a@b.example>"
    assert c["Section"] == "kernel"
    assert c["Priority"] == "optional"
    assert c["Installed-Size"] == "42"
    synopsis, *long = c["Description"].split("\n")
    assert synopsis and len(synopsis) < 80 and len(long) >= 3
    raw = render_control(VERSION, "A B <a@b.example>", 42)
    body = raw.split("Description:", 1)[1].splitlines()[1:]
    assert body and all(line.startswith(" ") and len(line) <= 80 for line in body)
    assert raw.endswith("\n") and "\n\n" not in raw


def _fake_src(tmp_path: Path, version: str) -> Path:
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "driver", src / "driver")
    shutil.copy(REPO_ROOT / "Kbuild", src / "Kbuild")
    (src / "VERSION").write_text(version + "\n")
    (src / "dkms.conf").write_text(render_dkms_conf(version))
    return src


def test_version_comes_from_version_file(tmp_path: Path) -> None:
    src = _fake_src(tmp_path, "9.8.7")
    root = tmp_path / "root"
    assert stage_deb_tree(src, root, "A B <a@b.example>", EPOCH) == "9.8.7"
    control = parse_stanzas((root / "DEBIAN/control").read_text())[0]
    assert control["Version"] == "9.8.7"
    assert (root / "usr/src/pvnet-9.8.7/VERSION").read_text().strip() == "9.8.7"
    assert 'PACKAGE_VERSION="9.8.7"' in (root / "usr/src/pvnet-9.8.7/dkms.conf").read_text()
    for text in render_maintainer_scripts("9.8.7").values():
        assert "VERSION=9.8.7\n" in text


def test_dkms_conf_out_of_sync_is_refused(tmp_path: Path) -> None:
    src = _fake_src(tmp_path, "9.8.7")
    (src / "dkms.conf").write_text(render_dkms_conf("9.8.6"))
    with pytest.raises(RuntimeError, match="invoke dkms-conf"):
        stage_deb_tree(src, tmp_path / "root", "A B <a@b.example>", EPOCH)


def test_staged_tree_holds_only_source(tmp_path: Path) -> None:
    src = _fake_src(tmp_path, VERSION)
    for junk in ("driver/pvnet_main.o", "driver/.pvnet_main.o.cmd", "pvnet.ko", "pvnet.mod.c",
                 "driver/pvnet.mod.c", "modules.order", "Module.symvers", "driver/x.ko",
                 "driver/pvnet_compat_probed.h"):
        (src / junk).write_text("build product")
    root = tmp_path / "root"
    stage_deb_tree(src, root, "A B <a@b.example>", EPOCH)
    pkg_src = root / "usr/src" / f"pvnet-{VERSION}"
    files = sorted(str(p.relative_to(pkg_src)) for p in pkg_src.rglob("*") if p.is_file())
    expected = sorted(["Kbuild", "VERSION", "dkms.conf"] + [
        str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "driver").rglob("*")
        if p.is_file() and p.suffix in (".c", ".h") and not p.name.endswith(".mod.c")
        and p.name != "pvnet_compat_probed.h"
        and not any(s.startswith(".") for s in p.relative_to(REPO_ROOT).parts)
    ])
    assert files == expected
    assert all(p.suffix in (".c", ".h") for p in (pkg_src / "driver").rglob("*") if p.is_file())
    assert [str(p) for p in source_files(src)] == ["Kbuild", "VERSION", "dkms.conf"] + [
        f for f in expected if f.startswith("driver/")]
    # the whole package: only the source, docs, the modprobe.d file and DEBIAN/
    everything = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    others = [f for f in everything if not f.startswith(f"usr/src/pvnet-{VERSION}/")]
    assert others == sorted([
        "DEBIAN/conffiles", "DEBIAN/control", "DEBIAN/md5sums", "DEBIAN/postinst",
        "DEBIAN/postrm", "DEBIAN/prerm", MODPROBE_CONF,
        f"usr/share/doc/{PACKAGE}/changelog.gz", f"usr/share/doc/{PACKAGE}/copyright",
    ])
    assert (root / "DEBIAN/conffiles").read_text() == "/etc/modprobe.d/pvnet.conf\n"
    for s in ("postinst", "prerm", "postrm"):
        assert os.stat(root / "DEBIAN" / s).st_mode & 0o777 == 0o755
    copyright_text = (root / f"usr/share/doc/{PACKAGE}/copyright").read_text()
    assert copyright_text.startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    assert "License: GPL-2\n" in copyright_text and "/usr/share/common-licenses/GPL-2" in copyright_text


def test_changelog_is_gzip_9n(tmp_path: Path) -> None:
    root = tmp_path / "root"
    stage_deb_tree(_fake_src(tmp_path, VERSION), root, "A B <a@b.example>", EPOCH)
    gz = (root / f"usr/share/doc/{PACKAGE}/changelog.gz").read_bytes()
    assert gz[:2] == b"\x1f\x8b"
    flags, mtime = gz[3], struct.unpack("<I", gz[4:8])[0]
    assert flags & 0x08 == 0 and mtime == 0  # -n: no file name, no time stamp
    assert gz[8] == 2  # XFL: maximum compression (-9)
    text = subprocess.run(["gzip", "-dc"], input=gz, capture_output=True, check=True).stdout.decode()
    assert text.startswith(f"pvnet ({VERSION}) unstable; urgency=medium\n")
    assert text.rstrip().endswith(f" -- A B <a@b.example>  {changelog_date(EPOCH)}")
    assert changelog_date(EPOCH) == "Tue, 14 Nov 2023 22:13:20 +0000"


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_maintainer_scripts_parse(script: str, tmp_path: Path) -> None:
    text = render_maintainer_scripts(VERSION)[script]
    assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
    path = tmp_path / script
    path.write_text(text)
    subprocess.run(["sh", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


# ------------------------------------------------ maintainer scripts run against fakes


def _fake_dkms(tmp_path: Path, fail_build_for: str = "", added: bool = False) -> Path:
    """A `dkms` on PATH that logs its arguments; builds fail for one kernel."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "dkms.log"
    status = 'echo "pvnet/$VER: added"' if added else "true"
    fail = f'*"-k {fail_build_for} "*|*"-k {fail_build_for}") exit 10 ;;' if fail_build_for else ""
    (bindir / "dkms").write_text(f"""#!/bin/sh
echo "$*" >> {log}
VER={VERSION}
case "$1" in
  status) {status} ;;
  build) case "$*" in {fail} *) ;; esac ;;
esac
exit 0
""")
    (bindir / "dkms").chmod(0o755)
    return bindir


def _run_script(name: str, tmp_path: Path, bindir: Path, arg: str,
                subst: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    text = render_maintainer_scripts(VERSION)[name]
    for var, path in subst.items():
        assert f"\n{var}=" in text
        text = "\n".join(f"{var}={path}" if line.startswith(f"{var}=") else line
                         for line in text.split("\n"))
    script = tmp_path / name
    script.write_text(text)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", str(script), arg], env=env, capture_output=True, text=True)


def _kernels(tmp_path: Path) -> tuple[Path, Path]:
    """6.1.0-1-amd64: /lib/modules/*/build; 6.1.0-2-amd64: only /usr/src; -common: skipped;
    6.18-custom: /lib/modules without headers (like the CI machines' running kernel)."""
    mods, hdrs = tmp_path / "lib/modules", tmp_path / "usr/src"
    for k in ("6.1.0-1-amd64", "6.1.0-2-amd64", "6.1.0-2-common"):
        (hdrs / f"linux-headers-{k}/include").mkdir(parents=True)
    for k in ("6.1.0-1-amd64", "6.1.0-2-amd64"):
        (hdrs / f"linux-headers-{k}/.config").write_text("")
    (mods / "6.1.0-1-amd64").mkdir(parents=True)
    (mods / "6.1.0-1-amd64/build").symlink_to(hdrs / "linux-headers-6.1.0-1-amd64")
    (mods / "6.18.0-custom/kernel").mkdir(parents=True)
    return mods, hdrs


def test_postinst_builds_every_kernel_with_headers(tmp_path: Path) -> None:
    mods, hdrs = _kernels(tmp_path)
    bindir = _fake_dkms(tmp_path, fail_build_for="6.1.0-2-amd64")
    proc = _run_script("postinst", tmp_path, bindir, "configure",
                       {"MODULES_DIR": mods, "HEADERS_DIR": hdrs})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "dkms.log").read_text().splitlines()
    assert calls[0] == f"status -m pvnet -v {VERSION}"
    assert calls[1] == f"add -m pvnet -v {VERSION}"
    assert f"build -m pvnet -v {VERSION} -k 6.1.0-1-amd64" in calls
    assert f"install -m pvnet -v {VERSION} -k 6.1.0-1-amd64" in calls
    src2 = hdrs / "linux-headers-6.1.0-2-amd64"
    assert f"build -m pvnet -v {VERSION} -k 6.1.0-2-amd64 --kernelsourcedir {src2}" in calls
    assert not any("6.1.0-2-amd64" in c for c in calls if c.startswith("install"))  # build failed
    assert not any("common" in c or "6.18" in c for c in calls)
    assert "WARNING: building pvnet/" in proc.stderr and "6.1.0-2-amd64" in proc.stderr


def test_postinst_tolerates_already_added(tmp_path: Path) -> None:
    mods, hdrs = _kernels(tmp_path)
    bindir = _fake_dkms(tmp_path, added=True)
    proc = _run_script("postinst", tmp_path, bindir, "configure",
                       {"MODULES_DIR": mods, "HEADERS_DIR": hdrs})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "dkms.log").read_text().splitlines()
    assert not any(c.startswith("add") for c in calls)
    assert sum(c.startswith("install") for c in calls) == 2


def test_postinst_without_headers_warns_and_succeeds(tmp_path: Path) -> None:
    (tmp_path / "lib/modules/6.18.0-custom").mkdir(parents=True)
    (tmp_path / "usr/src").mkdir(parents=True)
    bindir = _fake_dkms(tmp_path)
    proc = _run_script("postinst", tmp_path, bindir, "configure",
                       {"MODULES_DIR": tmp_path / "lib/modules", "HEADERS_DIR": tmp_path / "usr/src"})
    assert proc.returncode == 0
    assert "no kernel headers installed" in proc.stderr


@pytest.mark.parametrize("arg, removes", [("remove", True), ("upgrade", True),
                                          ("deconfigure", True), ("failed-upgrade", False)])
def test_prerm_removes_from_dkms(tmp_path: Path, arg: str, removes: bool) -> None:
    bindir = _fake_dkms(tmp_path, added=True)
    proc = _run_script("prerm", tmp_path, bindir, arg, {})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "dkms.log").read_text().splitlines() if removes else []
    assert (f"remove -m pvnet -v {VERSION} --all" in calls) is removes


def test_postrm_purge_leaves_nothing(tmp_path: Path) -> None:
    dkms_tree, source_tree = tmp_path / "var/lib/dkms", tmp_path / "usr/src"
    (dkms_tree / f"pvnet/{VERSION}/build").mkdir(parents=True)
    (dkms_tree / "other/1.0").mkdir(parents=True)
    (source_tree / f"pvnet-{VERSION}/driver").mkdir(parents=True)
    (source_tree / f"pvnet-{VERSION}/driver/leftover.o").write_text("")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    subst = {"DKMS_TREE": dkms_tree, "SOURCE_TREE": source_tree}
    assert _run_script("postrm", tmp_path, bindir, "remove", subst).returncode == 0
    assert (dkms_tree / "pvnet").exists()
    assert _run_script("postrm", tmp_path, bindir, "purge", subst).returncode == 0
    assert not (dkms_tree / "pvnet").exists() and not (source_tree / f"pvnet-{VERSION}").exists()
    assert (dkms_tree / "other/1.0").is_dir()


# ------------------------------------------------ modprobe.d file, deb, signing helpers


def test_modprobe_conf_fully_commented() -> None:
    text = render_modprobe_conf(VERSION)
    lines = text.splitlines()
    assert lines and all(not line.strip() or line.startswith("#") for line in lines)
    # the examples, uncommented, are exactly these modprobe.d lines
    assert "# softdep virtio_net pre: pvnet" in lines
    assert "# blacklist virtio_net" in lines
    assert "update-initramfs -u" in text


def test_deb_builds_with_root_owner(tmp_path: Path) -> None:
    deb = build_deb(REPO_ROOT, tmp_path / "out", tmp_path / "work", "A B <a@b.example>", EPOCH)
    assert deb.name == f"pvnet-dkms_{VERSION}_all.deb"
    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"],
                           capture_output=True, text=True, check=True).stdout
    assert field == f"Package: pvnet-dkms\nVersion: {VERSION}\nArchitecture: all\n"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert listing and all(" root/root " in line for line in listing)
    assert any(line.endswith(f"./usr/src/pvnet-{VERSION}/dkms.conf") for line in listing)
    assert not any(line.endswith((".o", ".ko", ".cmd")) for line in listing)


def test_maintainer_from_env() -> None:
    assert maintainer_from_env({"DEBFULLNAME": "Jo Q", "DEBEMAIL": "jo@x.example"}) == \
        "Jo Q <jo@x.example>"
    assert maintainer_from_env({"DEBEMAIL": "Jo Q <jo@x.example>"}) == "Jo Q <jo@x.example>"
    assert "<" in maintainer_from_env({})


def test_module_sig_hash() -> None:
    assert module_sig_hash('CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_HASH="sha256"\n') == "sha256"
    assert module_sig_hash("# CONFIG_MODULE_SIG is not set\n") == "sha512"


def test_strip_module_signature() -> None:
    elf = b"\x7fELF" + b"x" * 100
    sig = b"S" * 37
    info = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + struct.pack(">I", len(sig))
    assert strip_module_signature(elf + sig + info + SIG_MAGIC) == elf
    assert strip_module_signature(elf) == elf


def test_dkms_installed_kernels() -> None:
    status = (
        # dkms 3.0.10 (Debian 12)
        f"pvnet/{VERSION}, 6.1.0-57-amd64, x86_64: installed\n"
        # dkms 3.2 (Debian 13), with a note after the state
        f"pvnet/{VERSION}, 7.3.4+deb13-amd64, x86_64: installed (Original modules exist)\n"
        f"pvnet/{VERSION}, 6.12.118+deb13-amd64, x86_64: built\n"
        f"pvnet/{VERSION}: added\n"
        f"pvnet/9.9.9, 5.10.0-46-amd64, x86_64: installed\n"
        f"other/{VERSION}, 6.1.0-1-amd64, x86_64: installed\n"
    )
    assert dkms_installed_kernels(status, VERSION) == {"6.1.0-57-amd64", "7.3.4+deb13-amd64"}
    assert dkms_installed_kernels("", VERSION) == set()


def test_deb_leftovers(tmp_path: Path) -> None:
    base = tmp_path / "sys"
    rel = base / "lib/modules/7.3.4+deb13-amd64"
    (rel / "updates/dkms").mkdir(parents=True)
    (base / "usr/src/linux-headers-x").mkdir(parents=True)
    (base / "usr/src/linux-headers-x/pvnet.ko").write_bytes(b"")  # behind build/: not followed
    (rel / "build").symlink_to(base / "usr/src/linux-headers-x")
    (rel / "modules.dep").write_text("")
    assert deb_leftovers(base, VERSION) == []
    (rel / "updates/dkms/pvnet.ko.xz").write_bytes(b"")
    (base / "var/lib/dkms/pvnet").mkdir(parents=True)
    (base / f"usr/src/pvnet-{VERSION}").mkdir(parents=True)
    (base / MODPROBE_CONF).parent.mkdir(parents=True)
    (base / MODPROBE_CONF).write_text("")
    assert deb_leftovers(base, VERSION) == sorted(str(p) for p in (
        rel / "updates/dkms/pvnet.ko.xz", base / "var/lib/dkms/pvnet",
        base / f"usr/src/pvnet-{VERSION}", base / MODPROBE_CONF))
