"""Kernel API compile probes: driver/compat/*.c, the Kbuild generator, pvnet_compat.h."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pvnet_harness import REPO_ROOT

DRIVER = REPO_ROOT / "driver"
COMPAT = DRIVER / "compat"
BASELINE = "baseline"
HAVE_RE = re.compile(r"\bPVNET_HAVE_[A-Z0-9_]+\b")

needs_toolchain = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("gcc") is None, reason="needs make and gcc"
)


def probe_names() -> set[str]:
    return {p.stem for p in COMPAT.glob("*.c")} - {BASELINE}


def macro(name: str) -> str:
    return f"PVNET_HAVE_{name.upper()}"


def driver_files() -> list[Path]:
    """The module's own sources (not the probes)."""
    return sorted(p for p in DRIVER.iterdir() if p.suffix in (".c", ".h"))


def used_macros() -> dict[str, set[str]]:
    """PVNET_HAVE_* names per driver file that mentions any."""
    found: dict[str, set[str]] = {}
    for p in driver_files():
        names = set(HAVE_RE.findall(p.read_text()))
        if names:
            found[p.name] = names
    return found


def test_baseline_probe_exists() -> None:
    assert (COMPAT / f"{BASELINE}.c").is_file()
    assert probe_names(), "no feature probes in driver/compat"


def test_probe_names_are_lowercase_identifiers() -> None:
    for name in probe_names() | {BASELINE}:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_every_used_macro_has_a_probe() -> None:
    probes = {macro(n) for n in probe_names()}
    for file, names in used_macros().items():
        assert names <= probes, f"{file} uses {sorted(names - probes)} without a driver/compat probe"


def test_every_probe_is_used() -> None:
    used = set().union(*used_macros().values()) if used_macros() else set()
    unused = {macro(n) for n in probe_names()} - used
    assert not unused, f"probes nobody reads: {sorted(unused)}"


def test_selections_live_in_pvnet_compat_h_only() -> None:
    assert set(used_macros()) == {"pvnet_compat.h"}
    compat = (DRIVER / "pvnet_compat.h").read_text()
    assert '#include "pvnet_compat_probed.h"' in compat
    # Every selection is an #ifdef/#ifndef/defined() test, never a value comparison.
    for line in compat.splitlines():
        if HAVE_RE.search(line):
            assert re.match(r"\s*#\s*(ifdef|ifndef|if\s+!?defined|elif\s+!?defined)\b", line), line


def test_no_version_number_guards() -> None:
    """Compatibility is probed; a version guard needs a comment saying why no probe can tell."""
    for p in [*driver_files(), *COMPAT.glob("*.c")]:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if "LINUX_VERSION_CODE" in line or "KERNEL_VERSION(" in line:
                pytest.fail(f"{p.name}:{n}: version-number guard: {line.strip()}")


FEATURE_DEFINE_RE = re.compile(r"^#define\s+(\w+)\s+(VIRTIO_(?:NET_)?F_\w+)\s*$", re.M)


def test_no_macro_names_one_feature_bit_for_another() -> None:
    """A fallback must not give a feature the bit of another: a macro named after one
    feature that expands to a different VIRTIO_*_F_* bit (a USO name standing for
    GUEST_TSO4 on a kernel without USO) turns "clear USO" into "clear TSO". Where a kernel
    lacks a bit, the compat header offers helpers that answer "absent" instead."""
    wrong = []
    for p in driver_files():
        for name, value in FEATURE_DEFINE_RE.findall(p.read_text()):
            feature = value.split("_F_", 1)[1]
            if not name.endswith(feature):
                wrong.append(f"{p.name}: {name} -> {value}")
    assert not wrong, wrong


def test_probes_have_license_and_purpose() -> None:
    for p in COMPAT.glob("*.c"):
        lines = p.read_text().splitlines()
        assert lines[0] == "// SPDX-License-Identifier: GPL-2.0", p.name
        assert lines[1] == "/*", f"{p.name}: say what the probe detects in a comment"


