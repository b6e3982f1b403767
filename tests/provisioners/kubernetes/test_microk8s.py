"""provisioners.kubernetes.microk8s with fake `snap`, `microk8s` and `juju` on PATH, alone and under the
runner (failing up, unit in error, Ctrl-C, and — opt-in — scenarios against a real MLflow)."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fakes.cluster import FakeCluster, check_transcript
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    BUNDLES,
    FAST,
    RUN_ID,
    cluster,
    context_for,
    fake_api,
    local_channel,
    matrix_with,
    stub_mlflow,
)

from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions
from harness.system.errors import InfrastructureError
from provisioners.kubernetes.microk8s import MicroK8sProvisioner, platform_marker

ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- plan


def test_plan_is_the_exact_commands_and_runs_nothing(context_for, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    provisioner = MicroK8sProvisioner(context_for("microk8s-1.32"))
    lines = provisioner.plan()
    assert lines[:2] == [
        "preflight: /proc/sys/fs/inotify/max_user_instances ≥ 1280, max_user_watches ≥ 655360 "
        "(else: the sysctl remedy, exit 2)",
        "preflight: ≥ 20 GiB free under /var/snap (else exit 2)"]
    lines = lines[2:]
    assert lines[:8] == [
        "sudo snap list microk8s   (installed already: reused only if it tracks 1.32/stable, "
        "and left installed by down)",
        "sudo snap install microk8s --classic --channel=1.32/stable   (only if absent; recorded "
        "in the run state first)",
        "sudo microk8s status --wait-ready --timeout 600",
        "sudo microk8s enable dns",
        "sudo microk8s enable hostpath-storage",
        "sudo microk8s enable rbac",
        "sudo microk8s enable metallb:10.64.140.43-10.64.140.49",
        "sudo microk8s kubectl wait --for=condition=Ready node --all --timeout=600s",
    ]
    assert lines[8].startswith("sudo microk8s config > ")
    assert any(line.startswith(f"down: juju destroy-controller mm-{RUN_ID}-microk8s-1-32")
               for line in lines)
    assert "down: sudo snap remove microk8s --purge" in "\n".join(lines)


def test_cli_plan_prints_the_whole_sequence_in_order(capsys):
    from harness.cli import main

    assert main(["plan", "--platform", "microk8s-1.32", "--channel", "2.22/stable"]) == 0
    out = capsys.readouterr().out
    # in the order a run takes them: the scenarios run before the cell's diagnostics and teardown
    steps = ["snap install microk8s", "microk8s enable metallb", "microk8s config",
             "juju add-k8s", "juju bootstrap", "juju add-model", "juju deploy", "wait: juju status",
             "juju show-unit", "GET <tracking-uri>/version", "-m pytest ",
             "scenarios/test_tracking.py", "diagnostics (on a failed phase", "teardown: juju "
             "destroy-model", "teardown: platform down"]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions[:8] == sorted(positions[:8])


# ---------------------------------------------------------------- up / down


def test_up_installs_and_down_removes_what_up_installed(cluster, context_for):
    fake = cluster()
    ctx = context_for("microk8s-1.32")
    provisioner = MicroK8sProvisioner(ctx)
    substrate = provisioner.up()
    kubeconfig = substrate.kubeconfig
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "client-key-data" in kubeconfig.read_text()
    assert substrate.cluster_goes_away is True
    assert [(r.type, r.data["name"]) for r in ctx.state.resources()] == [("snap", "microk8s")]
    assert json.loads(platform_marker("microk8s-1.32").read_text())["installed"] is True
    provisioner.down()
    provisioner.down()  # idempotent
    assert "microk8s" not in fake.world()["snaps"]
    assert ctx.state.resources() == [] and not kubeconfig.exists()
    assert not platform_marker("microk8s-1.32").exists()
    check_transcript("microk8s-up-down", fake.transcript())


def test_an_installed_microk8s_is_reused_and_only_what_up_enabled_is_disabled(cluster,
                                                                            context_for):
    fake = cluster({"preinstalled_snaps": {"microk8s": "1.32/stable"},
                    "microk8s": {"enabled": ["dns", "hostpath-storage"]}})
    ctx = context_for("microk8s-1.32")
    provisioner = MicroK8sProvisioner(ctx)
    assert provisioner.up().cluster_goes_away is False
    assert [(r.type, r.data["name"]) for r in ctx.state.resources()] == \
        [("microk8s-feature", "rbac"), ("microk8s-feature", "metallb")]
    provisioner.down()
    assert "microk8s" in fake.world()["snaps"]
    assert set(fake.world()["addons"]) == {"dns", "hostpath-storage"}
    check_transcript("microk8s-reuse-installed", fake.transcript())


def test_an_installed_microk8s_on_another_channel_is_refused(cluster, context_for):
    cluster({"preinstalled_snaps": {"microk8s": "1.28/stable"}})
    with pytest.raises(InfrastructureError) as caught:
        MicroK8sProvisioner(context_for("microk8s-1.32")).up()
    assert "installed from 1.28/stable, this platform wants 1.32/stable" in caught.value.message
    assert "snap refresh microk8s --channel=1.32/stable" in caught.value.hint


def test_a_later_down_finds_what_an_earlier_up_installed(cluster, context_for, tmp_path):
    fake = cluster()
    MicroK8sProvisioner(context_for("microk8s-1.32")).up()   # `mlflow-matrix up`, then exit
    MicroK8sProvisioner(context_for("microk8s-1.32")).down()  # `mlflow-matrix down --platform`
    assert "microk8s" not in fake.world()["snaps"]


def test_janitor_releases_recorded_resources(cluster):
    fake = cluster({"preinstalled_snaps": {"microk8s": "1.32/stable"},
                    "microk8s": {"enabled": ["metallb"]}})
    MicroK8sProvisioner.release_recorded({"type": "microk8s-feature", "kind": "microk8s",
                                          "name": "metallb"})
    assert "metallb" not in fake.world()["addons"]
    MicroK8sProvisioner.release_recorded({"type": "snap", "kind": "microk8s",
                                          "name": "microk8s"})
    MicroK8sProvisioner.release_recorded({"type": "juju-model", "kind": "microk8s",
                                          "name": "mm-gone", "controller": "gone"})
    assert "microk8s" not in fake.world()["snaps"]
    assert fake.lines()[-1] == ("juju destroy-model gone:mm-gone --no-prompt --destroy-storage "
                                "--force --no-wait --timeout 120s")


# ---------------------------------------------------------------- under the runner


def ready_env_cache(root: Path, matrix) -> Path:
    """An MLflow env cache in which the channel's env counts as built (no download)."""
    from harness.run.envs import env_path, env_spec

    channel = matrix.channels["2.22/stable"]
    pins = matrix.requirements_for(channel)
    previous = os.environ.get("MLFLOW_MATRIX_CACHE")
    os.environ["MLFLOW_MATRIX_CACHE"] = str(root)
    try:
        path = env_path(channel.mlflow_version, pins)
    finally:  # only for env_path(): this process's environment is left as it was
        if previous is None:
            del os.environ["MLFLOW_MATRIX_CACHE"]
        else:
            os.environ["MLFLOW_MATRIX_CACHE"] = previous
    (path / "bin").mkdir(parents=True, exist_ok=True)
    (path / ".mlflow-matrix-ready").write_text(json.dumps(env_spec(channel.mlflow_version, pins),
                                                          sort_keys=True))
    return root


