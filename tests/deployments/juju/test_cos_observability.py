"""The observability checks run on what the COS relation delivers, as deployments/juju/cos.py
reads it from `juju show-unit` (here the recorded consumer-side databag): the published scrape
job is the charm's recorded one and renders as on local, the published alert rules pass
`promtool check rules`, and the published dashboards yield their panel queries."""

from __future__ import annotations

import base64
import importlib.util
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.juju.cos import GRAFANA_DASHBOARD, METRICS_ENDPOINT, provider_data
from provisioners.local_prometheus import OBSERVABILITY_DIR, PROMETHEUS_HINT, Topology, scrape_configs

ROOT = Path(__file__).resolve().parents[3]
RECORDED = ROOT / "tests" / "fakes" / "recordings" / "juju" / "show-unit-grafana-agent-k8s.json"
_spec = importlib.util.spec_from_file_location("mm_prometheus", ROOT / "scenarios" / "_prometheus.py")
P = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("mm_prometheus", P)
_spec.loader.exec_module(P)


@pytest.fixture(scope="module")
def relation() -> tuple[dict, dict]:
    show_unit = json.loads(RECORDED.read_text(encoding="utf-8"))
    return (provider_data(show_unit, METRICS_ENDPOINT, "mlflow-server"),
            provider_data(show_unit, GRAFANA_DASHBOARD, "mlflow-server"))


def test_the_published_scrape_job_is_the_recorded_one_and_renders(relation):
    metrics, _ = relation
    published = json.loads(metrics["scrape_jobs"])
    recorded = json.loads((OBSERVABILITY_DIR / "latest-edge" / "scrape_jobs.json").read_text())
    assert published == recorded
    meta = json.loads(metrics["scrape_metadata"])
    topology = Topology(model=meta["model"], model_uuid=meta["model_uuid"], unit=meta["unit"])
    (config,), dropped = scrape_configs(published, topology, {5000: "10.1.0.7:5000"})
    assert config["static_configs"][0]["targets"] == ["10.1.0.7:5000"] and dropped == ["*:8000"]


def test_the_published_alert_rules_pass_promtool(relation, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip(f"promtool is not installed: {PROMETHEUS_HINT}")
    metrics, _ = relation
    rules = tmp_path / "published.rules"
    rules.write_text(metrics["alert_rules"], encoding="utf-8")  # JSON is YAML
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_published_dashboards_yield_their_panel_queries(relation):
    _, grafana = relation
    templates = json.loads(grafana["dashboards"])["templates"]
    queries = [q for key, t in templates.items()
               for q in P.panel_queries(key, json.loads(lzma.decompress(base64.b64decode(t["content"]))))]
    assert queries and all(q.expr for q in queries)
