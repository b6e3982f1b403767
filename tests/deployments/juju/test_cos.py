"""COS relation data of mlflow-server, read from a consumer's recorded `juju show-unit`."""

from __future__ import annotations

import base64
import copy
import json
import lzma

import pytest

from deployments.juju.cos import check_cos_relations, provider_data
from tests.fakes.recording import recording


@pytest.fixture
def show_unit() -> dict:
    return json.loads(recording("juju/show-unit-grafana-agent-k8s.json", MODEL="mm-model",
                                MODEL_UUID="0f3e5a6b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"))


def _relation(show_unit: dict, related_endpoint: str) -> dict:
    (unit,) = show_unit.values()
    return next(r for r in unit["relation-info"] if r["related-endpoint"] == related_endpoint)


def test_recorded_relations_carry_scrape_jobs_alerts_and_dashboard(show_unit):
    report = check_cos_relations(show_unit)
    assert report.problems == ()
    assert report.scrape_jobs[0]["metrics_path"] == "/metrics"
    assert report.alert_rules == ("MLFlowServerUnitIsUnavailable",)
    assert report.dashboards == ("MLflow",)


def test_data_is_read_from_the_provider_side_only(show_unit):
    assert provider_data(show_unit, "metrics-endpoint", "other-app") is None
    report = check_cos_relations(show_unit, provider_app="other-app")
    assert report.problems == (
        "no `metrics-endpoint` relation with other-app on this unit",
        "no `grafana-dashboard` relation with other-app on this unit")


def test_missing_relations_are_named(show_unit):
    (unit,) = show_unit.values()
    unit["relation-info"] = []
    problems = check_cos_relations(show_unit).problems
    assert any("metrics-endpoint" in p for p in problems)
    assert any("grafana-dashboard" in p for p in problems)


def test_empty_databag_before_the_charm_wrote_it(show_unit):
    _relation(show_unit, "metrics-endpoint")["application-data"] = {}
    problems = check_cos_relations(show_unit).problems
    assert "application data has no `scrape_jobs`" in problems
    assert "application data has no `scrape_metadata`" in problems
    assert "application data has no `alert_rules`" in problems


def test_scrape_job_on_another_port_or_path_is_reported(show_unit):
    data = _relation(show_unit, "metrics-endpoint")["application-data"]
    data["scrape_jobs"] = json.dumps([{"metrics_path": "/other",
                                       "static_configs": [{"targets": ["*:5000"]}]}])
    assert any("no job for /metrics on port 5000" in p
               for p in check_cos_relations(show_unit).problems)
    assert check_cos_relations(copy.deepcopy(show_unit), mlflow_port=5000).problems


def test_dashboard_content_must_decode(show_unit):
    data = _relation(show_unit, "grafana-dashboard")["application-data"]
    boards = json.loads(data["dashboards"])
    template = next(iter(boards["templates"].values()))
    template["content"] = base64.b64encode(b"not lzma").decode()
    data["dashboards"] = json.dumps(boards)
    assert any("not LZMA+base64" in p for p in check_cos_relations(show_unit).problems)
    template["content"] = base64.b64encode(lzma.compress(b'{"title": "X"}')).decode()
    data["dashboards"] = json.dumps(boards)
    assert check_cos_relations(show_unit).dashboards == ("X",)
