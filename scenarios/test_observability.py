"""Observability: the Prometheus metrics the charm exposes (`mlflow server --expose-prometheus`).

The charm starts MLflow with `--expose-prometheus`, so `/metrics` is served by the tracking server
itself (prometheus_flask_exporter's GunicornInternalPrometheusMetrics, prefix `mlflow`). That
exporter runs in multiprocess mode: every gunicorn/uvicorn worker writes its samples to the
directory given to `--expose-prometheus`, and `/metrics` sums them over all workers, live and
dead. So a delta between two scrapes counts every request whichever worker served it, and the
scrape itself is not counted (the endpoint is `do_not_track`). `/health` and `/version` are
excluded by MLflow (`excluded_paths`).

What MLflow exports (mlflow/server/prometheus_exporter.py, the same in 2.15 … 3.14):
- `mlflow_http_request_total{method,status}` — counter
- `mlflow_http_request_duration_seconds{method,mlflow_version,status}` — histogram, grouped by
  the server's MLflow version rather than by path
- `mlflow_http_request_exceptions_total{method,status}` — counter, only once an exception happened

Expected deltas are what this test sent, request by request, on a private experiment; nothing
is read off the server to decide what it should have counted.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import allure
import mlflow
import pytest

TIMEOUT = 10.0
PREFIX = "mlflow_"
REQUESTS_TOTAL = f"{PREFIX}http_request_total"
DURATION = f"{PREFIX}http_request_duration_seconds"
VERSION_LABEL = "mlflow_version"  # the exporter's group_by callable is named mlflow_version


@dataclass(frozen=True)
class Scrape:
    families: dict[str, Any]
    content_type: str
    text: str

    def samples(self, name: str) -> list[Any]:
        return [s for family in self.families.values() for s in family.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        return sum(s.value for s in self.samples(name)
                   if all(s.labels.get(k) == v for k, v in labels.items()))


class Client:
    """Plain HTTP, one request per call: the counts must be exactly what the test sent
    (the MLflow client may retry or add calls of its own)."""

    def __init__(self, tracking_uri: str) -> None:
        parsed = urlparse(tracking_uri)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.https else 80)
        self.prefix = parsed.path.rstrip("/")
        self.sent: Counter[tuple[str, str]] = Counter()
        self.elapsed = 0.0

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str]:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=TIMEOUT)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            conn.request(method, self.prefix + path,
                         body=json.dumps(body).encode() if body is not None else None,
                         headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, *, expect: int) -> dict[str, Any]:
        """One counted request; `expect` is the status MLflow's REST API defines for it."""
        t0 = time.monotonic()
        status, data, _ = self.raw(method, path, body)
        self.elapsed += time.monotonic() - t0
        assert status == expect, f"{method} {path} answered {status}, expected {expect}: " \
                                 f"{data[:200]!r}"
        self.sent[(method, str(status))] += 1
        return json.loads(data or b"{}")

    def scrape(self) -> Scrape:
        from prometheus_client.parser import text_string_to_metric_families

        status, data, content_type = self.raw("GET", "/metrics")
        assert status == 200, (f"GET /metrics answered {status}: the server does not expose "
                               f"Prometheus metrics where the charm serves them ({data[:200]!r})")
        text = data.decode("utf-8")
        try:
            families = {f.name: f for f in text_string_to_metric_families(text)}
        except Exception as exc:  # the parser raises ValueError and friends on bad input
            raise AssertionError(f"/metrics is not valid Prometheus text format: {exc}") from None
        return Scrape(families, content_type, text)


@pytest.fixture(scope="module")
def client(endpoint) -> Client:
    return Client(endpoint.tracking_uri)


def test_metrics_endpoint_serves_prometheus_text(client):
    scrape = client.scrape()
    allure.attach(scrape.text, name="/metrics", attachment_type=allure.attachment_type.TEXT)
    assert scrape.content_type.startswith("text/plain"), (
        f"/metrics Content-Type is {scrape.content_type!r}, not the Prometheus text format")
    assert "version=0.0.4" in scrape.content_type, (
        f"/metrics Content-Type {scrape.content_type!r} does not name text format 0.0.4")
    for family in scrape.families.values():
        assert family.type in ("counter", "gauge", "histogram", "summary", "info", "stateset",
                               "gaugehistogram", "unknown"), f"{family.name}: type {family.type}"


