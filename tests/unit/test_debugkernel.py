"""The debug-kernel lane: its registry, recipe key, config check and build helpers
(debugkernel.py), without building anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT
from pvnet_harness.debugkernel import (
    config_mismatches,
    make_progress,
    parse_config,
    recipe_hash,
    release_of,
)
from pvnet_harness.kernels import DEBUG_LINES, LINES, KernelTree, in_shard, parse_lines_arg


def test_debug_lines_are_not_production_lines() -> None:
    assert not set(DEBUG_LINES) & set(LINES)
    assert parse_lines_arg("all") == list(LINES)
    for name, line in DEBUG_LINES.items():
        assert parse_lines_arg(name) == [name]
        assert line.base in LINES
        assert (REPO_ROOT / line.fragment).is_file()
    with pytest.raises(ValueError, match=r"6\.12-debug"):
        parse_lines_arg("6.12-nodebug")


def test_a_debug_line_runs_its_base_lines_shard() -> None:
    for name, line in DEBUG_LINES.items():
        for index in range(2 * len(LINES)):
            assert in_shard(index, name) == in_shard(index, line.base)


def test_recipe_hash_ignores_comments_and_order() -> None:
    a = "# a comment\nCONFIG_KASAN=y\n# CONFIG_SLUB_TINY is not set\n"
    b = "# CONFIG_SLUB_TINY is not set\n\nCONFIG_KASAN=y\n# another\n"
    assert recipe_hash(a) == recipe_hash(b)
    assert recipe_hash(a) != recipe_hash("CONFIG_KASAN=n\n# CONFIG_SLUB_TINY is not set\n")
    assert len(recipe_hash(a)) == 12


def test_parse_config() -> None:
    text = 'CONFIG_A=y\nCONFIG_B="x y"\n# CONFIG_C is not set\n# comment\nCONFIG_D=32000\n'
    assert parse_config(text) == {"CONFIG_A": "y", "CONFIG_B": '"x y"', "CONFIG_C": None,
                                  "CONFIG_D": "32000"}


def test_a_dropped_option_is_named() -> None:
    frag = ("CONFIG_KASAN=y\nCONFIG_FAIL_FUNCTION=y\n# CONFIG_SLUB_TINY is not set\n"
            "CONFIG_IFB=m\n")
    final = "CONFIG_KASAN=y\n# CONFIG_FAIL_FUNCTION is not set\nCONFIG_SLUB_TINY=y\nCONFIG_IFB=m\n"
    assert config_mismatches(frag, final) == [
        "CONFIG_FAIL_FUNCTION: asked y, got not set",
        "CONFIG_SLUB_TINY: asked not set, got y",
    ]
    assert config_mismatches(frag, "CONFIG_KASAN=y\nCONFIG_FAIL_FUNCTION=y\nCONFIG_IFB=m\n") == []


def test_the_fragment_asks_for_the_debug_set() -> None:
    for line in DEBUG_LINES.values():
        opts = parse_config((REPO_ROOT / line.fragment).read_text())
        for opt in ("KASAN", "KASAN_INLINE", "PROVE_LOCKING", "PROVE_RCU", "DEBUG_ATOMIC_SLEEP",
                    "DEBUG_OBJECTS", "DEBUG_KMEMLEAK", "FAULT_INJECTION", "FAILSLAB",
                    "FAIL_PAGE_ALLOC", "FUNCTION_ERROR_INJECTION", "FAIL_FUNCTION",
                    "FAULT_INJECTION_DEBUG_FS", "MODULES", "PVH"):
            assert opts.get(f"CONFIG_{opt}") == "y", opt
        assert opts["CONFIG_SLUB_TINY"] is None
        assert opts["CONFIG_DEBUG_KMEMLEAK_DEFAULT_OFF"] is None


def test_release_of_a_source_tree() -> None:
    mk = "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\nNAME = Baby Opossum\n"
    assert release_of(mk, "-pvnet-debug") == "6.12.118-pvnet-debug"
    assert release_of(mk.replace("EXTRAVERSION =", "EXTRAVERSION = -rc1"), "") == "6.12.118-rc1"


def test_make_progress_names_objects() -> None:
    assert make_progress("  CC      net/core/dev.o") == "net/core/dev.o"
    assert make_progress("  CC [M]  drivers/net/ifb.o") == "drivers/net/ifb.o"
    assert make_progress("  LD [M]  drivers/net/veth.ko") == "drivers/net/veth.ko"
    assert make_progress("make[1]: Entering directory") is None
    assert make_progress("  GEN     Makefile") is None


def test_manifest_without_kbuild_dir_still_loads(tmp_path: Path) -> None:
    old = {"line": "6.12", "version": "6.12.118-1", "release": "6.12.118+deb13-amd64",
           "root": str(tmp_path), "vmlinux": str(tmp_path / "vmlinux"), "packages": [],
           "build_root": "trixie"}
    tree = KernelTree.from_json(json.dumps(old))
    assert tree.kbuild_dir == ""
    again = KernelTree.from_json(tree.to_json())
    assert again == tree
