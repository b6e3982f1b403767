"""`mlflow-matrix report --merge DIR… [--previous DIR]` over real cell results (the fixture tree
split the way separate CI jobs leave it: one reports directory per platform)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reporting.allure_report import HISTORY_FILE, REPORT_DIR
from harness.reporting.merge import MARKER, merge_and_build, merge_reports
from harness.system.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
needs_npm = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                               reason="the Allure 3 CLI needs Node.js and npm (.ci/run installs them)")


def _split(reports: Path, into: Path) -> list[Path]:
    """One reports directory per platform, as each nightly job uploads it."""
    jobs = []
    for platform in sorted(p for p in reports.iterdir() if p.is_dir()):
        job = into / f"reports-{platform.name}"
        shutil.copytree(platform, job / platform.name)
        jobs.append(job)
    return jobs


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _columns_of_fixture(reports: Path) -> dict[str, str]:
    """What one reports directory holding every cell shows (the page before any merge)."""
    from harness.reporting.matrix_page import write_matrix_page

    whole = reports.parent / "whole"
    shutil.copytree(reports, whole)
    write_matrix_page(whole)
    return _columns(whole)


def _columns(out: Path) -> dict[str, str]:
    model = json.loads((out / "matrix.json").read_text(encoding="utf-8"))
    return {c["column"]: c["display_status"] for c in model["cells"]}


def test_every_cell_of_every_job_lands_on_one_page(reports, tmp_path):
    from harness.reporting.matrix_page import write_matrix_page

    expected = _columns_of_fixture(reports)
    jobs = _split(reports, tmp_path / "artifacts")
    (jobs[0] / "runs" / "an-earlier-run" / "local").mkdir(parents=True)
    (jobs[0] / "runs" / "20261126-145445-28b955.json").write_text('{"run_id": "x"}')
    before = {job: _digest(job) for job in jobs}
    out = tmp_path / "site"
    merged = merge_reports(out, jobs, say=lambda text: None)
    assert len(merged) == len(expected) == 7
    write_matrix_page(out)
    assert _columns(out) == expected
    assert {job: _digest(job) for job in jobs} == before, "inputs must never change"
    assert [p.name for p in (out / "runs").iterdir()] == ["20261126-145445-28b955.json"]
    marker = json.loads((out / MARKER).read_text())
    assert marker["inputs"] == [str(j.resolve()) for j in jobs]
    assert {c["platform"] for c in marker["cells"]} == {"local", "local-bad-s3", "local-mysql"}


def test_a_cell_in_two_inputs_keeps_the_one_that_finished_last(reports, tmp_path):
    old, new = tmp_path / "attempt-1", tmp_path / "attempt-2"
    shutil.copytree(reports / "local", old / "local")
    shutil.copytree(reports / "local" / "2.15-stable", new / "local" / "2.15-stable")
    cell = new / "local" / "2.15-stable" / "cell.json"
    body = json.loads(cell.read_text())
    body["started"] += 3600
    body["status"] = "failed"
    cell.write_text(json.dumps(body))
    said: list[str] = []
    merge_reports(tmp_path / "out", [new, old], say=said.append)
    merged = json.loads((tmp_path / "out/local/2.15-stable/cell.json").read_text())
    assert merged["status"] == "failed" and merged["started"] == body["started"]
    assert any("local/2.15-stable is in" in line and "finished last" in line for line in said)
    assert sorted(p.name for p in (tmp_path / "out/local").iterdir()) == [
        "2.15-stable", "2.22-stable", "latest-edge"]


def test_a_second_merge_replaces_the_first(reports, tmp_path):
    jobs = _split(reports, tmp_path / "artifacts")
    out = tmp_path / "site"
    merge_reports(out, jobs, say=lambda text: None)
    merge_reports(out, jobs[:1], say=lambda text: None)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["local"] == sorted(
        {p.parent.parent.name for p in out.glob("*/*/cell.json")})


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "no such folder"),
    ("empty", "no cell results"),
    ("same", "is also the output"),
    ("run-output", "holds a run's own results"),
])
def test_bad_merges_are_refused_before_anything_is_written(reports, tmp_path, setup, message):
    jobs = _split(reports, tmp_path / "artifacts")
    out = tmp_path / "site"
    if setup == "missing":
        jobs.append(tmp_path / "nope")
    elif setup == "empty":
        (tmp_path / "empty").mkdir()
        jobs.append(tmp_path / "empty")
    elif setup == "same":
        out = jobs[0]
    else:
        shutil.copytree(reports / "local", out / "local")
    before = _digest(out) if out.exists() else {}
    with pytest.raises(ConfigError, match=message):
        merge_reports(out, jobs, say=lambda text: None)
    assert (_digest(out) if out.exists() else {}) == before


def test_the_cli_says_what_is_wrong_in_one_screen(reports, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--merge",
                           str(tmp_path / "nope"), "--reports-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --merge ") and "no such folder" in proc.stderr
    assert "fix: " in proc.stderr and "Traceback" not in proc.stderr


@needs_npm
def test_one_allure_report_with_history_across_nights(reports, tmp_path):
    """Night 1: three jobs merged. Night 2: the same jobs, the previous site given: Allure keeps
    one history entry per night, its trend has both, and the page calls out no regression."""
    jobs = _split(reports, tmp_path / "artifacts")
    night1, night2 = tmp_path / "night1", tmp_path / "night2"
    out1 = merge_and_build(night1, jobs, progress=lambda text: None)
    assert out1.error is None, out1.error
    assert (night1 / REPORT_DIR / "single-file" / "index.html").is_file()
    envs = json.loads((night1 / REPORT_DIR / "awesome/widgets/environments.json").read_text())
    assert {e["name"] for e in envs} >= {"local", "local-bad-s3", "local-mysql"}
    # the next night's results are new results (new uuids), as a new run writes them
    for job in jobs:
        for path in job.rglob("*-result.json"):
            body = json.loads(path.read_text())
            body["uuid"] = hashlib.md5(("night2" + body["uuid"]).encode()).hexdigest()
            path.write_text(json.dumps(body))
        for path in job.rglob("cell.json"):  # and a new run id, as a new run has
            body = json.loads(path.read_text())
            body["run_id"] = "night2-" + str(body.get("run_id"))
            path.write_text(json.dumps(body))
    said: list[str] = []
    out2 = merge_and_build(night2, jobs, previous=night1, progress=said.append)
    assert out2.error is None, out2.error
    assert "merge" in out2.timings and out2.timings["total"] > 0
    history = [ln for ln in (night2 / HISTORY_FILE).read_text().splitlines() if ln.strip()]
    assert len(history) == 2
    charts = json.loads((night2 / REPORT_DIR / "awesome/widgets/charts.json").read_text())
    dynamics = next(c for c in charts["general"].values() if c["type"] == "statusDynamics")
    assert len(dynamics["data"]) == 2
    assert "regressions since the previous report: none" in said
    assert 'id="regressions" data-regressions="0"' in (night2 / "matrix.html").read_text()


def test_a_report_is_never_compared_with_itself(reports, tmp_path):
    jobs = _split(reports, tmp_path / "artifacts")
    night = tmp_path / "night"
    assert merge_and_build(night, jobs, progress=lambda text: None).error is None
    for previous in (night, night.parent / "night"):  # the output itself
        with pytest.raises(ConfigError, match="is the report being built"):
            merge_and_build(night, jobs, previous=previous, progress=lambda text: None)
    copy = tmp_path / "copy"
    shutil.copytree(night, copy)  # a copy of tonight's report: the same runs
    with pytest.raises(ConfigError, match="holds the same run"):
        merge_and_build(tmp_path / "again", jobs, previous=copy, progress=lambda text: None)
