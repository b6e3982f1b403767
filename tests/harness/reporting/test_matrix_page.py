"""reports/matrix.{json,md,html} from a reports tree of real cell results."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from harness.reporting.enrich import enrich_cell
from harness.reporting.matrix_page import build_model, render_markdown, write_matrix_page

from .conftest import EXPECTED, cell_json


def _failing_uuid(reports, column: str, name: str) -> str:
    for path in (reports / column / "allure-results").glob("*-result.json"):
        body = json.loads(path.read_text())
        if body["name"] == name:
            return body["uuid"]
    raise AssertionError(f"{name} not in {column}")


def test_matrix_json_lists_every_cell_with_status_counts_duration_versions(reports):
    paths = write_matrix_page(reports)
    assert [p.name for p in paths] == ["matrix.json", "matrix.md", "matrix.html"]
    data = json.loads((reports / "matrix.json").read_text())
    assert {c["column"]: c["status"] for c in data["cells"]} == EXPECTED
    for cell in data["cells"]:
        assert set(cell) >= {"status", "counts", "duration_s", "versions", "run_id", "suites",
                             "phases", "channel", "platform"}
        assert cell["duration_s"] > 0
        assert cell["versions"]["platform"] == cell["platform"]
    by = {c["column"]: c for c in data["cells"]}
    assert by["local/2.22-stable"]["counts"] == {"failed": 1, "passed": 1}
    assert by["local-mysql/2.22-stable"]["counts"] == {"known-defect": 1, "passed": 1}
    assert by["local-mysql/2.22-stable"]["known_defects"] == 1
    assert by["local-mysql/latest-edge"]["versions"]["mlflow.server"] == "3.14.0"


def test_statuses_reasons_and_links(reports):
    for column in EXPECTED:
        enrich_cell(reports / column)
    model = build_model(reports)
    columns = [c["column"] for c in model["cells"]]
    assert columns == sorted(EXPECTED, key=lambda k: (k.split("/")[0], k))  # natural order
    rows = {r["suite"]: r for r in model["rows"]}
    assert list(rows)[:2] == ["lifecycle", "harness"]
    demo = dict(zip(columns, rows["demo"]["cells"], strict=True))
    assert demo["local/2.22-stable"]["display_status"] == "failed"
    assert demo["local-mysql/2.22-stable"]["display_status"] == "known-defect"
    assert demo["local/2.15-stable"]["display_status"] == "passed"
    assert demo["local-bad-s3/2.22-stable"]["display_status"] == "not-run"
    assert rows["demo"]["open"] and not rows["tracking"]["open"]
    uuid = _failing_uuid(reports, "local/2.22-stable", "test_deliberate_failure")
    assert demo["local/2.22-stable"]["link"] == (
        "allure-report/single-file/index.html#" + hashlib.md5(uuid.encode()).hexdigest())
    skipped = next(c for c in model["cells"] if c["column"] == "local-mysql/2.15-stable")
    assert skipped["display_status"] == "skipped" and "MariaDB" in skipped["message"]
    infra = dict(zip(columns, rows["lifecycle"]["cells"], strict=True))["local-bad-s3/2.22-stable"]
    assert infra["display_status"] == "broken" and "bucket" in infra["message"].lower()
    assert model["totals"] == {"failed": 1, "broken": 2, "known-defect": 1, "passed": 2, "skipped": 1}


def test_markdown_fits_a_job_summary_and_links_when_published(reports, monkeypatch):
    model = build_model(reports)
    text = render_markdown(model)
    assert len(text.encode()) < 1024 * 1024
    header = next(line for line in text.splitlines() if line.startswith("|  |"))
    assert header.count("<br>") == len(EXPECTED)
    assert "❌ failed" in text and "⏭️ skipped" in text and "🐞" in text
    assert "](" not in text, "no links without a published URL"
    linked = render_markdown(model, "https://example.org/run/7/reports")
    assert "(https://example.org/run/7/reports/allure-report/single-file/index.html#" in linked


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag in ("script", "link", "img", "iframe") or re.match(
                r"(https?:)?//", values.get("src") or values.get("href") or ""):
            self.found.append(f"<{tag} {values}>")


def test_html_has_no_external_assets_and_one_column_per_cell(reports):
    write_matrix_page(reports)
    html = (reports / "matrix.html").read_text()
    parser = _Assets()
    parser.feed(html)
    assert parser.found == []
    assert "@import" not in html and "url(" not in html
    assert len(re.findall(r'<th class="channel" data-cell="', html)) == len(EXPECTED)
    assert "The Allure report is not built yet" in html
    for column in EXPECTED:
        assert cell_json(reports, column)["run_id"] in html


def test_an_empty_reports_dir_still_gets_a_page(tmp_path):
    paths = write_matrix_page(tmp_path)
    assert all(p.is_file() for p in paths)
    assert json.loads((tmp_path / "matrix.json").read_text())["cells"] == []


def test_each_parameter_of_a_test_keeps_its_own_row():
    from harness.reporting.matrix_page import _row

    def column(name: str, status: str) -> dict:
        test = {"name": name, "fullName": "test_security#test_probe", "status": status,
                "display_status": status, "known": False, "message": "", "informational": False,
                "link": None}
        return {"message": "", "suites": {"security": {
            "tests": [test], "display_status": status, "counts": {status: 1}, "link": None,
            "message": ""}}}

    columns = [column("test_probe[plain]", "passed"), column("test_probe[double-encoded]", "failed")]
    row = _row("security", columns)
    assert [t["title"] for t in row["tests"]] == ["test_probe[plain]", "test_probe[double-encoded]"]
    assert [c["display_status"] for c in row["tests"][1]["cells"]] == ["not-run", "failed"]
def _param_result(results: Path, name: str, status: str, params: dict[str, str]) -> None:
    """A result as allure-pytest writes it for a parametrized test: the parameters are in the
    name, not in fullName, and parameter values are repr()."""
    import uuid

    uid = str(uuid.uuid4())
    body = {"uuid": uid, "name": name, "status": status,
            "fullName": "test_artifacts#test_special_characters_in_names",
            "parameters": [{"name": k, "value": repr(v)} for k, v in params.items()],
            "labels": [{"name": "suite", "value": "artifacts"}], "start": 1, "stop": 2}
    (results / f"{uid}-result.json").write_text(json.dumps(body))


def test_each_parametrized_case_is_a_row_and_counts_agree(reports):
    column = "local/2.15-stable"
    results = reports / column / "allure-results"
    cases = [f"{name}-{side}" for name in ("hash#fragment.txt", "space name.txt", "ünï.txt")
             for side in ("client", "bucket")]
    for case in cases:
        _param_result(results, f"test_special_characters_in_names[{case}]", "passed",
                      {"platform": "local", "name": case})
    model = build_model(reports)
    row = next(r for r in model["rows"] if r["suite"] == "artifacts")
    titles = [t["title"] for t in row["tests"]]
    assert sorted(titles) == sorted(f"test_special_characters_in_names[{c}]" for c in cases)
    index = [c["column"] for c in model["cells"]].index(column)
    assert row["cells"][index]["counts"] == {"passed": 6}
    markdown = render_markdown(model)
    assert "<summary>artifacts: 6 test(s)</summary>" in markdown


def test_allure_parameters_show_values_not_reprs(reports):
    column = reports / "local" / "2.22-stable"
    before = [p for path in (column / "allure-results").glob("*-result.json")
              for p in json.loads(path.read_text()).get("parameters", [])]
    assert {"name": "platform", "value": "'local'"} in before  # what allure-pytest wrote
    enrich_cell(column)
    after = [p for path in (column / "allure-results").glob("*-result.json")
             for p in json.loads(path.read_text()).get("parameters", [])]
    assert {p["value"] for p in after if p["name"] == "platform"} == {"local"}
    assert {p["value"] for p in after if p["name"] == "channel"} == {"2.22/stable"}


def test_an_interrupted_cell_is_not_a_harness_error(reports):
    column = reports / "local" / "2.15-stable"
    cell = cell_json(reports, "local/2.15-stable")
    cell.update(status="interrupted", message="interrupted")
    (column / "cell.json").write_text(json.dumps(cell))
    enrich_cell(column)
    assert not [p for p in (column / "allure-results").glob("*-result.json")
                if json.loads(p.read_text())["fullName"].startswith("harness.")]
    model = build_model(reports)
    shown = next(c for c in model["cells"] if c["column"] == "local/2.15-stable")
    assert shown["display_status"] == "interrupted"


def test_skips_partial_runs_and_defects_are_on_the_page(reports):
    path = reports / "local" / "2.15-stable" / "cell.json"
    cell = json.loads(path.read_text())
    cell.update(status="passed-with-skips", message="1 skipped: test_upload (no canary here)",
                skips=[{"test": "test_upload", "reason": "no canary here"}],
                not_applicable=[{"test": "test_cors", "reason": "MLflow 2.15 has no middleware"}],
                known_defects=["mlflow-x"],
                partial={"selected": 3, "total": 48, "by": ["-k", "search"]})
    path.write_text(json.dumps(cell))
    write_matrix_page(reports)
    column = next(c for c in build_model(reports)["cells"] if c["column"] == "local/2.15-stable")
    assert column["display_status"] == "passed-with-skips"
    assert column["partial"] == "partial: 3 of 48 tests selected (-k search)"
    html = (reports / "matrix.html").read_text()
    assert 'data-partial="local/2.15-stable">partial: 3 of 48 tests selected (-k search)' in html
    assert "1 skipped: why" in html and "<b>test_upload</b>: no canary here" in html
    assert "known defects: mlflow-x" in html and "passed with skips" in html
    markdown = (reports / "matrix.md").read_text()
    assert "☑️ passed with skips" in markdown and "partial: 3 of 48 tests selected" in markdown


def test_a_merged_report_links_its_own_copies_of_the_logs(reports):
    path = reports / "local" / "2.22-stable" / "cell.json"
    cell = json.loads(path.read_text())
    cell["message"] = ("scenarios tracking: pytest exited 3; see /home/runner/work/m/reports/"
                       "local/2.22-stable/pytest.log")
    path.write_text(json.dumps(cell))
    (path.parent / "pytest.log").write_text("1 failed\n")  # the copy that came with the cell
    write_matrix_page(reports)
    column = next(c for c in build_model(reports)["cells"] if c["column"] == "local/2.22-stable")
    assert column["message"] == "scenarios tracking: pytest exited 3; see local/2.22-stable/pytest.log"
    assert {"name": "pytest.log", "href": "local/2.22-stable/pytest.log"} in column["logs"]
    html = (reports / "matrix.html").read_text()
    assert '<a href="local/2.22-stable/pytest.log">pytest.log</a>' in html
    assert "/home/runner" not in html
