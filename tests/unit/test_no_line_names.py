"""Tests decide by what the build found, never by a kernel line's name (docs/design.md (section 4)).

An e2e test asks the bed's probe results (TestBed.has, from the build's modinfo pvnet_probes)
or the kernel's own answer; a check like `bed.tree.line == "5.10"` goes stale the day a line is
added (7 was) and hides a probe that stopped compiling. The rule is checked on the syntax tree,
so comments and docstrings may still tell where something was seen.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import cast

import pytest
from pvnet_harness import REPO_ROOT
from pvnet_harness.kernels import LINES, KernelTree
from pvnet_harness.testbed import TestBed

E2E = REPO_ROOT / "tests" / "e2e"
# What the e2e tests stand on decides nothing by line name either.
HARNESS = [REPO_ROOT / "python" / "pvnet_harness" / n for n in ("testbed.py", "xdp.py")]
# Every line name kernels.py knows, plus the old ones a test may still spell.
LINE_NAMES = frozenset(LINES) | {"5.10", "6.1", "6.12"}


def _bed(probes: frozenset[str] = frozenset()) -> TestBed:
    # never started: no kernel, guest or netns; a given workdir is not created
    return TestBed(tree=cast(KernelTree, None), pvnet_ko=Path("pvnet.ko"), accel="tcg",
                   workdir=Path("/nonexistent"), probes=probes)


def test_bed_has_a_probe_in_any_case() -> None:
    bed = _bed(frozenset({"virtqueue_resize", "page_pool_frag"}))
    assert bed.has("virtqueue_resize")
    assert bed.has("VIRTQUEUE_RESIZE")
    assert bed.has("Page_Pool_Frag")
    assert not bed.has("netdev_stat_ops")


def test_bed_without_a_build_result_has_no_probes() -> None:
    bed = _bed()
    assert bed.probes == frozenset()
    assert not bed.has("baseline") and not bed.has("virtqueue_resize")


def _is_tree_line(node: ast.Attribute) -> bool:
    """`tree.line`, `kernel_tree.line`, `bed.tree.line`: a KernelTree's line name."""
    return node.attr == "line" and ast.unparse(node.value).split(".")[-1].endswith("tree")


def _is_line_name(node: ast.AST) -> bool:
    """A line-name literal, alone or in a tuple/list/set (`in ("5.10", "6.1")`)."""
    if isinstance(node, ast.Constant):
        return node.value in LINE_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_line_name(e) for e in node.elts)
    return False


def _formatted(tree: ast.AST) -> set[int]:
    """ids of nodes inside f-strings: naming the line in a message decides nothing."""
    return {id(n) for f in ast.walk(tree) if isinstance(f, ast.JoinedStr) for n in ast.walk(f)}


def line_name_decisions(source: str) -> list[str]:
    """Each place the source decides by a kernel line's name: a read of a tree's `.line`
    (compared, looked up, or called on) outside an f-string, or a line-name literal compared."""
    tree = ast.parse(source)
    in_fstring = _formatted(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _is_tree_line(node)
                and id(node) not in in_fstring):
            found.append(f"{node.lineno}: reads {ast.unparse(node)}")
        elif isinstance(node, ast.Compare) and any(
                _is_line_name(n) for n in (node.left, *node.comparators)):
            found.append(f"{node.lineno}: compares a line name: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("source", [
    'if bed.tree.line == "5.10":\n    pass',
    'ok = bed_rx.tree.line != "5.10"',
    'if bed.tree.line in ("5.10", "6.1"):\n    pass',
    'if "6.12" == kernel_tree.line:\n    pass',
    'if line in ("5.10", "6.1"):\n    pass',
    'if release not in ["6.1"]:\n    pass',
    'if name == "7":\n    pass',
    'want = EXPECTED[bed.tree.line]',
    'old = tree.line.startswith("5.")',
])
def test_rule_catches_decisions_by_line_name(source: str) -> None:
    assert line_name_decisions(source), source


@pytest.mark.parametrize("source", [
    'for line in (mdir / "modules.dep").read_text().splitlines():\n    pass',
    'assert rc == "3", first',
    'LINES = ("5.10", "6.1", "6.12")',
    'pb = plain_build("6.1")',
    'assert res.rc != 0, f"refused on {bed.tree.line}: {res.out}"',
    'if bed.has("virtqueue_resize"):\n    pass',
    '# bed.tree.line == "5.10" was the old way\nx = 1',
])
def test_rule_lets_probes_messages_and_comments_be(source: str) -> None:
    assert not line_name_decisions(source), line_name_decisions(source)


def test_e2e_tests_never_decide_by_a_kernel_line_name() -> None:
    files = [*sorted(E2E.glob("*.py")), *HARNESS]
    assert len(files) > len(HARNESS), "no e2e tests found"
    bad = [f"{p.relative_to(REPO_ROOT)}:{hit}" for p in files
           for hit in line_name_decisions(p.read_text())]
    assert not bad, ("decide by the build's probes (bed.has) or the kernel's answer, not the "
                     "line's name:\n" + "\n".join(bad))


def _probe_names_asked(source: str) -> set[str]:
    """The literal probe names passed to any `.has(...)`."""
    return {n.args[0].value.lower() for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "has" and len(n.args) == 1
            and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)}


def test_e2e_tests_ask_only_probes_that_exist() -> None:
    """A misspelt probe name is never found, so a test would quietly expect the fallback."""
    probes = {p.stem for p in (REPO_ROOT / "driver" / "compat").glob("*.c")} - {"baseline"}
    for p in sorted(E2E.glob("*.py")):
        unknown = _probe_names_asked(p.read_text()) - probes
        assert not unknown, f"{p.name} asks for probes with no driver/compat/<name>.c: {unknown}"