def test_kbuild_wires_the_generated_header() -> None:
    kbuild = (REPO_ROOT / "Kbuild").read_text()
    assert "driver/pvnet_compat_probed.h" in kbuild
    assert "if_changed,pvnet_probe" in kbuild
    assert "clean-files" in kbuild and "targets +=" in kbuild
    assert "$(addprefix $(obj)/,$(pvnet-y)): $(obj)/$(pvnet-probed-h)" in kbuild
    assert "/pvnet_compat_probed.h" in (DRIVER / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------- the generator, run with plain gcc

HARNESS_MK = """\
src := {src}
obj := {src}
CC := gcc
include {kbuild}
{out}: ; $(cmd_pvnet_probe)
"""

GOOD = """\
// SPDX-License-Identifier: GPL-2.0
static int pvnet_probe(int x)
{
\treturn x;
}
"""
# Each must fail through one of the -Werror= flags the probes add (gcc 12 only warns).
BAD = {
    "undeclared_call": "static int f(void)\n{\n\treturn no_such_function(1);\n}\n",
    "pointer_mismatch": "static long *f(int *p)\n{\n\treturn p;\n}\n",
    "int_conversion": "static int *f(int v)\n{\n\treturn v;\n}\n",
}


def run_generator(tmp_path: Path, probes: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    compat = tmp_path / "driver" / "compat"
    compat.mkdir(parents=True)
    for name, text in probes.items():
        (compat / f"{name}.c").write_text(text)
    (tmp_path / "VERSION").write_text("0.0.0\n")
    out = tmp_path / "out" / "probed.h"
    mk = tmp_path / "probe.mk"
    mk.write_text(HARNESS_MK.format(src=tmp_path, kbuild=REPO_ROOT / "Kbuild", out=out))
    proc = subprocess.run(["make", "--no-print-directory", "-f", str(mk), str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    return proc, out


@needs_toolchain
def test_generator_defines_passing_and_comments_failing_probes(tmp_path: Path) -> None:
    proc, out = run_generator(tmp_path, {BASELINE: GOOD, "good_api": GOOD, **BAD})
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("/* SPDX-License-Identifier: GPL-2.0 */\n")
    assert "#ifndef _PVNET_COMPAT_PROBED_H\n#define _PVNET_COMPAT_PROBED_H\n" in text
    assert text.rstrip().endswith("#endif")
    assert "#define PVNET_HAVE_GOOD_API 1\n" in text
    for name in BAD:
        assert f"#define {macro(name)}" not in text
        assert f"/* {macro(name)} not set: its probe did not compile */" in text
    assert "PVNET_HAVE_BASELINE" not in text
    # The compiler's reason is kept per probe.
    log = (out.parent / ".pvnet_probes" / "undeclared_call.log").read_text()
    assert "no_such_function" in log


@needs_toolchain
def test_generator_output_compiles_and_selects(tmp_path: Path) -> None:
    proc, out = run_generator(tmp_path, {BASELINE: GOOD, "good_api": GOOD, "undeclared_call":
                                         BAD["undeclared_call"]})
    assert proc.returncode == 0, proc.stderr
    user = tmp_path / "user.c"
    user.write_text(f'#include "{out}"\n#include "{out}"\n'
                    "#if !defined(PVNET_HAVE_GOOD_API) || defined(PVNET_HAVE_UNDECLARED_CALL)\n"
                    "#error wrong selection\n#endif\nint x;\n")
    cc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", str(user)], capture_output=True,
                        text=True, check=False)
    assert cc.returncode == 0 and not cc.stderr, cc.stderr


@needs_toolchain
def test_generator_stops_when_the_baseline_fails(tmp_path: Path) -> None:
    proc, out = run_generator(tmp_path, {BASELINE: BAD["undeclared_call"], "good_api": GOOD})
    assert proc.returncode != 0
    assert "baseline compile probe failed" in proc.stderr
    assert "no_such_function" in proc.stderr
    assert not out.exists()
