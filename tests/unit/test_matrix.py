from __future__ import annotations

from pathlib import Path

from pvnet_harness.matrix import all_passed, build_matrix, parse_junit, render_matrix

XML = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.e2e.test_basic" name="test_link" time="1"/>
<testcase classname="tests.e2e.test_ring" name="test_resize" time="0">
<skipped type="pytest.skip" message="5.10: no virtqueue_resize (-EOPNOTSUPP)">x</skipped></testcase>
<testcase classname="tests.e2e.test_traffic" name="test_flood" time="2">
<failure message="assert 9999 == 10000">trace</failure></testcase>
</testsuite></testsuites>"""


def test_parse_and_render(tmp_path: Path) -> None:
    a = tmp_path / "a.xml"
    a.write_text(XML)
    res = parse_junit(a)
    assert res["test_basic::test_link"].status == "pass"
    assert res["test_ring::test_resize"].detail.startswith("5.10: no virtqueue_resize")
    assert res["test_traffic::test_flood"].status == "fail"
    tests, table = build_matrix({"5.10": a, "6.1": None})
    text = render_matrix(tests, table)
    assert "test_ring::test_resize" in text and "skip" in text
    assert "[5.10] test_ring::test_resize: skip: 5.10: no virtqueue_resize" in text
    assert "[6.1] (run): error: no report" in text
    assert not all_passed(table)
