"""What Charmed MLflow publishes to the Canonical Observability Stack, read from `juju show-unit`.

The mlflow-server charm provides `metrics-endpoint` (prometheus_scrape) and `grafana-dashboard`
(grafana_dashboard). Juju puts relation data in a databag only once a consumer is related, and
`juju show-unit X` shows the data *the other side* set (juju/juju#13218): so the data mlflow-server
publishes is read from the consumer's unit, e.g. `juju show-unit grafana-agent-k8s/0`, after

    juju integrate grafana-agent-k8s:metrics-endpoint mlflow-server:metrics-endpoint
    juju integrate grafana-agent-k8s:grafana-dashboards-consumer mlflow-server:grafana-dashboard

(mlflow-operator docs/how-to/integrate-cos.rst). The shapes checked are the interface schemas
(canonical/charm-relation-interfaces prometheus_scrape v0 provider; grafana_dashboard library v0).
Standard library only, and no Juju call: the deployment passes in the parsed JSON.
"""

from __future__ import annotations

import base64
import json
import lzma
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

METRICS_ENDPOINT = "metrics-endpoint"
GRAFANA_DASHBOARD = "grafana-dashboard"
METRICS_PATH = "/metrics"  # the charm's --expose-prometheus path


@dataclass(frozen=True)
class CosReport:
    """What was found, for a result's description; `problems` empty means all present."""

    scrape_jobs: tuple[dict[str, Any], ...]
    alert_rules: tuple[str, ...]
    dashboards: tuple[str, ...]
    problems: tuple[str, ...]


def provider_data(show_unit: Mapping[str, Any], endpoint: str, provider_app: str
                  ) -> dict[str, str] | None:
    """The application databag `provider_app` set on its `endpoint` relation, as the consumer
    unit's `show-unit` shows it; None when no such relation exists."""
    for unit in show_unit.values():
        for relation in unit.get("relation-info") or []:
            if relation.get("related-endpoint") != endpoint:
                continue
            units = relation.get("related-units") or {}
            if any(name.split("/", 1)[0] == provider_app for name in units):
                return dict(relation.get("application-data") or {})
    return None


def check_cos_relations(show_unit: Mapping[str, Any], *, provider_app: str = "mlflow-server",
                        mlflow_port: int = 5000) -> CosReport:
    problems: list[str] = []
    jobs: list[dict[str, Any]] = []
    rules: list[str] = []
    boards: list[str] = []

    metrics = provider_data(show_unit, METRICS_ENDPOINT, provider_app)
    if metrics is None:
        problems.append(f"no `{METRICS_ENDPOINT}` relation with {provider_app} on this unit")
    else:
        jobs = _json_list(metrics, "scrape_jobs", problems)
        if jobs and not any(_scrapes(job, mlflow_port) for job in jobs):
            problems.append(f"scrape_jobs has no job for {METRICS_PATH} on port {mlflow_port}: "
                            f"{json.dumps(jobs)}")
        meta = _json_object(metrics, "scrape_metadata", problems)
        missing = [k for k in ("model", "model_uuid", "application", "unit") if not meta.get(k)]
        if meta and missing:
            problems.append(f"scrape_metadata lacks {', '.join(missing)}")
        if meta.get("application") and meta["application"] != provider_app:
            problems.append(f"scrape_metadata names application {meta['application']!r}")
        alert = _json_object(metrics, "alert_rules", problems)
        rules = [str(r.get("alert")) for g in alert.get("groups") or [] for r in g.get("rules") or []]
        if alert and not rules:
            problems.append("alert_rules has no rule")

    grafana = provider_data(show_unit, GRAFANA_DASHBOARD, provider_app)
    if grafana is None:
        problems.append(f"no `{GRAFANA_DASHBOARD}` relation with {provider_app} on this unit")
    else:
        data = _json_object(grafana, "dashboards", problems)
        templates = data.get("templates") or {}
        if data and not templates:
            problems.append("dashboards has no template")
        for key, template in templates.items():
            title = _dashboard_title(template.get("content", ""))
            if title is None:
                problems.append(f"dashboard {key}: content is not LZMA+base64 dashboard JSON")
            else:
                boards.append(title)
    return CosReport(tuple(jobs), tuple(rules), tuple(boards), tuple(problems))


def _scrapes(job: Mapping[str, Any], port: int) -> bool:
    if job.get("metrics_path", METRICS_PATH) != METRICS_PATH:
        return False
    targets = [t for c in job.get("static_configs") or [] for t in c.get("targets") or []]
    return any(str(t).rsplit(":", 1)[-1] == str(port) for t in targets)


def _json_list(data: Mapping[str, str], key: str, problems: list[str]) -> list[Any]:
    value = _decode(data, key, problems)
    if value is not None and not isinstance(value, list):
        problems.append(f"{key} is not a JSON list")
        return []
    if value == []:
        problems.append(f"{key} is empty")
    return value or []


def _json_object(data: Mapping[str, str], key: str, problems: list[str]) -> dict[str, Any]:
    value = _decode(data, key, problems)
    if value is not None and not isinstance(value, dict):
        problems.append(f"{key} is not a JSON object")
        return {}
    return value or {}


def _decode(data: Mapping[str, str], key: str, problems: list[str]) -> Any:
    if key not in data:
        problems.append(f"application data has no `{key}`")
        return None
    try:
        return json.loads(data[key])
    except (TypeError, ValueError):
        problems.append(f"`{key}` is not JSON")
        return None


def _dashboard_title(content: str) -> str | None:
    """Dashboards travel LZMA-compressed and base64-encoded (cosl.LZMABase64)."""
    try:
        board = json.loads(lzma.decompress(base64.b64decode(content)))
    except (ValueError, lzma.LZMAError, TypeError):
        return None
    return str(board.get("title", "untitled")) if isinstance(board, dict) else None
