"""The observability suite in a real local cell: green as shipped, red naming the cause when the
server is started without `--expose-prometheus`, skipped with the install hint without Prometheus.

Each test runs one `local` cell of 2.22/stable with the observability suite only (a real MLflow
server, SeaweedFS, SQLite and Prometheus); run them under /work/helpers/heavy.lock by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import provisioners.local as local
import provisioners.local_prometheus as lp
from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions

CELL = ("local", "2.22-stable")


def _run(tmp_path: Path) -> tuple[int, dict[str, dict]]:
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                           scenarios=("observability",)))
    with (tmp_path / "progress.log").open("w") as log:
        code = Runner(matrix, cells, RunOptions(reports_dir=tmp_path / "reports"),
                      progress=Progress(log)).run()
    results = [json.loads(p.read_text()) for p in
               (tmp_path / "reports").joinpath(*CELL, "allure-results").glob("*-result.json")]
    return code, {r["name"]: r for r in results if not r["fullName"].startswith("lifecycle.")}


def _message(result: dict) -> str:
    return (result.get("statusDetails") or {}).get("message", "")


@pytest.mark.skipif(not lp.prometheus_binary(), reason=f"prometheus missing: {lp.PROMETHEUS_HINT}")
def test_a_server_without_expose_prometheus_turns_the_suite_red_naming_the_cause(
        tmp_path, monkeypatch):
    """Break-it: the charm's --expose-prometheus left out of the server's command line."""
    charm_argv = local.MlflowServer.argv

    def without_metrics(self: local.MlflowServer) -> list[str]:
        argv = charm_argv(self)
        at = argv.index("--expose-prometheus")
        return argv[:at] + argv[at + 2:]

    monkeypatch.setattr(local.MlflowServer, "argv", without_metrics)
    code, results = _run(tmp_path)
    assert code == 1
    scrape = results["test_prometheus_scrapes_the_server_with_the_charms_job"]
    assert scrape["status"] == "failed"
    assert "Prometheus cannot scrape the server with the charm's job" in _message(scrape)
    assert "/metrics is down: server returned HTTP status 404" in _message(scrape), _message(scrape)
    assert results["test_every_dashboard_panel_has_data"]["status"] == "failed"


def test_without_prometheus_the_checks_skip_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(lp, "prometheus_binary", lambda: None)
    code, results = _run(tmp_path)
    assert code == 0
    needs_prometheus = [r for n, r in results.items() if n != "test_metrics_endpoint_serves_prometheus_text"]
    assert needs_prometheus and all(r["status"] == "skipped" for r in needs_prometheus)
    assert all("sudo apt-get install prometheus" in _message(r) for r in needs_prometheus)
    assert results["test_metrics_endpoint_serves_prometheus_text"]["status"] == "passed"
