"""`mlflow-matrix list --json` and the nightly job matrices made from it (harness/commands/ci_matrix.py)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands.ci_matrix import (
    GITHUB_MAX_JOB_MINUTES,
    SelectionError,
    cluster_timeouts,
    github_output,
    job_timeouts,
    list_data,
    select,
)
from harness.config.matrix import Platform

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_list_json_describes_every_platform_of_matrix_yaml(matrix):
    proc = _cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [p["name"] for p in data["platforms"]] == list(matrix.platforms)
    by_name = {p["name"]: p for p in data["platforms"]}
    assert by_name["local-mysql"]["ci"]["apt"] == ["mariadb-server"]
    assert by_name["local"]["ci"] == {**by_name["local"]["ci"], "runs": True, "cloud": None,
                                      "snaps": [], "apt": []}
    # the snaps and their channels come from matrix.yaml, Juju 3.6 with every Juju platform
    assert by_name["microk8s-1.32"]["ci"]["snaps"] == ["microk8s:1.32/stable:classic",
                                                      "juju:3.6/stable"]
    assert by_name["canonical-k8s-1.32"]["ci"]["snaps"][0] == "k8s:1.32-classic/stable:classic"
    assert not by_name["external"]["ci"]["runs"] and "--tracking-uri" in by_name["external"]["ci"]["reason"]
    for platform in data["platforms"]:
        ci = platform["ci"]
        assert 0 < ci["teardown_timeout_minutes"] < ci["timeout_minutes"] <= GITHUB_MAX_JOB_MINUTES
    assert [c["name"] for c in data["channels"]] == list(matrix.channels)
    assert {u["label"] for u in data["upgrades"]} == {f"{u.source}:{u.target}" for u in matrix.upgrades}
    assert data["defaults"]["channels"] == list(matrix.defaults.channels)


def test_the_job_timeout_adds_up_the_harness_deadlines(matrix):
    t = matrix.timeouts
    local = list_data(matrix)["platforms"][0]
    assert local["name"] == "local"
    b = local["budget_s"]
    assert b["cell"] == t.server_start + t.scenarios + t.teardown  # local starts a server
    assert b["upgrade_cell"] == b["cell"] + t.server_start
    # 1 cell: env build + the cell; setup, teardown and uploads around it
    one = job_timeouts(b, 1, 0)
    assert one["run_timeout_minutes"] == -(-(t.env_build + b["cell"]) // 60)
    assert one["timeout_minutes"] == (15 + one["run_timeout_minutes"]
                                      + one["teardown_timeout_minutes"] + 5)
    # parallel lanes: 4 equal cells on 2 lanes take two cells' time, not four
    assert job_timeouts({**b, "parallel": 2}, 4, 0)["run_timeout_minutes"] == \
        -(-(t.env_build + 2 * b["cell"]) // 60)
    # `parallel: 0` (sized on the runner) budgets one lane: a timeout must not assume cores
    assert job_timeouts({**b, "parallel": max(1, matrix.defaults.parallel)}, 4, 0)[
        "run_timeout_minutes"] >= -(-(t.env_build + 2 * b["cell"]) // 60)


def test_cloud_timeouts_come_from_the_platform_and_are_capped_at_githubs_limit(cloud_matrix):
    eks = cloud_matrix.platforms["eks-1.32"]
    assert cluster_timeouts(eks) == (2400, 2700)
    data = {p["name"]: p for p in list_data(cloud_matrix)["platforms"]}
    ci = data["eks-1.32"]["ci"]
    assert ci["cloud"] == "aws" and ci["region"] == "eu-west-1" and ci["snaps"] == ["juju:3.6/stable"]
    # the teardown step keeps the cluster's delete time whatever happens to the run step
    assert ci["teardown_timeout_minutes"] == 45 + 5
    assert ci["timeout_minutes"] <= GITHUB_MAX_JOB_MINUTES
    slow = dataclasses.replace(eks, settings=dataclasses.replace(eks.settings, up_timeout=20000))
    capped = job_timeouts(dataclasses.asdict(_budget(cloud_matrix, slow)), 5, 2)
    assert capped["capped"] and capped["timeout_minutes"] == GITHUB_MAX_JOB_MINUTES
    assert capped["teardown_timeout_minutes"] == 50
    assert data["aks-1.32"]["ci"]["cloud"] == "azure" and data["gke-1.32"]["ci"]["cloud"] == "gcp"


def _budget(matrix, platform: Platform):
    from harness.commands.ci_matrix import budget

    return budget(matrix, platform)


def test_the_scheduled_run_gives_every_platform_a_job_or_a_reason(cloud_matrix):
    result = select(list_data(cloud_matrix))
    jobs = {j["platform"]: j for j in result["jobs"]}
    clouds = {j["platform"]: j for j in result["cloud_jobs"]}
    skipped = {s["platform"]: s["reason"] for s in result["skipped"]}
    assert set(jobs) | set(clouds) | set(skipped) == set(cloud_matrix.platforms)
    assert not set(jobs) & set(clouds) and not (set(jobs) | set(clouds)) & set(skipped)
    assert set(clouds) == {"eks-1.32", "aks-1.32", "gke-1.32"}
    assert {"local", "local-mysql", "local-proxied", "microk8s-1.32",
            "canonical-k8s-1.32"} <= set(jobs)
    assert set(skipped) == {"external", "existing"} and all(skipped.values())
    # the README command; local platforms add the guides' backup → destroy → restore cells
    assert {n: j["args"] for n, j in jobs.items() if j["kind"] == "local"} == {
        "local": "--guides", "local-mysql": "--guides", "local-proxied": "--guides"}
    assert all(j["args"] == "" for j in [*jobs.values(), *clouds.values()] if j["kind"] != "local")
    assert all(j["cloud"] == "" for j in jobs.values())
    assert clouds["eks-1.32"]["credential_seconds"] == clouds["eks-1.32"]["timeout_minutes"] * 60
    assert [(c["kind"], c["cloud"], c["platforms"]) for c in result["clouds"]] == [
        ("eks", "aws", "eks-1.32"), ("aks", "azure", "aks-1.32"), ("gke", "gcp", "gke-1.32")]


def test_dispatch_inputs_follow_the_cli(matrix):
    data = list_data(matrix)
    one = select(data, platforms="local-mysql", channels="2.22/stable")
    assert [j["platform"] for j in one["jobs"]] == ["local-mysql"]
    assert one["jobs"][0]["args"] == "--channel 2.22/stable" and one["jobs"][0]["cells"] == 1
    both = select(data, platforms="local, local-proxied", upgrades="2.15/stable:2.22/stable",
                  scenarios="upgrade")
    assert [j["args"] for j in both["jobs"]] == [
        "--upgrade 2.15/stable:2.22/stable --scenario upgrade"] * 2
    assert both["jobs"][0]["cells"] == 1
    assert select(data, channels="latest/edge", upgrades="none")["jobs"][0]["cells"] == 1
    # only the upgrade suite: channel cells have nothing to run, upgrade cells do
    # (+ the 3 backup → destroy → restore paths of the guides, which the scheduled run adds)
    assert select(data, platforms="local", scenarios="upgrade")["jobs"][0]["cells"] == 2 + 3


@pytest.mark.parametrize(("inputs", "message"), [
    ({"platforms": "eks"}, "unknown platform 'eks'"),
    ({"channels": "2.99/stable"}, "unknown channel '2.99/stable'"),
    ({"upgrades": "2.22/stable:2.15/stable"}, "unknown upgrade path"),
    ({"platforms": "local; rm -rf /"}, "is not a name"),
    ({"platforms": "external"}, "no platform of the selection can run in CI"),
    ({"upgrades": "none"}, "selects no cell"),
])
def test_bad_dispatch_inputs_are_refused_with_the_names_matrix_yaml_has(matrix, inputs, message):
    with pytest.raises(SelectionError, match=message):
        select(list_data(matrix), **inputs)


def test_the_generator_writes_github_outputs_and_errors_as_annotations(matrix, tmp_path):
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(list_data(matrix)))
    out = tmp_path / "github_output"
    ok = subprocess.run([sys.executable, "-m", "harness.commands.ci_matrix", "--list", str(listing),
                         "--platforms", "", "--github-output", str(out)],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0, ok.stderr
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert set(lines) == {"jobs", "cloud_jobs", "clouds", "skipped"}
    assert [j["platform"] for j in json.loads(lines["jobs"])][:3] == ["local", "local-mysql",
                                                                     "local-proxied"]
    assert "::notice title=not run: external::" in ok.stderr
    bad = subprocess.run([sys.executable, "-m", "harness.commands.ci_matrix", "--list", str(listing),
                          "--platforms", "nope"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("::error title=nightly selection::unknown platform 'nope'")
    assert github_output({"a": [1]}) == "a=[1]\n"


def test_run_id_is_checked_and_never_reused(tmp_path):
    reports = tmp_path / "reports"
    bad = _cli("run", "--platform", "local", "--run-id", "Bad_ID", "--reports-dir", str(reports))
    assert bad.returncode == 2 and "--run-id 'Bad_ID' is not a valid run id" in bad.stderr
    (reports / "state").mkdir(parents=True)
    (reports / "state" / "night-1.json").write_text("{}")
    again = _cli("run", "--platform", "local", "--run-id", "night-1", "--reports-dir", str(reports))
    assert again.returncode == 2 and "run id night-1 was used before" in again.stderr
    assert "mlflow-matrix down --run-id night-1" in again.stderr


def test_the_run_id_given_names_the_runs_state_file(tmp_path):
    """An external platform whose server is unreachable fails at once, after the run recorded
    its state under the id CI chose (what the always-run teardown then releases)."""
    reports = tmp_path / "reports"
    proc = _cli("run", "--platform", "external", "--tracking-uri", "http://127.0.0.1:9",
                "--run-id", "ci-night-7", "--reports-dir", str(reports))
    assert proc.returncode in (2, 3), proc.stderr
    assert (reports / "state" / "ci-night-7.json").is_file()
    state = json.loads((reports / "state" / "ci-night-7.json").read_text())
    assert state["run_id"] == "ci-night-7"
    down = _cli("down", "--run-id", "ci-night-7", "--reports-dir", str(reports))
    assert down.returncode == 0, down.stderr
