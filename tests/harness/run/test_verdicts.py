"""Verdicts on real cells: green only when every check ran and held.

Each test runs a real local cell (MLflow 2.22 + SeaweedFS + SQLite) with a small scenario suite
of its own (MLFLOW_MATRIX_SCENARIOS_DIR) and reads what a reviewer would: exit code, cell.json,
the Allure results and the matrix page model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import provisioners.local as local
from harness.cli import main
from harness.config.defects import KnownDefect, Signature
from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.reporting.matrix_page import build_model
from harness.run.runner import Progress, Runner, RunOptions

CHANNEL = "2.22/stable"
CELL = "2.22-stable"


def _runner(tmp_path: Path, *, platform: str = "local", suites: tuple[str, ...] = ("tracking",),
            defects: tuple[KnownDefect, ...] = (), server_start: int = 300,
            **settings) -> Runner:
    matrix = load_matrix()
    matrix = dataclasses.replace(matrix, known_defects=defects, timeouts=dataclasses.replace(
        matrix.timeouts, server_start=server_start))
    if settings:
        p = matrix.platforms[platform]
        patched = dataclasses.replace(p, settings=dataclasses.replace(p.settings, **settings))
        matrix = dataclasses.replace(matrix, platforms={**matrix.platforms, platform: patched})
    cells = expand_cells(matrix, Selection(platforms=(platform,), channels=(CHANNEL,),
                                           scenarios=suites))
    log = (tmp_path / "progress.log").open("w")
    return Runner(matrix, cells, RunOptions(reports_dir=tmp_path / "reports"),
                  progress=Progress(log))


def _suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir(exist_ok=True)
    (scenarios / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    (scenarios / f"test_{name}.py").write_text(body)
    monkeypatch.setenv("MLFLOW_MATRIX_SCENARIOS_DIR", str(scenarios))


def _results(cell_dir: Path) -> dict[str, dict]:
    found = {}
    for path in (cell_dir / "allure-results").glob("*-result.json"):
        body = json.loads(path.read_text())
        found[body["fullName"].rsplit(".", 1)[-1].split("#")[-1]] = body
    return found


def _cell_json(tmp_path: Path, platform: str = "local", cell: str = CELL) -> dict:
    return json.loads((tmp_path / "reports" / platform / cell / "cell.json").read_text())


def _test_defect(test: str, **signature: str) -> KnownDefect:
    return KnownDefect(id=f"defect-{test}", link="https://example.invalid/" + test,
                       summary=f"{test} is broken", signature=Signature(**signature),
                       tests=(f"test_tracking.py::{test}",))


def test_marked_tests_are_excused_only_by_their_signature(tmp_path, monkeypatch):
    _suite(tmp_path, monkeypatch, "tracking", (
        "def test_reproduces(mlflow_client):\n"
        "    assert mlflow_client.search_experiments()\n"
        "    assert False, 'the alias still points at version 2'\n"
        "\n"
        "def test_breaks_otherwise(mlflow_client):\n"
        "    {}['aliases']\n"
        "\n"
        "def test_fixed_upstream(mlflow_client):\n"
        "    assert mlflow_client.search_experiments()\n"))
    defects = (_test_defect("test_reproduces", exception="AssertionError",
                            message="still points at"),
               _test_defect("test_breaks_otherwise", exception="AssertionError",
                            message="still points at"),
               _test_defect("test_fixed_upstream", message="still points at"))
    assert _runner(tmp_path, defects=defects).run() == 1
    results = _results(tmp_path / "reports" / "local" / CELL)
    reproduced = results["test_reproduces"]
    assert reproduced["status"] == "failed"  # a failure with a known-issue resolution, no skip
    assert "known defect defect-test_reproduces" in reproduced["statusDetails"]["message"]
    assert {"name": "tag", "value": "known-defect"} in reproduced["labels"]
    other = results["test_breaks_otherwise"]
    assert other["status"] == "failed"
    message = other["statusDetails"]["message"]
    assert "expected (defect-test_breaks_otherwise): exception AssertionError and message " \
           "matching /still points at/" in message
    assert "actual: builtins.KeyError" in message and "aliases" in message
    xpass = results["test_fixed_upstream"]
    assert xpass["status"] == "failed" and "XPASS" in xpass["statusDetails"]["message"]
    summary = _cell_json(tmp_path)
    assert summary["status"] == "failed"
    assert summary["counts"]["known-defect"] == 1
    by_name = {t["name"]: t for t in summary["tests"]}
    assert "actual: builtins.KeyError" in by_name["test_breaks_otherwise"]["message"]


@pytest.mark.parametrize("matching", [True, False], ids=["its-signature", "another-error"])
def test_a_phase_defect_excuses_only_its_own_error(tmp_path, matching):
    defect = KnownDefect(
        id="s3-refuses-bucket", link="https://example.invalid/s3", summary="bucket refused",
        signature=Signature(message="Not_A_Valid_Bucket" if matching else "out-of-date database"),
        phases=("deploy",))
    runner = _runner(tmp_path, defects=(defect,), server_start=30, bucket="Not_A_Valid_Bucket!")
    assert runner.run() == (0 if matching else 3)
    deploy = _results(tmp_path / "reports" / "local" / CELL)["deploy"]
    summary = _cell_json(tmp_path)
    if matching:
        assert deploy["status"] == "failed" and deploy["statusDetails"]["known"]
        assert {"name": "tag", "value": "known-defect"} in deploy["labels"]
        assert summary["status"] == "known-defect"
    else:
        assert deploy["status"] == "broken" and not deploy["statusDetails"]["known"]
        message = deploy["statusDetails"]["message"]
        assert "expected (s3-refuses-bucket): message matching /out-of-date database/" in message
        assert "Not_A_Valid_Bucket" in message
        assert summary["status"] == "broken"


def test_no_test_ran_is_red(tmp_path, monkeypatch):
    _suite(tmp_path, monkeypatch, "tracking", "def helper():\n    return 1\n")
    assert _runner(tmp_path).run() == 1
    summary = _cell_json(tmp_path)
    assert summary["status"] == "failed"
    assert "no test ran" in summary["message"]


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_skips_are_visible_and_strict_mode_fails_on_them(tmp_path, monkeypatch, strict):
    _suite(tmp_path, monkeypatch, "tracking", (
        "import pytest\n"
        "def test_ok(mlflow_client):\n    assert mlflow_client.search_experiments()\n"
        "def test_release_lacks_it():\n"
        "    pytest.skip('not applicable: MLflow 2.22 has no such API')\n"
        "def test_platform_lacks_it():\n    pytest.skip('no S3 endpoint on this platform')\n"))
    runner = _runner(tmp_path)
    runner.options = dataclasses.replace(runner.options, strict=strict)
    assert runner.run() == (1 if strict else 0)
    summary = _cell_json(tmp_path)
    assert summary["status"] == ("failed" if strict else "passed-with-skips")
    assert summary["counts"] == {"passed": 1, "not-applicable": 1, "skipped": 1}
    assert summary["skips"] == [{"test": "test_platform_lacks_it",
                                 "reason": "no S3 endpoint on this platform"}]
    assert summary["not_applicable"][0]["reason"] == "MLflow 2.22 has no such API"
    column = build_model(tmp_path / "reports")["cells"][0]
    assert column["display_status"] == summary["status"]
    assert column["skips"] == summary["skips"] and column["not_applicable"] == 1


def test_a_crashed_cell_is_broken_with_its_cell_json(tmp_path, monkeypatch):
    _suite(tmp_path, monkeypatch, "tracking",
           "def test_ok(mlflow_client):\n    assert mlflow_client.search_experiments()\n")

    def crash(cell_dir):
        raise RuntimeError("report enrichment blew up")

    import harness.run.cell as cell_module

    monkeypatch.setattr(cell_module, "enrich_cell", crash)  # a harness bug, injected
    assert _runner(tmp_path).run() == 3
    summary = _cell_json(tmp_path)
    assert summary["status"] == "broken"
    assert "report enrichment blew up" in summary["message"]


def test_a_platform_that_cannot_restart_shows_a_skipped_restart(tmp_path, monkeypatch):
    """external (a hand-started server) runs persistence once; the restart is a skipped result."""
    from harness.config.matrix import adhoc_channel
    from harness.run.envs import ensure_env
    from harness.system.state import RunState
    from provisioners.api import RunContext
    from provisioners.local import LocalSettings, MlflowServer, SeaweedS3, SqliteStore

    _suite(tmp_path, monkeypatch, "persistence",
           "def test_round_trip(mlflow_client):\n    assert mlflow_client.search_experiments()\n")
    matrix = load_matrix()
    context = RunContext(run_id="test-verdicts", platform=matrix.platforms["local"],
                         work_dir=tmp_path / "server", state=RunState(tmp_path / "s.json", "t"),
                         env_for=lambda c: None)  # type: ignore[arg-type,return-value]
    s3 = SeaweedS3(tmp_path / "server" / "s3", context, 120)
    store = SqliteStore(tmp_path / "server" / "db")
    env = ensure_env("2.22.0", matrix.requirements_for(adhoc_channel("2.22.0")), timeout=900)
    server = None
    try:
        s3.start()
        s3.create_bucket("mlflow")
        store.start()
        server = MlflowServer(env, tmp_path / "server" / "mlflow", context, LocalSettings(), s3,
                              store.uri, 400)
        endpoint = server.start()
        _warm_up(endpoint.tracking_uri)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        matrix_cells = load_matrix()
        runner = Runner(
            matrix_cells,
            expand_cells(dataclasses.replace(matrix_cells, channels={
                **matrix_cells.channels, "detected": adhoc_channel("detect")}),
                Selection(platforms=("external",), channels=("detected",),
                          scenarios=("persistence",))),
            RunOptions(reports_dir=tmp_path / "reports", provisioner_options={
                "tracking_uri": endpoint.tracking_uri, "s3_endpoint_url": s3.url,
                "artifact_bucket": "mlflow", "artifact_mode": "direct"}),
            progress=Progress((tmp_path / "progress.log").open("w")))
        assert runner.run() == 0
    finally:
        if server is not None:
            server.stop()
        s3.stop()
    cell_dir = tmp_path / "reports" / "external" / "detected"
    restart = _results(cell_dir)["restart"]
    assert restart["status"] == "skipped"
    assert "cannot restart the MLflow server" in restart["statusDetails"]["message"]
    assert _results(cell_dir)["test_round_trip"]["status"] == "passed"
    summary = _cell_json(tmp_path, "external", "detected")
    assert summary["status"] == "passed-with-skips"  # the restart checks did not run
    assert summary["skips"][0]["test"] == "restart phase"
    assert {"name": "restart", "status": "skipped"}.items() <= next(
        p for p in summary["phases"] if p["name"] == "restart").items()
    model = build_model(tmp_path / "reports", matrix)
    lifecycle = next(r for r in model["rows"] if r["suite"] == "lifecycle")
    text = json.dumps(lifecycle)
    assert "restart" in text and "skipped" in text


def _warm_up(url: str, deadline_s: float = 180) -> None:
    """A fresh server's first answers are slow on a loaded machine; external's pre-flight
    gives each check 4 s, so wait until the server answers promptly."""
    import time
    import urllib.request

    deadline = time.monotonic() + deadline_s
    while True:
        start = time.monotonic()
        try:
            for path in ("/version", "/api/2.0/mlflow/experiments/search?max_results=1"):
                urllib.request.urlopen(url + path, timeout=10).read()
            if time.monotonic() - start < 1.0:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered promptly"
        time.sleep(1)


def test_a_named_platform_that_cannot_run_here_is_bad_input(monkeypatch, capsys):
    monkeypatch.setattr(local, "find_sbin", lambda name: None)
    assert main(["run", "--platform", "local-mysql", "--channel", CHANNEL, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--platform local-mysql cannot run here" in err
    assert "apt-get install mariadb-server" in err
    assert main(["run", "--channel", CHANNEL, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: platform local-mysql (default selection) cannot run here" in err
