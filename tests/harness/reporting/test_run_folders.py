"""Two real runs into one reports/: the page shows the latest only, the earlier one is kept and
linked; the plan printed beforehand names exactly the pytest runs that happen; the closing summary
lists the red cell with its reason and log."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reporting.run_folders import earlier_runs, finish_run, start_run
from harness.system.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SUITE = '''\
import os

import pytest


def test_plain(mlflow_client):
    assert mlflow_client.search_experiments() is not None
    assert os.environ.get("FAIL_PLAIN") != "1", "asked to fail"


@pytest.mark.phase("before-restart")
def test_seed(mlflow_client, manifest_path):
    manifest_path.write_text(mlflow_client.create_experiment("seed-" + os.urandom(4).hex()))


@pytest.mark.phase("after-restart")
def test_verify(mlflow_client, manifest_path):
    assert mlflow_client.get_experiment(manifest_path.read_text()) is not None


def test_deselected_by_pytest_args():
    raise AssertionError("`-- -k 'not deselected'` must reach pytest")
'''


@pytest.fixture
def scenarios(tmp_path: Path) -> Path:
    root = tmp_path / "scenarios"
    root.mkdir()
    shutil.copy(ROOT / "scenarios" / "pytest.ini", root / "pytest.ini")
    (root / "test_persistence.py").write_text(SUITE, encoding="utf-8")
    return root


ARGS = ["--platform", "local", "--channel", "2.22/stable", "--scenario", "persistence"]
PYTEST_ARGS = ["--", "-k", "not deselected"]


def _harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=900, env={**os.environ, **env})


@pytest.mark.timeout(900)  # two real runs: about 2 min on an idle 2-core machine
def test_plan_is_what_runs_and_each_run_gets_its_own_folder(tmp_path, scenarios):
    reports = tmp_path / "reports"
    env = {"MLFLOW_MATRIX_SCENARIOS_DIR": str(scenarios)}
    plan = _harness("plan", *ARGS, "--reports-dir", str(reports), *PYTEST_ARGS, env=env)
    assert plan.returncode == 0, plan.stderr
    planned_logs = re.findall(r"^\s+log: (\S+)$", plan.stdout, re.M)
    planned_argv = [ln.strip() for ln in plan.stdout.splitlines() if " -m pytest " in ln]
    # the main run (which also makes the before-restart writes) and the after-restart run
    assert len(planned_logs) == 2 and all("-k not deselected" in a for a in planned_argv)
    assert "[+ the before-restart writes]" in plan.stdout
    assert "restart: stop the MLflow server" in plan.stdout

    first = _harness("run", *ARGS, "--reports-dir", str(reports), *PYTEST_ARGS, env=env)
    assert first.returncode == 0, first.stderr
    cell = reports / "local" / "2.22-stable"
    ran = sorted(str(p) for p in cell.glob("pytest*.log"))
    assert ran == sorted(planned_logs)  # the plan named every pytest run, and only those
    phases = [p["name"] for p in json.loads((cell / "cell.json").read_text())["phases"]]
    assert "restart" in phases
    assert 'name="test_seed"' in (cell / "junit.xml").read_text()  # written in the main run
    assert 'name="test_verify"' in (cell / "junit-after-restart.xml").read_text()
    first_id = json.loads((reports / "run.json").read_text())["run_id"]

    second = _harness("run", *ARGS, "--reports-dir", str(reports), *PYTEST_ARGS,
                      env={**env, "FAIL_PLAIN": "1"})
    assert second.returncode == 1, second.stderr
    second_id = json.loads((reports / "run.json").read_text())["run_id"]
    assert second_id != first_id

    # reports/ shows the second run only; the first is whole under runs/<its id>/
    archived = reports / "runs" / first_id
    assert json.loads((archived / "local" / "2.22-stable" / "cell.json").read_text())[
        "status"] == "passed"
    assert (archived / "matrix.md").is_file() and (archived / "run.json").is_file()
    page = json.loads((reports / "matrix.json").read_text())
    assert page["run_ids"] == [second_id]
    assert [c["status"] for c in page["cells"]] == ["failed"]
    assert [r["run_id"] for r in page["earlier_runs"]] == [first_id]
    markdown = (reports / "matrix.md").read_text()
    assert f"Earlier runs (not on this page): {first_id} (finished)" in markdown
    assert first_id in (reports / "runs" / "index.md").read_text()
    assert first_id in (reports / "matrix.html").read_text()
    current = json.loads((cell / "cell.json").read_text())
    assert current["run_id"] == second_id

    # the closing summary names the red cell, why, and the log to open
    summary = second.stderr[second.stderr.index("summary of run"):]
    assert "1 failed" in summary
    failed = re.search(r"FAILED\s+local · 2\.22/stable: (?:partial: [^;]+; )?scenarios persistence "
                       r"\[\+before-restart\]: (.+)", summary)
    assert failed and "1 failed" in failed.group(1)
    log = re.search(r"log: (\S+)", summary).group(1)
    assert (ROOT / log).resolve() == (cell / "pytest.log").resolve()
    assert "asked to fail" in (cell / "pytest.log").read_text()


def test_a_running_run_is_never_moved(tmp_path):
    reports = tmp_path / "reports"
    start_run(reports, "run-a")
    with pytest.raises(ConfigError) as info:  # the same pid counts as gone only for itself
        body = json.loads((reports / "run.json").read_text())
        body["pid"] = os.getppid()
        (reports / "run.json").write_text(json.dumps(body))
        start_run(reports, "run-b")
    assert "still writing" in info.value.message
    assert "--reports-dir" in info.value.hint


def test_only_what_the_harness_wrote_moves(tmp_path):
    reports = tmp_path / "reports"
    (reports / "local" / "2.22-stable" / "allure-results").mkdir(parents=True)
    (reports / "notes").mkdir()
    (reports / "notes" / "mine.txt").write_text("keep me here")
    (reports / "README.md").write_text("readme")
    (reports / "matrix.md").write_text("old page")
    (reports / "state").mkdir()
    archive = start_run(reports, "run-b")
    assert archive is not None and archive.parent == reports / "runs"
    assert (archive / "local" / "2.22-stable" / "allure-results").is_dir()
    assert (archive / "matrix.md").read_text() == "old page"
    assert (reports / "notes" / "mine.txt").read_text() == "keep me here"
    assert (reports / "README.md").is_file() and (reports / "state").is_dir()
    finish_run(reports, "run-b", interrupted=False, cells=[{"status": "passed"}])
    start_run(reports, "run-c")
    runs = earlier_runs(reports)
    assert runs[0]["run_id"] == "run-b"
    assert runs[0]["status"] == "finished" and runs[0]["cells"] == {"passed": 1}