def run_cell(tmp_path: Path, monkeypatch, **settings) -> tuple[int, Path]:
    matrix = matrix_with(**{"microk8s-1.32": {**FAST, **settings}})
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path / "cache"))
    ready_env_cache(tmp_path / "cache", matrix)
    cells = expand_cells(matrix, Selection(platforms=("microk8s-1.32",), channels=("2.22/stable",),
                                           scenarios=("tracking",)))
    with (tmp_path / "progress.log").open("w") as log:
        runner = Runner(matrix, cells, RunOptions(reports_dir=tmp_path / "reports",
                                                  provisioner_options={"deploy_timeout": 30}),
                        progress=Progress(log))
        code = runner.run()
    return code, tmp_path / "reports" / "microk8s-1.32" / "2.22-stable"


def test_a_failing_up_still_collects_and_runs_down(cluster, tmp_path, monkeypatch):
    fake = cluster({"microk8s": {"ready": False}})
    code, cell_dir = run_cell(tmp_path, monkeypatch)
    assert code == 3
    summary = json.loads((cell_dir / "cell.json").read_text())
    phases = {p["name"]: p for p in summary["phases"]}
    assert phases["provision"]["status"] == "broken"
    assert "waiting for MicroK8s to be ready failed" in phases["provision"]["message"]
    platform_diag = cell_dir / "diagnostics" / "platform"
    assert "microk8s is not running" in (platform_diag / "microk8s-status.txt").read_text()
    assert fake.lines()[-1] == "snap remove microk8s --purge"
    assert "microk8s" not in fake.world()["snaps"]
    state = json.loads(next((tmp_path / "reports" / "state").glob("*.json")).read_text())
    assert state["resources"] == []
    check_transcript("runner-failing-up", fake.transcript())