def test_request_metrics_move_by_exactly_the_requests_made(client, unique_name):
    """Counters and histograms per (method, status) grow by exactly what this test sent."""
    version = mlflow.__version__
    before = client.scrape()
    t0 = time.monotonic()
    experiment_id = client.call("POST", "/api/2.0/mlflow/experiments/create",
                                {"name": unique_name("obs")}, expect=200)["experiment_id"]
    run_id = client.call("POST", "/api/2.0/mlflow/runs/create",
                         {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)},
                         expect=200)["run"]["info"]["run_id"]
    for step in range(4):
        client.call("POST", "/api/2.0/mlflow/runs/log-metric",
                    {"run_id": run_id, "key": "m", "value": step * 1.5, "step": step,
                     "timestamp": int(time.time() * 1000)}, expect=200)
    for _ in range(3):
        client.call("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}",
                    expect=200)
    missing = quote(f"mm-missing-{uuid.uuid4().hex[:8]}")
    for _ in range(2):
        client.call("GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={missing}",
                    expect=404)
    client.call("POST", "/api/2.0/mlflow/runs/log-metric",
                {"run_id": run_id, "key": "m"}, expect=400)  # value and timestamp missing
    client.call("POST", "/api/2.0/mlflow/runs/update",
                {"run_id": run_id, "status": "FINISHED"}, expect=200)
    elapsed = time.monotonic() - t0
    after = client.scrape()

    rows = []
    problems = []
    for (method, status), sent in sorted(client.sent.items()):
        labels = {"method": method, "status": status}
        total = after.value(REQUESTS_TOTAL, **labels) - before.value(REQUESTS_TOTAL, **labels)
        hist = {**labels, VERSION_LABEL: version}
        count = (after.value(f"{DURATION}_count", **hist)
                 - before.value(f"{DURATION}_count", **hist))
        inf = (after.value(f"{DURATION}_bucket", le="+Inf", **hist)
               - before.value(f"{DURATION}_bucket", le="+Inf", **hist))
        seconds = after.value(f"{DURATION}_sum", **hist) - before.value(f"{DURATION}_sum", **hist)
        rows.append({"method": method, "status": status, "sent": sent,
                     f"{REQUESTS_TOTAL} Δ": total, f"{DURATION}_count Δ": count,
                     f"{DURATION}_bucket{{le=+Inf}} Δ": inf, f"{DURATION}_sum Δ": round(seconds, 4)})
        if total != sent:
            problems.append(f"{REQUESTS_TOTAL}{labels} grew by {total:g}, {sent} sent")
        if count != sent or inf != sent:
            problems.append(f"{DURATION}{hist} _count grew by {count:g} and +Inf bucket by "
                            f"{inf:g}, {sent} sent")
        if not 0 < seconds <= elapsed + 1:
            problems.append(f"{DURATION}{hist} _sum grew by {seconds:.4f}s; the {sent} requests "
                            f"took {elapsed:.3f}s in all")
        problems += _bucket_problems(after, hist)
    allure.attach(json.dumps(rows, indent=1), name="metric deltas",
                  attachment_type=allure.attachment_type.JSON)
    print("metric deltas:", json.dumps(rows))
    assert not problems, "Prometheus metrics do not match the requests made:\n  " + \
        "\n  ".join(problems)


def _bucket_problems(scrape: Scrape, labels: dict[str, str]) -> list[str]:
    """Histogram buckets are cumulative: non-decreasing in `le`, ending at `_count`."""
    buckets = sorted(
        ((float(s.labels["le"]), s.value) for s in scrape.samples(f"{DURATION}_bucket")
         if all(s.labels.get(k) == v for k, v in labels.items())), key=lambda b: b[0])
    values = [v for _, v in buckets]
    problems = []
    if values != sorted(values):
        problems.append(f"{DURATION}{labels}: buckets are not cumulative: {buckets}")
    if buckets and buckets[-1][1] != scrape.value(f"{DURATION}_count", **labels):
        problems.append(f"{DURATION}{labels}: +Inf bucket {buckets[-1][1]:g} != _count")
    return problems
