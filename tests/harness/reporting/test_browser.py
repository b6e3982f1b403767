"""The reports as a reviewer sees them: matrix.html and the Allure 3 report in headless Chromium.

Builds its own reports tree from the fixture cells (real results, see data/README.md), runs the
real report build (enrichment, `allure generate` with the pinned Allure 3, the matrix page),
then checks the rendered DOM and keeps screenshots under reports/screenshots/ (git-ignored;
MLFLOW_MATRIX_SCREENSHOTS overrides) for a human to look at.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.reporting.browser import dump_dom, find_chromium, screenshot

from .conftest import DATA, EXPECTED, ROOT

pytestmark = [
    pytest.mark.skipif(find_chromium() is None,
                       reason="chromium is not installed (.ci/run installs it: apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                       reason="Node.js/npm are not installed: the Allure 3 CLI cannot be installed"),
    pytest.mark.timeout(900),
]

SHOTS = Path(os.environ.get("MLFLOW_MATRIX_SCREENSHOTS") or ROOT / "reports" / "screenshots")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from harness.reporting.build import build_reports

    reports = tmp_path_factory.mktemp("browser") / "reports"
    shutil.copytree(DATA, reports)
    outcome = build_reports(reports)
    assert outcome.error is None, outcome.error
    return reports


class _Cells(HTMLParser):
    """data-cell/data-status of the rendered matrix, per kind of element."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.status: dict[str, str] = {}
        self.suite_cells: dict[tuple[str, str], str] = {}
        self.links: dict[tuple[str, str], str] = {}
        self.open: list[str] = []
        self._suite = ""
        self._in: tuple[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tbody" and "suite" in classes:
            self._suite = a["data-suite"]
        if tag == "th" and "channel" in classes:
            self.headers.append(a["data-cell"])
        if tag == "td" and "cell" in classes:
            self.status[a["data-cell"]] = a["data-status"]
        if tag == "tr":
            self._row = "suite" if "suite-row" in classes else "other"
        if tag == "details" and "open" in a:
            self.open.append(self._suite)
        if tag == "td" and "st" in classes and self._suite and getattr(self, "_row", "") == "suite":
            self._in = (self._suite, a["data-cell"])
            self.suite_cells[self._in] = a["data-status"]
        if tag == "a" and self._in:
            self.links[self._in] = a["href"]

    def handle_endtag(self, tag):
        if tag == "td":
            self._in = None


def test_matrix_page_renders_one_column_per_cell_with_statuses(built):
    url = (built / "matrix.html").as_uri()
    dom = dump_dom(url)
    cells = _Cells()
    cells.feed(dom)
    assert sorted(cells.headers) == sorted(EXPECTED)
    assert len(cells.headers) == len(set(cells.headers)) == len(EXPECTED)
    assert cells.status == EXPECTED
    assert cells.suite_cells[("demo", "local/2.22-stable")] == "failed"
    assert cells.suite_cells[("demo", "local-mysql/2.22-stable")] == "known-defect"
    assert cells.suite_cells[("lifecycle", "local-bad-s3/2.22-stable")] == "broken"
    assert cells.suite_cells[("tracking", "local-bad-s3/2.22-stable")] == "not-run"
    assert cells.suite_cells[("harness", "local/latest-edge")] == "broken"
    assert "demo" in cells.open, "a suite with a failure is expanded"
    link = cells.links[("demo", "local/2.22-stable")]
    assert link.startswith("allure-report/single-file/index.html#")
    assert (built / link.split("#")[0]).is_file()
    assert "The Allure report is" not in dom, "the report is built and fresh"
    shot = screenshot(url, SHOTS / "matrix.png", width=1500, height=1100)
    assert shot.stat().st_size > 10_000


def _failing(built: Path) -> str:
    for path in (built / "local/2.22-stable/allure-results").glob("*-result.json"):
        body = json.loads(path.read_text())
        if body["name"] == "test_deliberate_failure":
            return hashlib.md5(body["uuid"].encode()).hexdigest()
    raise AssertionError("no failing fixture result")


def test_failing_cell_link_opens_the_failing_test_with_the_server_log(built):
    single = built / "allure-report" / "single-file" / "index.html"
    url = f"{single.as_uri()}#{_failing(built)}"
    dom = dump_dom(url, wait_ms=15000)
    assert "test_deliberate_failure" in dom
    assert "deliberate failure for the report demo" in dom
    assert "Product failures" in dom, "category shown on the test"
    screenshot(url, SHOTS / "allure-failing-test.png", wait_ms=15000)
    attachments = dump_dom(f"{url}/attachments", wait_ms=15000)
    assert "mlflow server log" in attachments
    screenshot(f"{url}/attachments", SHOTS / "allure-failing-test-attachments.png", wait_ms=15000)


def test_allure_report_has_one_environment_per_platform(built):
    settings = json.loads((built / ".allure" / "settings.json").read_text())
    platforms = sorted({column.split("/")[0] for column in EXPECTED})
    assert sorted(e["name"] for e in settings["environments"]) == platforms
    widgets = built / "allure-report" / "awesome" / "widgets"
    environments = json.loads((widgets / "environments.json").read_text())
    assert sorted(e["name"] for e in environments if e["id"] != "default") == platforms
    mysql = next(e for e in environments if e["name"] == "local-mysql")
    variables = json.loads((widgets / mysql["id"] / "variables.json").read_text())
    assert variables["SQL backend"].startswith("MariaDB")
    single = built / "allure-report" / "single-file" / "index.html"
    dom = dump_dom(single.as_uri(), wait_ms=15000)
    assert "Environment" in dom
    screenshot(single.as_uri(), SHOTS / "allure-overview.png", wait_ms=15000)
    assert (built / "allure-report" / "index.html").is_file()
    assert (built / "allure-history.jsonl").read_text().count("\n") == 1


def test_known_defects_are_counted_apart_in_the_allure_summary(built):
    """A reproduced known defect is a failure with a known-issue resolution (Allure 3 counts it
    in stats.resolutions.issues), never a skip: the headline cannot read "passed 100 %"."""
    summaries = [json.loads(p.read_text()) for p in (built / "allure-report").rglob("summary.json")]
    assert summaries
    stats = summaries[0]["stats"]
    assert stats.get("resolutions", {}).get("issues", 0) >= 1
    assert stats.get("failed", 0) >= stats["resolutions"]["issues"]
    known = json.loads((built / ".allure" / "known-issues.json").read_text())
    assert [i["id"] for i in known["resolutionIssues"]] == ["DEMO-1"]