def test_a_unit_in_error_fails_the_deploy_with_its_message_and_tears_down(cluster, tmp_path,
                                                                          monkeypatch):
    fake = cluster({"juju": {"status": ["status-deploying.json", "status-error.json"]}})
    code, cell_dir = run_cell(tmp_path, monkeypatch, poll_interval=0.5, error_grace=0)
    assert code == 3
    summary = json.loads((cell_dir / "cell.json").read_text())
    deploy = next(p for p in summary["phases"] if p["name"] == "deploy")
    assert deploy["status"] == "broken"
    assert deploy["message"] == 'error: unit mlflow-server/0 is in error: hook failed: "install"'
    assert deploy["duration_s"] < 3, "the wait ended soon after the error"
    assert (cell_dir / "diagnostics" / "juju" / "status-log" / "mlflow-server-0.txt").exists()
    assert fake.ran("juju destroy-model") and fake.lines()[-1] == "snap remove microk8s --purge"
    results = [json.loads(p.read_text()) for p in (cell_dir / "allure-results").glob(
        "*-result.json")]
    broken = next(r for r in results if r["fullName"] == "lifecycle.deploy")
    assert "juju-unit  error        hook failed" in broken["statusDetails"]["message"]
    check_transcript("runner-unit-error", fake.transcript(collapse=True))


def _test_matrix_file(tmp_path: Path, **platform_settings) -> Path:
    raw = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    for name, body in raw["channels"].items():
        body["bundle"] = str(BUNDLES / f"{name.replace('/', '-')}.yaml")
    # this machine's inotify limits and disk are not what the test is about
    raw["platforms"]["microk8s-1.32"].update(min_inotify_instances=0, min_inotify_watches=0,
                                             min_free_disk_gb=0)
    raw["platforms"]["microk8s-1.32"].update(platform_settings)
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_ctrl_c_during_the_wait_tears_down_model_controller_and_snap(tmp_path, fake_api):
    fake = FakeCluster(tmp_path / "fake", {"juju": {"status": ["status-deploying.json"]}},
                       api=fake_api)
    matrix_file = _test_matrix_file(tmp_path, poll_interval=0.2)
    cache = ready_env_cache(tmp_path / "cache", load_matrix(matrix_file))
    env = fake.env()
    env["MLFLOW_MATRIX_CACHE"] = str(cache)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", "microk8s-1.32", "--channel",
         "2.22/stable", "--scenario", "tracking", "--matrix", str(matrix_file),
         "--reports-dir", str(tmp_path / "reports")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("juju status") and "--format json" in line
                      for line in fake.lines("juju")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    lines = fake.lines()
    assert any(line.startswith("juju destroy-model") for line in lines), lines
    assert lines[-1] == "snap remove microk8s --purge"
    assert not fake.world()["models"] and not fake.world()["controllers"]
    assert "microk8s" not in fake.world()["snaps"]
    state = json.loads(next((tmp_path / "reports" / "state").glob("*.json")).read_text())
    assert state["resources"] == [] and state["status"] == "interrupted"
    check_transcript("runner-ctrl-c-during-wait", fake.transcript(collapse=True))


