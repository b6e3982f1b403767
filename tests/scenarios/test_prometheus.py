"""scenarios/_prometheus.py: the dashboard queries as Grafana sends them, judged by a real
Prometheus. The break-it check: a panel whose metric is misspelled is named, with its query."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fakes import loopback

import provisioners.local_prometheus as lp
from harness.config.matrix import load_matrix
from harness.system.state import RunState
from provisioners.api import RunContext

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mm_prometheus", ROOT / "scenarios" / "_prometheus.py")
P = importlib.util.module_from_spec(_spec)
sys.modules["mm_prometheus"] = P  # dataclasses resolve their module by name
_spec.loader.exec_module(P)

CHARM = P.Charm.load(lp.OBSERVABILITY_DIR / "2.22-stable")
(BOARD,) = CHARM.dashboards.values()
LABELS = {"juju_model": "mlflow-matrix-r1", "juju_model_uuid": "0123abcd-0000-4000-8000-0000000000aa",
          "juju_application": "mlflow-server", "juju_unit": "mlflow-server/0"}


def test_every_panel_query_of_the_charms_dashboard_is_found():
    queries = P.panel_queries("mlflow-server.json.tmpl", BOARD)
    assert [(q.panel, q.ref_id) for q in queries] == [
        ("MLflow up", "A"), ("# Experiments", "A"), ("# Registered Models", "Number Of Models"),
        ("# Runs", "A"), *[("Request Duration 5 minute windows by status code and method", r)
                           for r in "ABCDE"], ("# Error requests per 30min window", "A")]
    assert {q.dashboard for q in queries} == {"MLflow metrics Dashboard"}


def test_nested_row_panels_are_found():
    board = {"title": "b", "panels": [{"type": "row", "title": "r", "panels": [
        {"title": "inner", "targets": [{"refId": "A", "expr": "up"}]}]}]}
    assert [q.name for q in P.panel_queries("x", board)] == ["b › inner [A]"]


def test_variables_are_replaced_whole_words_first():
    """$juju_model must not eat the start of $juju_model_uuid (Grafana matches \\w+)."""
    (up,) = [q for q in P.panel_queries("x", BOARD) if q.panel == "MLflow up"]
    sent = P.interpolate(up.expr, BOARD, LABELS, P.grafana_builtins(1))
    assert sent == ('up{juju_application="mlflow-server",juju_model=~"mlflow-matrix-r1",'
                    'juju_model_uuid=~"0123abcd-0000-4000-8000-0000000000aa",'
                    'juju_unit=~"mlflow-server/0"}')


def test_multi_value_variables_are_regex_escaped_as_grafana_does():
    board = {"templating": {"list": [{"name": "m", "multi": True}, {"name": "s"}]}}
    assert P.interpolate('x{a=~"$m",b="${s}"}', board, {"m": "a.b(c)", "s": "a.b"}, {}) == \
        'x{a=~"a\\\\.b\\\\(c\\\\)",b="a.b"}'


def test_an_unknown_variable_is_an_error_not_an_empty_string():
    with pytest.raises(KeyError, match=r"\$nope"):
        P.interpolate("rate(x[$nope])", BOARD, LABELS, {})
    assert P.interpolate("rate(x[$__rate_interval])", BOARD, LABELS, P.grafana_builtins(1)) == \
        "rate(x[4s])"


def test_the_outage_is_the_longest_run_of_failed_scrapes():
    values = [(1, 1), (2, 0), (3, 1), (4, 0), (5, 0), (6, 0), (7, 1), (9, 0)]
    assert P.longest_zero_run(values) == (4, 6)
    assert P.longest_zero_run([(1, 1), (2, 1)]) is None
    assert P.longest_zero_run([(1, 0), (5, 0), (6, 0)]) == (5, 6), "a gap ends a run"


def test_rfc3339_with_nanoseconds():
    assert P.rfc3339("2026-12-08T00:45:38.520225505Z") == pytest.approx(1796690738.520225505)
    assert P.rfc3339("0001-01-01T00:00:00Z") == 0.0


class Metrics(BaseHTTPRequestHandler):
    """What an MLflow server with --expose-prometheus serves after a 200 and a 404."""

    body = "\n".join([
        'mlflow_http_request_total{method="GET",status="200"} 3',
        'mlflow_http_request_total{method="GET",status="404"} 2',
        *[f'mlflow_http_request_duration_seconds_bucket{{le="{le}",method="GET",'
          f'mlflow_version="2.22.0",status="200"}} {n}' for le, n in (("0.1", 2), ("+Inf", 3))],
        'mlflow_http_request_duration_seconds_count{method="GET",mlflow_version="2.22.0",status="200"} 3',
        'mlflow_http_request_duration_seconds_sum{method="GET",mlflow_version="2.22.0",status="200"} 0.3',
    ]) + "\n"
    step = [0]

    def do_GET(self) -> None:
        # counters grow between scrapes, as a server taking requests does
        Metrics.step[0] += 1
        text = self.body.replace("} 3\n", f"}} {3 + Metrics.step[0]}\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def watched(tmp_path):
    if not lp.prometheus_binary():
        pytest.skip(f"prometheus missing: {lp.PROMETHEUS_HINT}")
    server = loopback.serve(Metrics, "metrics")
    context = RunContext(run_id="r1", platform=load_matrix().platforms["local"], work_dir=tmp_path,
                         state=RunState(tmp_path / "state.json", "r1"), env_for=lambda c: None)
    prom = lp.LocalPrometheus(tmp_path / "prometheus", context, timeout=30)
    try:
        client = P.Prometheus(prom.observe("2.22-stable", server.server_address[1]).prometheus_url)
        # a scrape after start: from then on every panel's series exist
        client.wait_for_scrape(f"juju_{prom.topology.identifier}_prometheus_scrape-0", time.time(), 15)
        yield client, prom.topology.labels()
    finally:
        prom.stop()
        loopback.stop(server)


def _judge(prom, labels, board):
    queries = P.panel_queries("mlflow-server.json.tmpl", board)
    builtins = P.grafana_builtins(1)
    exporter = [q for q in queries if "mlflow_metric" in q.expr]
    results = P.evaluate_panels(
        prom, queries, lambda q: P.interpolate(q.expr, board, labels, builtins),
        skip=lambda q: "exporter not run" if q in exporter else "", timeout=15)
    return results, P.empty_panels(results)


def test_every_server_panel_has_data_in_a_real_prometheus(watched):
    prom, labels = watched
    results, empty = _judge(prom, labels, BOARD)
    assert empty == []
    assert sum(1 for r in results if r.series) == 7
    assert sorted({r.query.panel for r in results if r.not_applicable}) == [
        "# Experiments", "# Registered Models", "# Runs"]


def test_a_misspelled_metric_names_the_panel_and_its_query(watched):
    """Break-it: one letter off in a panel's metric turns the check red, naming both."""
    prom, labels = watched
    board = copy.deepcopy(BOARD)
    (panel,) = [p for p in board["panels"] if p["title"] == "# Error requests per 30min window"]
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace(
        "mlflow_http_request_total", "mlflow_http_requests_total")
    _, empty = _judge(prom, labels, board)
    assert len(empty) == 1, json.dumps(empty)
    assert empty[0].startswith("MLflow metrics Dashboard › # Error requests per 30min window [A]: "
                               "no data for increase(mlflow_http_requests_total{")
