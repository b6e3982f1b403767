"""Allure 3 settings, links and the report build's behaviour without Node (no npm needed here)."""

from __future__ import annotations

import hashlib
import json

import pytest

import harness.reporting.allure_report as allure_report
from harness.reporting.allure_report import (
    AllureUnavailable,
    environment_id,
    iter_cells,
    pinned_version,
    report_settings,
    result_link,
)
from harness.reporting.build import build_reports
from harness.reporting.enrich import allure3_categories


def test_the_allure_cli_is_pinned_exactly():
    version = pinned_version()
    assert version.split(".")[0] == "3" and all(part.isdigit() for part in version.split("."))
    lock = json.loads((allure_report.TOOLS_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/allure"]["version"] == version


def test_links_use_awesome_result_ids():
    uuid = "c775e453-cbef-4860-8191-6c1bbb917079"
    assert result_link(uuid) == ("allure-report/single-file/index.html#"
                               + hashlib.md5(uuid.encode()).hexdigest())


@pytest.mark.parametrize(("platform", "expected"), [
    ("local", "local"), ("microk8s-1.32", "microk8s-1_32"), ("eks 1.31/x", "eks_1_31_x")])
def test_environment_ids_are_valid_allure_ids(platform, expected):
    assert environment_id(platform) == expected


def test_one_environment_per_platform_with_its_versions(reports, tmp_path):
    cells = list(iter_cells(reports))
    settings = report_settings(reports, cells, tmp_path / "out", {"buildUrl": "https://ci/run/1"})
    by_name = {e["name"]: e for e in settings["environments"]}
    assert sorted(by_name) == ["local", "local-bad-s3", "local-mysql"]
    mysql = by_name["local-mysql"]["variables"]
    assert mysql["SQL backend"].startswith("MariaDB ") and mysql["S3 backend"].startswith("SeaweedFS")
    assert mysql["2.22/stable"].startswith("MLflow server 2.22.0, client 2.22.0")
    assert by_name["local"]["variables"]["SQL backend"] == "SQLite"
    assert settings["variables"]["CI run"] == "https://ci/run/1"
    assert settings["categories"] == allure3_categories()
    assert settings["appendHistory"] is True


def test_a_report_built_twice_is_one_history_point(reports, tmp_path):
    cells = list(iter_cells(reports))
    ids = {}
    for cell_dir, _ in cells:
        for path in (cell_dir / "allure-results").glob("*-result.json"):
            uid = json.loads(path.read_text())["uuid"]
            ids[uid] = {"id": hashlib.md5(uid.encode()).hexdigest()}
    (reports / "allure-history.jsonl").write_text(
        json.dumps({"uuid": "old", "testResults": {"x": {"id": "other"}}}) + "\n"
        + json.dumps({"uuid": "last", "testResults": ids}) + "\n")
    assert report_settings(reports, cells, tmp_path, {})["appendHistory"] is False


def test_without_node_the_matrix_page_is_still_written(reports, monkeypatch):
    def unavailable(*args, **kwargs):
        raise AllureUnavailable("the Allure 3 report needs Node.js and npm", hint="install")

    monkeypatch.setattr(allure_report, "allure_cli", unavailable)
    outcome = build_reports(reports)
    assert isinstance(outcome.error, AllureUnavailable)
    assert (reports / "matrix.html").is_file()
    assert "The Allure report is not built yet" in (reports / "matrix.html").read_text()
    assert (reports / "local/2.22-stable/allure-results/environment.properties").is_file()


def test_a_rebuild_with_more_cells_replaces_the_same_nights_point(reports, tmp_path):
    from harness.reporting.allure_report import replace_same_night

    cells = list(iter_cells(reports))
    first = {}
    for cell_dir, _ in cells[:2]:
        for path in (cell_dir / "allure-results").glob("*-result.json"):
            uid = json.loads(path.read_text())["uuid"]
            first[uid] = {"id": hashlib.md5(uid.encode()).hexdigest()}
    history = reports / "allure-history.jsonl"
    history.write_text(json.dumps({"uuid": "last night", "testResults": {"x": {"id": "old"}}})
                       + "\n" + json.dumps({"uuid": "tonight, 2 jobs", "testResults": first})
                       + "\n")
    assert replace_same_night(history, cells)  # tonight again, all jobs merged
    assert [json.loads(ln)["uuid"] for ln in history.read_text().splitlines()] == ["last night"]
    assert not replace_same_night(history, cells)  # another night: kept
