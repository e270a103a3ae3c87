"""Kernel line x test matrix from pytest JUnit XML reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    status: str  # pass, fail, error, skip
    detail: str = ""

    def cell(self) -> str:
        return self.status if not self.detail else f"{self.status}: {self.detail}"


def parse_junit(path: Path) -> dict[str, Outcome]:
    """{test id: outcome} from one pytest --junitxml file."""
    root = ET.parse(path).getroot()
    results: dict[str, Outcome] = {}
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        module = classname.rsplit(".", 1)[-1] if classname else ""
        tid = f"{module}::{name}" if module else name
        outcome = Outcome("pass")
        for child in case:
            if child.tag == "skipped":
                msg = child.get("message", "")
                outcome = Outcome("skip", msg.split("\n", 1)[0][:120])
            elif child.tag in ("failure", "error"):
                msg = child.get("message", "")
                outcome = Outcome("fail" if child.tag == "failure" else "error",
                                  msg.split("\n", 1)[0][:120])
        results[tid] = outcome
    return results


def build_matrix(reports: dict[str, Path | None]) -> tuple[list[str], dict[str, dict[str, Outcome]]]:
    """Tests (rows, in first-seen order) and line -> test -> outcome. A line without a report
    (its run died before writing one) is reported as an error row."""
    table: dict[str, dict[str, Outcome]] = {}
    tests: list[str] = []
    for line, path in reports.items():
        if path is None or not path.exists():
            table[line] = {"(run)": Outcome("error", "no report: the pytest run did not finish")}
        else:
            table[line] = parse_junit(path)
        for tid in table[line]:
            if tid not in tests:
                tests.append(tid)
    return tests, table


def render_matrix(tests: list[str], table: dict[str, dict[str, Outcome]]) -> str:
    lines = list(table)
    width = max([len(t) for t in tests] + [4])
    col = max([len(ln) for ln in lines] + [6])
    out = [f"{'test':<{width}}  " + "  ".join(f"{ln:<{col}}" for ln in lines)]
    skips: list[str] = []
    for t in tests:
        cells = []
        for ln in lines:
            o = table[ln].get(t)
            cells.append(f"{(o.status if o else '-'):<{col}}")
            if o is not None and o.status != "pass" and o.detail:
                skips.append(f"  [{ln}] {t}: {o.cell()}")
        out.append(f"{t:<{width}}  " + "  ".join(cells))
    totals = []
    for ln in lines:
        counts: dict[str, int] = {}
        for o in table[ln].values():
            counts[o.status] = counts.get(o.status, 0) + 1
        totals.append(f"{ln}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    out.append("")
    out.append("totals  " + " | ".join(totals))
    if skips:
        out.append("reasons:")
        out.extend(skips)
    return "\n".join(out)


def all_passed(table: dict[str, dict[str, Outcome]]) -> bool:
    return all(o.status in ("pass", "skip") for per in table.values() for o in per.values())


# JUnit properties the fault tests record (request.node.user_properties), summed per run.
RELIABILITY_KEYS = ("faults_injected", "good_bytes", "good_bytes_lost", "kernel_reports")


@dataclass(frozen=True)
class Reliability:
    """What the fault tests of one run did: scenarios run (tests that recorded a
    fault_scenario) and how many passed, faults injected, bytes of good traffic checked around
    the faults and how many of them did not arrive intact, kernel reports (KASAN, lockdep,
    WARNING...) seen after the tests that used a guest."""

    scenarios: int
    passed: int
    totals: dict[str, int]

    def render(self, line: str) -> str:
        t = self.totals
        return (f"reliability on {line}: {self.scenarios} fault scenarios run, {self.passed} "
                f"passed; {t['faults_injected']} faults injected; "
                f"{t['good_bytes']} bytes of good traffic checked, {t['good_bytes_lost']} lost; "
                f"{t['kernel_reports']} kernel reports")


def reliability(path: Path) -> Reliability:
    """The Reliability of one pytest --junitxml file."""
    totals = dict.fromkeys(RELIABILITY_KEYS, 0)
    scenarios = passed = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        for key in RELIABILITY_KEYS:
            totals[key] += sum(int(p.get("value", "0")) for p in case.iter("property")
                               if p.get("name") == key)
        if "fault_scenario" in props:
            scenarios += 1
            passed += not any(c.tag in ("failure", "error", "skipped") for c in case)
    return Reliability(scenarios, passed, totals)
