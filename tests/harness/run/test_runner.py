"""Runner lifecycle: failed deploys are one broken result, missing MariaDB is a skip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import provisioners.local as local
from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions


def _runner(tmp_path: Path, platform: str, server_start: int = 180, **settings) -> Runner:
    matrix = load_matrix()
    matrix = dataclasses.replace(
        matrix, timeouts=dataclasses.replace(matrix.timeouts, server_start=server_start))
    if settings:
        p = matrix.platforms[platform]
        patched = dataclasses.replace(p, settings=dataclasses.replace(p.settings, **settings))
        matrix = dataclasses.replace(matrix, platforms={**matrix.platforms, platform: patched})
    cells = expand_cells(matrix, Selection(platforms=(platform,), channels=("2.22/stable",),
                                           scenarios=("tracking",)))
    log = (tmp_path / "progress.log").open("w")
    return Runner(matrix, cells, RunOptions(reports_dir=tmp_path / "reports"),
                  progress=Progress(log))


def _results(cell_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (cell_dir / "allure-results").glob("*-result.json")]


def test_failed_deploy_is_one_broken_result_with_logs(tmp_path):
    runner = _runner(tmp_path, "local", server_start=20, bucket="Not_A_Valid_Bucket!")
    assert runner.run() == 3
    cell_dir = tmp_path / "reports" / "local" / "2.22-stable"
    results = _results(cell_dir)
    by_phase = {r["fullName"]: r for r in results}
    deploy = by_phase["lifecycle.deploy"]
    assert deploy["status"] == "broken"
    assert "Not_A_Valid_Bucket!" in deploy["statusDetails"]["message"]
    attached = {a["name"] for a in deploy["attachments"]}
    assert "weed.log" in attached
    assert not [r for r in results if not r["fullName"].startswith("lifecycle.")], \
        "no scenario may run after a failed deploy"
    assert by_phase["lifecycle.teardown"]["status"] == "passed"
    labels = {label["name"]: label["value"] for label in deploy["labels"]}
    assert labels["platform"] == "local" and labels["channel"] == "2.22/stable"
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == "broken"
    # a name S3 can never accept is terminal: the deploy ends long before its 20 s deadline
    (deploy_phase,) = [p for p in summary["phases"] if p["name"] == "deploy"]
    assert deploy_phase["duration_s"] < 15, deploy_phase
    state = json.loads(next((tmp_path / "reports" / "state").glob("*.json")).read_text())
    assert state["resources"] == []


def test_missing_mariadb_skips_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "find_sbin", lambda name: None)
    runner = _runner(tmp_path, "local-mysql")
    assert runner.run() == 0
    cell_dir = tmp_path / "reports" / "local-mysql" / "2.22-stable"
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == "skipped"
    assert "apt-get install mariadb-server" in summary["message"]
    provision = next(r for r in _results(cell_dir) if r["fullName"] == "lifecycle.provision")
    assert provision["status"] == "skipped"
    assert "mariadb-server" in provision["statusDetails"]["message"]


@pytest.mark.parametrize("failing", [False, True], ids=["passing", "failing"])
def test_scenario_outcome_sets_exit_code_and_labels(tmp_path, monkeypatch, failing):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "pytest.ini").write_text("[pytest]\n")
    (scenarios / "test_tracking.py").write_text(
        "def test_server_answers(mlflow_client, endpoint):\n"
        "    assert mlflow_client.search_experiments()\n"
        f"    assert {not failing!r}, 'deliberate failure'\n")
    monkeypatch.setenv("MLFLOW_MATRIX_SCENARIOS_DIR", str(scenarios))
    runner = _runner(tmp_path, "local")
    assert runner.run() == (1 if failing else 0)
    cell_dir = tmp_path / "reports" / "local" / "2.22-stable"
    (scenario,) = [r for r in _results(cell_dir) if not r["fullName"].startswith("lifecycle.")]
    assert scenario["status"] == ("failed" if failing else "passed")
    labels = {label["name"]: label["value"] for label in scenario["labels"]}
    assert labels["platform"] == "local"
    assert labels["channel"] == "2.22/stable"
    assert labels["mlflow_version"] == "2.22.0"
    assert labels["scenario"] == "tracking"
    params = {p["name"]: p["value"] for p in scenario["parameters"]}
    assert params["platform"].strip("'") == "local"  # allure-pytest stores repr()
    if failing:
        names = [a["name"] for a in scenario.get("attachments", [])]
        assert any("mlflow server log" in n for n in names)
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == ("failed" if failing else "passed")
    assert summary["versions"]["mlflow_server"] == "2.22.0"
