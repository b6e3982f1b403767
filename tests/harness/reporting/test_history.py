"""Regressions against the previous report (harness/reporting/history.py) and their banner.

Tonight is the fixture tree of real results; last night is its own matrix.json with what held
then written into it (a previous report is only a document: editing it is how a night differs).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.reporting.browser import dump_dom, find_chromium
from harness.reporting.history import find_regressions, import_previous, regression_lines
from harness.reporting.matrix_page import build_model, write_matrix_page
from harness.system.errors import ConfigError


def _cell(model: dict, column: str) -> dict:
    return next(c for c in model["cells"] if c["column"] == column)


def _green(model: dict, column: str) -> None:
    cell = _cell(model, column)
    cell["display_status"] = cell["status"] = "passed"
    for entry in cell["suites"].values():
        for test in entry["tests"]:
            test["display_status"] = test["status"] = "passed"


@pytest.fixture
def tonight(reports: Path) -> dict:
    return build_model(reports)


@pytest.fixture
def last_night(tonight: dict) -> dict:
    """The same cells, but local/2.22-stable was all green then."""
    before = copy.deepcopy(tonight)
    _green(before, "local/2.22-stable")
    before["generated"] = "2026-11-28T02:40:00Z"
    before["run_ids"] = ["20261128-021700-abcdef"]
    return before


def test_a_cell_green_then_red_now_is_a_regression_with_its_tests(last_night, tonight):
    found = find_regressions(last_night, tonight)
    assert [c["column"] for c in found["cells"]] == ["local/2.22-stable"]
    cell = found["cells"][0]
    assert (cell["was"], cell["now"]) == ("passed", "failed")
    assert [(t["name"], t["was"], t["now"]) for t in cell["tests"]] == [
        ("test_deliberate_failure", "passed", "failed")]
    assert cell["tests"][0]["link"].startswith("allure-report/single-file/index.html#")
    assert found["missing"] == [] and found["previous_generated"] == "2026-11-28T02:40:00Z"
    assert regression_lines(found) == [
        "local · 2.22/stable: passed → failed (1 test(s): test_deliberate_failure)"]


def test_what_stayed_red_or_was_accepted_is_no_regression(tonight):
    # broken then and now, a known defect then and now, skipped: nothing to call out
    assert find_regressions(copy.deepcopy(tonight), tonight)["cells"] == []


def test_a_known_defect_that_now_fails_for_real_is_a_regression(tonight):
    now = copy.deepcopy(tonight)
    cell = _cell(now, "local-mysql/2.22-stable")
    cell["display_status"] = "failed"
    test = next(t for t in cell["suites"]["demo"]["tests"] if t["name"] == "test_deliberate_failure")
    test["display_status"] = "failed"
    found = find_regressions(tonight, now)
    assert [(c["column"], c["was"], c["now"]) for c in found["cells"]] == [
        ("local-mysql/2.22-stable", "known-defect", "failed")]
    assert regression_lines(found)[0].startswith("local-mysql · 2.22/stable: known defect → failed")


def test_a_new_failure_in_a_cell_that_was_already_red_is_called_out(tonight):
    now = copy.deepcopy(tonight)
    tracking = _cell(now, "local/2.22-stable")["suites"]["tracking"]["tests"][0]
    tracking["display_status"] = "failed"
    found = find_regressions(tonight, now)
    assert [(c["column"], c["was"], c["now"]) for c in found["cells"]] == [
        ("local/2.22-stable", "failed", "failed")]
    assert [t["name"] for t in found["cells"][0]["tests"]] == ["test_experiment_roundtrip"]


def test_a_green_cell_missing_tonight_is_listed(tonight):
    now = copy.deepcopy(tonight)
    now["cells"] = [c for c in now["cells"] if c["platform"] != "local-mysql"]
    found = find_regressions(tonight, now)
    assert found["cells"] == []
    # 2.15-stable was skipped (neither green nor red): not listed
    assert [(m["column"], m["was"]) for m in found["missing"]] == [
        ("local-mysql/2.22-stable", "known-defect"), ("local-mysql/latest-edge", "passed")]
    assert regression_lines(found)[-1] == (
        "local-mysql · latest/edge: passed → missing (no result tonight)")


def test_the_banner_is_on_top_of_the_page_and_in_the_summary(reports, last_night):
    write_matrix_page(reports, previous=last_night)
    html = (reports / "matrix.html").read_text()
    assert 'id="regressions" role="alert" data-regressions="1"' in html
    assert 'data-regression="local/2.22-stable"' in html
    assert html.index('id="regressions"') < html.index('class="totals"') < html.index('id="matrix"')
    md = (reports / "matrix.md").read_text()
    head = md.split("|", 1)[0]
    assert "> [!CAUTION]" in head and "1 regression(s) since 2026-11-28T02:40:00Z" in head
    assert "> - local · 2.22/stable: passed → failed (1 test(s): test_deliberate_failure)" in head
    saved = json.loads((reports / "matrix.json").read_text())
    assert saved["regressions"]["cells"][0]["column"] == "local/2.22-stable"


def test_no_previous_report_no_banner_and_an_unchanged_night_says_so(reports, tonight):
    write_matrix_page(reports)
    assert 'id="regressions"' not in (reports / "matrix.html").read_text()
    assert "regressions" not in json.loads((reports / "matrix.json").read_text())
    write_matrix_page(reports, previous=tonight)
    assert 'data-regressions="0"' in (reports / "matrix.html").read_text()
    assert "No regression since" in (reports / "matrix.md").read_text()


def test_the_previous_report_is_read_and_its_history_carried_over(reports, tmp_path, last_night):
    previous = tmp_path / "published"
    previous.mkdir()
    (previous / "matrix.json").write_text(json.dumps(last_night))
    (previous / "allure-history.jsonl").write_text('{"uuid": "n1"}\n{"uuid": "n2"}\n')
    carried = import_previous(previous, reports)
    assert carried.history_lines == 2 and carried.model["generated"] == last_night["generated"]
    assert (reports / "allure-history.jsonl").read_text().count("uuid") == 2


@pytest.mark.parametrize(("files", "message"), [
    (None, "no such folder"),
    ({}, "holds neither matrix.json nor allure-history.jsonl"),
    ({"matrix.json": "{not json"}, "is not readable JSON"),
    ({"matrix.json": '{"cells": 3}'}, "is not a matrix page's matrix.json"),
])
def test_a_bad_previous_report_is_a_clear_error(reports, tmp_path, files, message):
    previous = tmp_path / "published"
    if files is not None:
        previous.mkdir()
        for name, text in files.items():
            (previous / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        import_previous(previous, reports)


@pytest.mark.skipif(find_chromium() is None,
                    reason="chromium is not installed (.ci/run installs it: apt-get install chromium)")
def test_chromium_shows_the_banner_first(reports, last_night):
    write_matrix_page(reports, previous=last_night)
    dom = dump_dom((reports / "matrix.html").as_uri())
    assert dom.index('id="regressions"') < dom.index('class="totals"')
    assert "1 regression since the previous report" in dom
    assert "test_deliberate_failure" in dom.split('id="matrix"')[0]
