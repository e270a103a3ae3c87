"""The reliability summary of a fault run (matrix.reliability) from JUnit properties."""

from __future__ import annotations

from pathlib import Path

from pvnet_harness.matrix import reliability

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.e2e.test_hostile" name="test_a"><properties>
<property name="fault_scenario" value="rx_used_len_overflow" />
<property name="faults_injected" value="5" />
<property name="good_bytes" value="2097152" /><property name="good_bytes" value="2097152" />
<property name="good_bytes_lost" value="0" /><property name="kernel_reports" value="0" />
</properties></testcase>
<testcase classname="tests.e2e.test_hostile" name="test_b"><properties>
<property name="fault_scenario" value="tx_stuck" /><property name="faults_injected" value="1" />
<property name="kernel_reports" value="2" />
</properties><failure message="boom">x</failure></testcase>
<testcase classname="tests.e2e.test_basic" name="test_c"><properties>
<property name="kernel_reports" value="0" /></properties></testcase>
</testsuite></testsuites>"""


def test_sums_properties_and_counts_scenarios_that_passed(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    r = reliability(path)
    assert (r.scenarios, r.passed) == (2, 1)
    assert r.totals == {"faults_injected": 6, "good_bytes": 4194304, "good_bytes_lost": 0,
                        "kernel_reports": 2}
    text = r.render("6.12-debug")
    assert "2 fault scenarios run, 1 passed" in text and "6 faults injected" in text
    assert "4194304 bytes of good traffic checked, 0 lost" in text and "2 kernel reports" in text


def test_a_run_without_fault_tests_reports_zeros(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text('<testsuites><testsuite name="pytest"><testcase classname="m" name="t" />'
                    "</testsuite></testsuites>")
    r = reliability(path)
    assert (r.scenarios, r.passed) == (0, 0) and set(r.totals.values()) == {0}
