"""environment.properties, categories.json, executor.json and the harness result, per cell."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.reporting.allure_results import read_statuses
from harness.reporting.enrich import (
    CATEGORIES,
    HARNESS_SUITE,
    allure2_categories,
    allure3_categories,
    enrich_cell,
    executor_info,
)

from .conftest import EXPECTED, cell_json


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {k.replace("\\", ""): v for k, v in pairs}


def _results(cell_dir: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((cell_dir / "allure-results").glob("*-result.json"))]


def _allure2_categories_of(result: dict) -> list[str]:
    """Allure 2 semantics: every category whose status and full-match regexes fit."""
    details = result.get("statusDetails") or {}
    names = []
    for rule in allure2_categories():
        if result["status"] not in rule.get("matchedStatuses", []):
            continue
        if "messageRegex" in rule and not re.fullmatch(rule["messageRegex"],
                                                       details.get("message") or ""):
            continue
        if "traceRegex" in rule and not re.fullmatch(rule["traceRegex"], details.get("trace") or ""):
            continue
        if rule["name"] not in names:
            names.append(rule["name"])
    return names


def _allure3_category_of(result: dict) -> str | None:
    """Allure 3 semantics (core-api matchObjectMatcher): first rule with a matching matcher."""
    details = result.get("statusDetails") or {}
    labels = result.get("labels", [])
    for rule in allure3_categories():
        for matcher in rule["matchers"]:
            if "statuses" in matcher and result["status"] not in matcher["statuses"]:
                continue
            if any(not any(re.search(pattern, label.get("value", "")) for label in labels
                           if label.get("name") == name)
                   for name, pattern in matcher.get("labels", {}).items()):
                continue
            if "message" in matcher and not re.search(matcher["message"], details.get("message") or ""):
                continue
            if "trace" in matcher and not re.search(matcher["trace"], details.get("trace") or ""):
                continue
            return rule["name"]
    return None


def test_environment_properties_describe_each_cell(reports):
    for column in EXPECTED:
        enrich_cell(reports / column)
        props = _properties(reports / column / "allure-results" / "environment.properties")
        cell = cell_json(reports, column)
        assert props["platform"] == cell["platform"]
        assert props["channel"] == cell["channel"]
        assert props["run.id"] == cell["run_id"]
        assert "kubernetes" not in props and "juju" not in props, "local platforms have neither"
        if cell["status"] != "skipped":
            assert props["mlflow.server"] == cell["mlflow_version"]
            assert props["mlflow.client"] == props["mlflow.server"]
    mysql = _properties(reports / "local-mysql/2.22-stable/allure-results/environment.properties")
    assert re.fullmatch(r"MariaDB \d+\.\d+\.\d+", mysql["sql.backend"])
    assert re.fullmatch(r"SeaweedFS \d+\.\d+", mysql["s3.backend"])
    sqlite = _properties(reports / "local/2.22-stable/allure-results/environment.properties")
    assert sqlite["sql.backend"] == "SQLite"


def test_kubernetes_and_juju_versions_are_reported_when_present(reports):
    cell_dir = reports / "local/2.22-stable"
    cell = cell_json(reports, "local/2.22-stable")
    cell.update(platform="microk8s-1.32", platform_kind="microk8s", on_kubernetes=True,
                database="mysql",
                versions={**cell["versions"], "kubernetes": "v1.32.3", "juju": "3.6.8"})
    (cell_dir / "cell.json").write_text(json.dumps(cell), encoding="utf-8")
    (cell_dir / "diagnostics" / "platform" / "platform.json").unlink()
    enrich_cell(cell_dir)
    props = _properties(cell_dir / "allure-results" / "environment.properties")
    assert props["kubernetes"] == "v1.32.3" and props["juju"] == "3.6.8"
    assert props["sql.backend"].startswith("mysql-k8s") and props["s3.backend"].startswith("minio")


def test_executor_links_the_ci_run():
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "canonical/mm",
           "GITHUB_RUN_ID": "123456", "GITHUB_RUN_NUMBER": "42", "GITHUB_RUN_ATTEMPT": "2",
           "GITHUB_WORKFLOW": "matrix"}
    info = executor_info("20261126-1-abc", env)
    assert info["type"] == "github"
    assert info["buildUrl"] == "https://github.com/canonical/mm/actions/runs/123456/attempts/2"
    assert info["buildOrder"] == 42 and "20261126-1-abc" in info["buildName"]
    local = executor_info("20261126-1-abc", {})
    assert local["type"] == "local" and "buildUrl" not in local
    assert "20261126-1-abc" in local["buildName"]


def test_executor_of_the_run_survives_report_time_enrichment(reports):
    cell_dir = reports / "local/2.22-stable"
    enrich_cell(cell_dir, environ={"GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "9"})
    enrich_cell(cell_dir, environ={}, keep_executor=True)
    executor = json.loads((cell_dir / "allure-results" / "executor.json").read_text())
    assert executor["buildUrl"] == "https://github.com/o/r/actions/runs/9"


@pytest.mark.parametrize("semantics", ["allure2", "allure3"])
def test_categories_separate_product_infrastructure_and_harness(reports, semantics):
    for column in EXPECTED:
        enrich_cell(reports / column)
    seen: dict[str, set[str]] = {}
    for column in EXPECTED:
        for result in _results(reports / column):
            if semantics == "allure2":
                names = _allure2_categories_of(result)
                assert len(names) <= 1, f"{result['name']} in several categories: {names}"
                name = names[0] if names else None
            else:
                name = _allure3_category_of(result)
            if name:
                seen.setdefault(name, set()).add(f"{column}:{result['name']}")
            elif result["status"] in ("failed", "broken"):
                pytest.fail(f"{column}: {result['name']} ({result['status']}) has no category")
    assert seen["Product failures"] == {"local/2.22-stable:test_deliberate_failure"}
    assert seen["Infrastructure failures"] == {
        "local-bad-s3/2.22-stable:deploy — local-bad-s3 · 2.22/stable"}
    assert seen["Harness errors"] == {"local/latest-edge:harness — local · latest/edge"}
    assert seen["Known defects"] == {"local-mysql/2.22-stable:test_deliberate_failure"}
    assert {c.name for c in CATEGORIES} >= set(seen)


def test_a_cell_that_ended_badly_without_a_result_gets_one_harness_result(reports):
    cell_dir = reports / "local/latest-edge"
    first = enrich_cell(cell_dir)
    second = enrich_cell(cell_dir)
    assert first == second
    harness = [r for r in read_statuses(cell_dir / "allure-results") if r["suite"] == HARNESS_SUITE]
    assert len(harness) == 1 and harness[0]["status"] == "broken"
    assert "pytest exited" in harness[0]["message"]
    (result,) = [r for r in _results(cell_dir) if r["fullName"] == "harness.cell"]
    assert [a["name"] for a in result["attachments"]] == ["pytest.log (last 200 lines)"]
    for column in ("local/2.15-stable", "local/2.22-stable", "local-bad-s3/2.22-stable"):
        enrich_cell(reports / column)
        assert not [r for r in read_statuses(reports / column / "allure-results")
                    if r["suite"] == HARNESS_SUITE], f"{column} explains itself"


def test_enrichment_never_raises(tmp_path, capsys):
    cell_dir = tmp_path / "p" / "c"
    cell_dir.mkdir(parents=True)
    assert enrich_cell(cell_dir) == []                       # no cell.json: nothing to say
    (cell_dir / "cell.json").write_text('{"status": "broken", "versions": "oops"}')
    assert enrich_cell(cell_dir) == []
    assert "could not write Allure" in capsys.readouterr().err
