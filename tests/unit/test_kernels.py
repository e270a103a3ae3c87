from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from pvnet_harness.debver import compare_versions
from pvnet_harness.kernels import (
    LINES,
    KernelTree,
    PrivateApt,
    abi_from_image_depends,
    compiler_from_kernelvariables,
    depends_names,
    extract_vmlinux,
    find_compressed_payload,
    fix_headers_makefile,
    in_shard,
    newest_for_line,
    parse_lines_arg,
    parse_stanzas,
)

SHOW = """Package: linux-image-amd64
Version: 6.12.95-1~bpo12+1
Depends: linux-image-6.12.95+bpo-amd64 (= 6.12.95-1~bpo12+1)
SHA256: aa

Package: linux-image-amd64
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
Description: Linux for
 64-bit PCs

Package: linux-image-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-48-amd64 (= 6.1.176-1)

Package: linux-image-amd64
Version: 5.10.262-1
Depends: linux-image-5.10.0-38-amd64 (= 5.10.262-1)
"""


def test_parse_stanzas_joins_continuations() -> None:
    st = parse_stanzas(SHOW)
    assert len(st) == 4
    assert st[1]["Description"] == "Linux for\n64-bit PCs"


@pytest.mark.parametrize(("line", "version", "abi"), [
    ("6.1", "6.1.192-2", "6.1.0-56"),
    ("5.10", "5.10.262-1", "5.10.0-38"),
    ("6.12", "6.12.95-1~bpo12+1", "6.12.95+bpo"),
])
def test_newest_for_line(line: str, version: str, abi: str) -> None:
    best = newest_for_line(parse_stanzas(SHOW), LINES[line])
    assert best["Version"] == version
    assert abi_from_image_depends(best["Depends"]) == abi


def test_line_prefix_is_not_confused() -> None:
    # 6.1 must not match 6.12 versions
    assert not LINES["6.1"].matches("6.12.95-1~bpo12+1")
    with pytest.raises(LookupError):
        newest_for_line(parse_stanzas(SHOW)[:1], LINES["6.1"])


def test_depends_names() -> None:
    dep = "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), a | b"
    assert depends_names(dep) == ["linux-headers-6.1.0-56-common", "linux-kbuild-6.1", "a"]


def test_parse_lines_arg() -> None:
    assert parse_lines_arg("all") == ["5.10", "6.1", "6.12", "7"]
    assert parse_lines_arg("6.1,5.10") == ["6.1", "5.10"]
    with pytest.raises(ValueError):
        parse_lines_arg("4.19")


@pytest.mark.parametrize(("a", "b", "want"), [
    ("6.1.192-2", "6.1.176-1", 1),
    ("6.12.95-1~bpo12+1", "6.12.95-1", -1),
    ("1:1.0", "2.0", 1),
    ("1.0~rc1", "1.0", -1),
    ("5.10.262-1", "5.10.262-1", 0),
    ("1.0a", "1.0+", -1),
])
def test_debian_version_compare(a: str, b: str, want: int) -> None:
    assert compare_versions(a, b) == want
    assert compare_versions(b, a) == -want


def test_compiler_from_kernelvariables() -> None:
    text = "CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12\n"
    assert compiler_from_kernelvariables(text) == "gcc-12"
    assert compiler_from_kernelvariables("CC = gcc-10\n") == "gcc-10"


def test_private_apt_never_uses_system_sources(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt")
    apt.prepare()
    opts = apt.options()
    joined = " ".join(opts)
    assert f"Dir::Etc::SourceList={tmp_path}/apt/sources.list" in joined
    assert f"Dir::Etc::SourceParts={tmp_path}/apt/sources.list.d" in joined
    assert f"Dir::State::status={tmp_path}/apt/status" in joined
    src = (tmp_path / "apt/sources.list").read_text()
    for suite in ("bullseye-security", "bookworm-security", "trixie-security", "trixie-backports"):
        assert suite in src
    assert (tmp_path / "apt/status").read_text() == ""


def test_extract_vmlinux_xz(tmp_path: Path) -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 50
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(b"MZ" + b"\0" * 500 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\0" * 64)
    assert find_compressed_payload(bz.read_bytes())[0] == "xz"
    extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


def test_extract_vmlinux_zstd(tmp_path: Path) -> None:
    import zstandard

    elf = b"\x7fELF" + b"pvnet" * 1000
    bz = tmp_path / "vmlinuz"
    bz.write_bytes(b"MZ" + b"\1" * 100 + zstandard.ZstdCompressor().compress(elf) + b"\0" * 8)
    extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


def test_fix_headers_makefile(tmp_path: Path) -> None:
    h = tmp_path / "usr/src/linux-headers-6.1.0-56-amd64"
    h.mkdir(parents=True)
    (h / "Makefile").write_text("include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
    fix_headers_makefile(h, tmp_path)
    assert (h / "Makefile").read_text() == (
        f"include {tmp_path}/usr/src/linux-headers-6.1.0-56-common/Makefile\n")


def test_kernel_tree_json_roundtrip(tmp_path: Path) -> None:
    t = KernelTree("6.1", "6.1.192-2", "6.1.0-56-amd64", tmp_path, tmp_path / "vmlinux",
                   [{"name": "x", "version": "1", "sha256": "ab"}])
    back = KernelTree.from_json(t.to_json())
    assert back == t
    assert back.headers_dir == tmp_path / "usr/src/linux-headers-6.1.0-56-amd64"


def test_shards_cover_every_case_once_and_anchors_everywhere() -> None:
    for index in range(32):
        runs_on = [line for line in LINES if in_shard(index, line)]
        assert len(runs_on) == 1, (index, runs_on)
        assert all(in_shard(index, line, anchor=True) for line in LINES)