# ---------------------------------------------------------------- opt-in: a real MLflow

E2E = os.environ.get("MLFLOW_MATRIX_E2E") == "1"


@pytest.mark.skipif(not E2E, reason="starts a real MLflow 2.22 (30-90 s); set MLFLOW_MATRIX_E2E=1")
def test_scenarios_run_against_a_real_mlflow_behind_the_fake_cluster(tmp_path, monkeypatch):
    """The fake cluster's Services point at a real MLflow (SQL store) + S3 on loopback: scenario
    tests run through the endpoint and the MinIO keys JujuDeployment discovered."""
    from fakes.kubeapi import FakeKubeAPI

    from harness.run.envs import cache_root, ensure_env
    from harness.system.state import RunState
    from provisioners.api import RunContext
    from provisioners.local import LocalSettings, MlflowServer, SeaweedS3, SqliteStore

    matrix = matrix_with(**{"microk8s-1.32": FAST})
    channel = matrix.channels["2.22/stable"]
    real_cache = cache_root()
    env = ensure_env(channel.mlflow_version, matrix.requirements_for(channel), timeout=900)
    root = tmp_path / "mlflow"
    state = RunState(root / "state.json", "e2e")
    ctx = RunContext(run_id="e2e", platform=matrix.platforms["local"], work_dir=root,
                     state=state, env_for=lambda c: env, options={})
    s3 = SeaweedS3(root / "s3", ctx, 120)
    server = None
    api = None
    try:
        s3.start()
        s3.create_bucket("mlflow")
        store = SqliteStore(root / "db")
        store.start()
        server = MlflowServer(env, root / "server", ctx, LocalSettings(), s3, store.uri, 300)
        server.start()
        api = FakeKubeAPI(backends={"mlflow-server": server.port, "mlflow-minio": s3.port}).start()
        fake = FakeCluster(tmp_path / "fake", {"values": {"ACCESS_KEY": s3.access_key,
                                                          "SECRET_KEY": s3.secret_key}}, api=api)
        fake.activate(monkeypatch)
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / "envs").symlink_to(real_cache / "envs")
        monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(cache))
        suites = ("tracking", "artifacts") if "artifacts" in matrix.suites else ("tracking",)
        selected = ("create_experiment_with_tags_then_get_by_name_and_id or rename_experiment "
                    "or artifact_location_is_in_the_deployment_bucket "
                    "or log_artifact_at_root_and_under_a_path")
        cells = expand_cells(matrix, Selection(platforms=("microk8s-1.32",),
                                               channels=("2.22/stable",), scenarios=suites))
        with (tmp_path / "progress.log").open("w") as log:
            code = Runner(matrix, cells, RunOptions(reports_dir=tmp_path / "reports",
                                                    pytest_args=("-k", selected)),
                          progress=Progress(log)).run()
        cell_dir = tmp_path / "reports" / "microk8s-1.32" / "2.22-stable"
        summary = json.loads((cell_dir / "cell.json").read_text())
        assert code == 0, (tmp_path / "progress.log").read_text()
        assert summary["counts"].get("passed", 0) >= 2 and summary["status"] == "passed"
        assert summary["versions"]["mlflow_server"] == "2.22.0"
        assert s3.secret_key not in "".join(p.read_text(errors="replace")
                                            for p in cell_dir.rglob("*") if p.is_file())
        assert fake.lines()[-1] == "snap remove microk8s --purge"
    finally:
        if server:
            server.stop()
        s3.stop()
        if api:
            api.stop()
