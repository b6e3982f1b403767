"""`plan` prints what `run` does: the runner's own step list, deadlines and command lines."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.cli import main
from harness.config.matrix import DEFAULT_MATRIX


def _plan(capsys, *argv: str) -> str:
    assert main(["plan", *argv]) == 0
    return capsys.readouterr().out


def _cell_block(text: str, cell: str) -> str:
    start = text.index(f"  cell {cell}:")
    end = text.find("\n  cell ", start + 1)
    return text[start:end if end > 0 else None]


def test_juju_upgrade_cell_shows_juju_refresh_and_no_local_steps_or_restart(capsys):
    out = _plan(capsys, "--platform", "microk8s-1.32", "--upgrade", "2.15/stable:2.22/stable",
                "--scenario", "upgrade")
    block = _cell_block(out, "upgrade-2.15-stable-to-2.22-stable")
    assert "juju refresh --model" in block
    assert "stop the server" not in block and "start the new server" not in block
    assert "restart" not in block
    # the guide's steps, in its order, each as the command it runs
    assert "procedure: Upgrade from 2.15 to 2.22 (https://documentation.ubuntu.com/" in block
    assert block.index("[before-upgrade]") < block.index("[upgrade/refresh-minio]") \
        < block.index("mlflow-minio --channel ckf-1.10/stable") \
        < block.index("[data-check@refresh-minio]") < block.index("[upgrade/refresh-server]") \
        < block.index("[remedy/refresh-server]") < block.index("[after-upgrade]") \
        < block.index("[old-client]")


def test_restart_only_where_it_runs(capsys):
    out = _plan(capsys, "--platform", "microk8s-1.32", "--channel", "2.22/stable",
                "--scenario", "persistence")
    assert "restart: delete pod mlflow-server-0" in out
    out = _plan(capsys, "--platform", "microk8s-1.32", "--channel", "2.22/stable",
                "--scenario", "tracking")
    assert "restart" not in _cell_block(out, "2.22-stable")


def test_external_cell_shows_detection_not_a_fake_version(capsys):
    out = _plan(capsys, "--platform", "external", "--tracking-uri", "http://127.0.0.1:5000")
    assert "mlflow==detect" not in out and "MLflow detect" not in out
    assert "GET /version" in out and "<detected>" in out
    block = _cell_block(out, "detected")
    assert "restart:" not in block  # external cannot restart a server: the runner says so
    assert "restart SKIPPED: external cannot restart the MLflow server" in block


def test_pytest_args_reports_dir_and_deadlines_from_the_matrix(tmp_path, capsys):
    data = yaml.safe_load(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    data["timeouts"]["deploy"] = 777
    data["timeouts"]["teardown"] = 333
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    reports = tmp_path / "my-reports"
    out = _plan(capsys, "--matrix", str(matrix), "--platform", "microk8s-1.32", "--channel",
                "2.22/stable", "--scenario", "tracking", "--reports-dir", str(reports),
                "--", "-k", "search", "-x")
    assert "timeouts.deploy = 777s" in out and "1800" not in out
    assert "(deadline 333s)" in out
    pytest_line = next(ln for ln in out.splitlines() if " -m pytest " in ln)
    assert pytest_line.rstrip().endswith("-k search -x")
    assert f"--alluredir {reports}/microk8s-1.32/2.22-stable/allure-results" in pytest_line
    assert f"log: {reports}/microk8s-1.32/2.22-stable/pytest.log" in out
    assert not Path(reports).exists()  # plan touches nothing


def test_server_wide_counters_are_measured_alone_after_the_parallel_run(capsys):
    """Request counters are server-wide: observability runs after the xdist run, in one client
    process, so no other test's request lands in what it counts (a real cell showed +4 GETs)."""
    assert main(["run", "--dry-run", "--platform", "local", "--channel", "2.22/stable",
                 "--scenario", "tracking", "--scenario", "observability", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    block = _cell_block(out, "2.22-stable")
    shared, alone = block.index("test_tracking.py"), block.index("test_observability.py")
    assert shared < alone
    main_run = block[shared:block.index("\n", shared)]
    alone_run = block[alone:block.index("\n", alone)]
    assert "-n 3" in main_run and "test_observability.py" not in main_run
    assert "-n " not in alone_run and "junit-serial.xml" in alone_run
    assert "pytest-serial.log" in block


def test_plan_sizes_workers_per_cell_by_how_its_server_answers(capsys):
    """Multi-worker uvicorn (MLflow >= 3.3) answers each keep-alive request ~40 ms late: the
    plan gives that cell's client the server's 4 workers, the 2.x cell the cores' share."""
    assert main(["run", "--dry-run", "--platform", "local", "--channel", "2.22/stable",
                 "--channel", "latest/edge", "--scenario", "tracking", "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 against MLflow >= 3.3.0" in out

    def main_run(cell: str) -> str:
        block = _cell_block(out, cell)
        start = block.index("test_tracking.py")
        return block[start:block.index("\n", start)]

    assert "-n 2 " in main_run("2.22-stable")
    assert "-n 4 " in main_run("latest-edge")


def test_juju_plan_shows_the_mlflow_3_guide_as_commands_with_the_bundles_app_names(capsys):
    out = _plan(capsys, "--platform", "microk8s-1.32", "--upgrade", "2.22/stable:latest/edge",
                "--scenario", "upgrade")
    block = _cell_block(out, "upgrade-2.22-stable-to-latest-edge")
    model = "mm-<run-id>-microk8s-1-32:mm-<run-id>-upgrade-2-22-stable-to-latest-edge"
    expected = [
        "[upgrade/backup-db]", f"juju run --model {model} mlflow-mysql/leader create-backup",
        "[upgrade/remove-db-relation] the guide: juju remove-relation "
        "mlflow-server:relational-db mysql-k8s:database",
        f"juju remove-relation --model {model} mlflow-server:relational-db mlflow-mysql:database",
        "then wait until mlflow-server is blocked, mysql-k8s is active",
        "[upgrade/refresh-server] the guide: juju refresh mlflow-server --channel=3.15/edge",
        f"juju refresh --model {model} mlflow-server --channel <mlflow-server's channel in the "
        "latest/edge bundle>",
        f"juju integrate --model {model} mlflow-mysql:database mlflow-server:relational-db",
        "[after-upgrade]", "[rollback] move the server back to 2.22/stable: must be refused"]
    positions = [block.index(line) for line in expected]
    assert positions == sorted(positions)
