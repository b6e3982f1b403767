"""The local Prometheus: COS's rendering of the charm's scrape job, and a real `prometheus`
scraping a loopback server, following it when it moves, released at stop."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fakes import loopback

import provisioners.local_prometheus as lp
from harness.config.matrix import load_matrix
from harness.system.endpoint import Observability
from harness.system.state import RunState
from provisioners.api import RunContext

CHARM_JOBS = [{"metrics_path": "/metrics", "static_configs": [{"targets": ["*:5000", "*:8000"]}]}]
TOPOLOGY = lp.Topology(model="mlflow-matrix-r1", model_uuid="0123abcd-0000-4000-8000-000000000000")


def test_the_charms_job_rendered_as_cos_renders_it():
    """prometheus_k8s lib MetricsEndpointConsumer: prefixed job name, the unit number appended,
    the unit's address for `*`, topology labels, `instance` relabelled from the topology."""
    configs, dropped = lp.scrape_configs(CHARM_JOBS, TOPOLOGY, {5000: "127.0.0.1:41234"})
    assert dropped == ["*:8000"]
    assert configs == [{
        "job_name": "juju_mlflow-matrix-r1_0123abcd_mlflow-server_prometheus_scrape-0",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": ["127.0.0.1:41234"], "labels": {
            "juju_model": "mlflow-matrix-r1",
            "juju_model_uuid": "0123abcd-0000-4000-8000-000000000000",
            "juju_application": "mlflow-server", "juju_charm": "mlflow-server",
            "juju_unit": "mlflow-server/0"}}],
        "relabel_configs": [{"source_labels": ["juju_model", "juju_model_uuid",
                                               "juju_application", "juju_unit"],
                             "separator": "_", "target_label": "instance", "regex": "(.*)"}],
    }]


def test_a_named_job_keeps_its_name_after_the_prefix_and_disallowed_keys_are_dropped():
    jobs = [{"job_name": "api", "static_configs": [{"targets": ["*:5000"]}],
             "honor_labels": True}]
    (config,), _ = lp.scrape_configs(jobs, TOPOLOGY, {5000: "127.0.0.1:1"})
    assert config["job_name"] == "juju_mlflow-matrix-r1_0123abcd_mlflow-server_prometheus_scrape_api-0"
    assert "honor_labels" not in config


def test_a_target_that_is_not_the_units_own_is_refused():
    with pytest.raises(ValueError, match="not a wildcard"):
        lp.scrape_configs([{"static_configs": [{"targets": ["mlflow.example:5000"]}]}],
                          TOPOLOGY, {5000: "127.0.0.1:1"})


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'mlflow_http_request_total{method="GET",status="200"} 3\n'
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def context(tmp_path: Path) -> RunContext:
    state = RunState(tmp_path / "state.json", "r1")
    return RunContext(run_id="r1", platform=load_matrix().platforms["local"],
                      work_dir=tmp_path, state=state, env_for=lambda channel: None)


def _targets(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=5) as response:
        return json.load(response)["data"]["activeTargets"]


def _wait_up(url: str, port: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for target in _targets(url):
            if target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics" and \
                    target["health"] == "up":
                return target
        time.sleep(0.2)
    raise AssertionError(f"no healthy target on port {port}: {_targets(url)}")


@pytest.mark.skipif(not lp.prometheus_binary(), reason=f"prometheus missing: {lp.PROMETHEUS_HINT}")
def test_prometheus_scrapes_the_server_follows_it_and_is_released(tmp_path, context):
    first, second = loopback.serve(Metrics, "metrics-1"), loopback.serve(Metrics, "metrics-2")
    prom = lp.LocalPrometheus(tmp_path / "prometheus", context, timeout=30)
    try:
        watch = prom.observe("2.22-stable", first.server_address[1])
        assert watch.prometheus_url == prom.url and watch.unavailable is None
        assert watch.artefacts == str(lp.OBSERVABILITY_DIR / "2.22-stable")
        assert watch.labels["juju_unit"] == "mlflow-server/0"
        target = _wait_up(prom.url, first.server_address[1])
        assert target["labels"]["job"].endswith("_mlflow-server_prometheus_scrape-0")
        assert {k: target["labels"][k] for k in watch.labels} == watch.labels
        with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} == {
            "KubeflowServiceDown", "KubeflowServiceIsNotStable", "MLFlowRequestDurationTooLong"}
        pid = prom.service.pid
        assert [r.data["pid"] for r in context.state.resources() if r.type == "process"] == [pid]

        prom.observe("2.22-stable", second.server_address[1])  # the server moved: reload
        _wait_up(prom.url, second.server_address[1])
        assert prom.service.pid == pid, "a move is a reload, not a new Prometheus"
        assert [t["scrapeUrl"] for t in _targets(prom.url)] == \
            [f"http://127.0.0.1:{second.server_address[1]}/metrics"]
    finally:
        prom.stop()
        loopback.stop(first)
        loopback.stop(second)
    assert context.state.resources() == []


def test_no_artefacts_for_the_release_means_nothing_to_watch(tmp_path, context):
    prom = lp.LocalPrometheus(tmp_path / "prometheus", context, timeout=5)
    assert prom.observe("3.17.2", 5000) == Observability()
    assert prom.service is None


def test_a_missing_binary_is_said_with_the_install_hint(tmp_path, context, monkeypatch):
    monkeypatch.setattr(lp, "prometheus_binary", lambda: None)
    prom = lp.LocalPrometheus(tmp_path / "prometheus", context, timeout=5)
    watch = prom.observe("2.22-stable", 5000)
    assert watch.prometheus_url is None
    assert "apt-get install prometheus" in (watch.unavailable or "")
    assert prom.service is None


def test_artefacts_exist_for_every_channel_slug():
    for channel in load_matrix().channels.values():
        assert lp.artefacts_for(channel.slug), channel.name
    assert shutil.which("prometheus") is None or lp.prometheus_binary()
