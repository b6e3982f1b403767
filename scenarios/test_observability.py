"""Observability as a user of the Canonical Observability Stack sees it.

The charm starts MLflow with `--expose-prometheus`, so `/metrics` is served by the tracking server
itself (prometheus_flask_exporter's GunicornInternalPrometheusMetrics, multiprocess mode: every
worker's samples are summed, the scrape itself is not counted, `/health` and `/version` are
excluded). The charm publishes a scrape job for it on `metrics-endpoint`, ships alert rules and
a Grafana dashboard (recorded per channel in observability/<channel>/).

Where the platform runs a Prometheus for the cell (`local`: provisioners/local_prometheus.py,
configured with the charm's own job and rules), the suite asks that Prometheus:
- the target is up with the charm's job name and Juju topology labels;
- request counters and histograms grew by exactly what this suite sent, per method and status;
- every alert rule of the charm is loaded and evaluates without error;
- every PromQL query of every dashboard panel, with the dashboard's variables set to the cell's
  labels as Grafana would send it, returns data after the traffic;
- after the restart phase: the unit-down alert went pending while the server was stopped, and
  resolved once it was back.
Without a Prometheus (external platforms) only the direct checks of `/metrics` run; with one
expected but not installed, the Prometheus checks skip with the install hint.

Expected values are what this suite sent, request by request, and the charm's recorded
artefacts; metric and label names are release rules (scenarios/_rules.py).
"""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import allure
import pytest
from _prometheus import (
    Charm,
    PanelQuery,
    Prometheus,
    empty_panels,
    evaluate_panels,
    grafana_builtins,
    interpolate,
    longest_zero_run,
    panel_queries,
)
from _rules import not_applicable, rule

from harness.system.endpoint import Endpoint

TIMEOUT = 10.0
SCRAPE_WAIT = 15.0     # seconds for Prometheus to scrape once more (it scrapes every second)
RESOLVE_WAIT = 30.0    # seconds for a resolved alert to leave Prometheus's active alerts


@dataclass(frozen=True)
class Names:
    """The exporter's metric and label names for the server's release (scenarios/_rules.py)."""

    requests: str
    duration: str
    version_label: str

    @classmethod
    def of(cls, version: str) -> Names:
        return cls(rule("metric_requests_total", version), rule("metric_request_duration", version),
                   rule("metric_version_label", version))


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


# ---------------------------------------------------------------- two ways to read the counters


class Snapshot:
    """Counter and histogram values at one moment, summed over the samples matching labels."""

    def __init__(self, samples: list[tuple[str, dict[str, str], float]]) -> None:
        self.samples = samples

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, have, v in self.samples
                   if n == name and all(have.get(k) == w for k, w in labels.items()))

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        return sorted(((float(have["le"]), v) for n, have, v in self.samples
                       if n == f"{name}_bucket" and all(have.get(k) == w
                                                         for k, w in labels.items())),
                      key=lambda b: b[0])


def direct_snapshot(client: Client) -> tuple[Snapshot, str, str]:
    """GET /metrics parsed with prometheus_client (platforms without a Prometheus)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, data, content_type = client.raw("GET", "/metrics")
    assert status == 200, (f"GET /metrics answered {status}: the server does not expose "
                           f"Prometheus metrics where the charm serves them ({data[:200]!r})")
    text = data.decode("utf-8")
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError and friends on bad input
        raise AssertionError(f"/metrics is not valid Prometheus text format: {exc}") from None
    samples = [(s.name, dict(s.labels), s.value) for f in families for s in f.samples]
    return Snapshot(samples), content_type, text


def prometheus_snapshot(prom: Prometheus, job: str, names: Names, after: float) -> Snapshot:
    """The job's request series once Prometheus has scraped after `after` (epoch seconds)."""
    prom.wait_for_scrape(job, after, SCRAPE_WAIT)
    wanted = "|".join(re.escape(n) for n in (names.requests, f"{names.duration}_count",
                                             f"{names.duration}_sum", f"{names.duration}_bucket"))
    series = prom.query(f'{{__name__=~"{wanted}",job="{job}"}}')
    return Snapshot([(s.labels["__name__"], s.labels, s.value) for s in series])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client(endpoint: Endpoint) -> Client:
    return Client(endpoint.tracking_uri)


@pytest.fixture(scope="module")
def names(endpoint: Endpoint) -> Names:
    return Names.of(endpoint.mlflow_version)


@pytest.fixture(scope="module")
def prom(endpoint: Endpoint) -> Prometheus | None:
    """The cell's Prometheus, None where the platform runs none; a skip (with the install hint)
    where it would run one but cannot here."""
    obs = endpoint.observability
    if obs and obs.unavailable:
        pytest.skip(obs.unavailable)
    if obs and not obs.prometheus_url:
        not_applicable(f"no Charmed MLflow channel ships MLflow {endpoint.mlflow_version}: no "
                       "recorded charm scrape job, rules or dashboards to configure Prometheus "
                       "from (observability/README.md)")
    return Prometheus(obs.prometheus_url) if obs and obs.prometheus_url else None


@pytest.fixture(scope="module")
def need_prom(prom: Prometheus | None) -> Prometheus:
    if prom is None:
        pytest.skip("this platform runs no Prometheus for the cell (only local platforms do): "
                    "the direct /metrics checks ran instead")
    return prom


@pytest.fixture(scope="module")
def charm(endpoint: Endpoint, need_prom: Prometheus) -> Charm:
    """The charm's artefacts Prometheus was configured from (observability/<channel>/)."""
    obs = endpoint.observability
    assert obs and obs.artefacts, f"a Prometheus without the charm's artefacts: {obs}"
    return Charm.load(obs.artefacts)


@pytest.fixture(scope="module")
def job(endpoint: Endpoint, need_prom: Prometheus, charm: Charm) -> str:
    """The scrape job Prometheus runs for the charm: the one whose target carries the cell's
    Juju unit (the exporter's target, where it runs, carries it too)."""
    unit = endpoint.observability.labels["juju_unit"]
    deadline = time.monotonic() + SCRAPE_WAIT
    while True:
        jobs = sorted({t["labels"]["job"] for t in need_prom.targets()
                       if t["labels"].get("juju_unit") == unit})
        if jobs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(jobs) == 1, f"Prometheus runs {len(jobs)} jobs for unit {unit}: {jobs}"
    return jobs[0]


@dataclass(frozen=True)
class Traffic:
    sent: Counter[tuple[str, str]]
    elapsed: float
    before: Snapshot
    after: Snapshot


def send_traffic(client: Client, snapshot: Callable[[float], Snapshot], name: str) -> Traffic:
    """A known mix of requests on a private experiment: 200s, 404s and a 400, GET and POST."""
    before = snapshot(time.time())
    t0 = time.monotonic()
    experiment_id = client.call("POST", "/api/2.0/mlflow/experiments/create",
                                {"name": name}, expect=200)["experiment_id"]
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
    return Traffic(Counter(client.sent), elapsed, before, snapshot(time.time()))


@pytest.fixture(scope="module")
def traffic(client: Client, prom: Prometheus | None, names: Names, request: pytest.FixtureRequest,
            unique_name_module: str) -> Traffic:
    if prom is None:
        return send_traffic(client, lambda _: direct_snapshot(client)[0], unique_name_module)
    job_name = request.getfixturevalue("job")
    return send_traffic(client, lambda t: prometheus_snapshot(prom, job_name, names, t),
                        unique_name_module)


@pytest.fixture(scope="module")
def unique_name_module() -> str:
    return f"mm-observability-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- the tests


def test_metrics_endpoint_serves_prometheus_text(client):
    _, content_type, text = direct_snapshot(client)
    allure.attach(text, name="/metrics", attachment_type=allure.attachment_type.TEXT)
    assert content_type.startswith("text/plain"), (
        f"/metrics Content-Type is {content_type!r}, not the Prometheus text format")
    assert "version=0.0.4" in content_type, (
        f"/metrics Content-Type {content_type!r} does not name text format 0.0.4")


def test_prometheus_scrapes_the_server_with_the_charms_job(endpoint, need_prom, charm, job):
    """The target is up, scraped on the charm's metrics path, with the charm's job name and the
    cell's Juju topology; a target that is down fails with Prometheus's own reason."""
    labels = endpoint.observability.labels
    # a lone scrape past its 1 s timeout (a busy server on a loaded machine) is not "down":
    # the target must be up again within SCRAPE_WAIT
    deadline = time.monotonic() + SCRAPE_WAIT
    target = need_prom.wait_for_scrape(job, 0, SCRAPE_WAIT)
    while target["health"] != "up" and time.monotonic() < deadline:
        time.sleep(0.5)
        target = need_prom.wait_for_scrape(job, 0, SCRAPE_WAIT)
    allure.attach(json.dumps(target, indent=1), name="Prometheus target",
                  attachment_type=allure.attachment_type.JSON)
    path = urlparse(target["scrapeUrl"]).path
    assert target["health"] == "up", (
        f"Prometheus cannot scrape the server with the charm's job {job!r}: {target['scrapeUrl']} "
        f"is {target['health']}: {target.get('lastError')}")
    expected_paths = {j.get("metrics_path") or "/metrics" for j in charm.scrape_jobs}
    assert path in expected_paths, f"scraped {path}, the charm publishes {sorted(expected_paths)}"
    prefix = (f"juju_{labels['juju_model']}_{labels['juju_model_uuid'][:8]}_"
              f"{labels['juju_application']}_prometheus_scrape")
    assert job.startswith(prefix), f"job {job!r} is not named as COS names the charm's job ({prefix}…)"
    missing = {k: v for k, v in labels.items() if target["labels"].get(k) != v}
    assert not missing, f"the target lacks the cell's Juju topology labels {missing}"
    (up,) = need_prom.query(f'up{{job="{job}",juju_unit="{labels["juju_unit"]}"}}') or [None]
    assert up is not None and up.value == 1, f"up for job {job!r} is {up}"


def test_request_metrics_move_by_exactly_the_requests_made(traffic, names, endpoint):
    """Counters and histograms per (method, status) grow by exactly what this suite sent."""
    version = endpoint.mlflow_version
    before, after = traffic.before, traffic.after
    rows, problems = [], []
    for (method, status), sent in sorted(traffic.sent.items()):
        labels = {"method": method, "status": status}
        hist = {**labels, names.version_label: version}
        total = after.value(names.requests, **labels) - before.value(names.requests, **labels)
        count = (after.value(f"{names.duration}_count", **hist)
                 - before.value(f"{names.duration}_count", **hist))
        inf = (after.value(f"{names.duration}_bucket", le="+Inf", **hist)
               - before.value(f"{names.duration}_bucket", le="+Inf", **hist))
        seconds = (after.value(f"{names.duration}_sum", **hist)
                   - before.value(f"{names.duration}_sum", **hist))
        rows.append({"method": method, "status": status, "sent": sent,
                     f"{names.requests} Δ": total, f"{names.duration}_count Δ": count,
                     f"{names.duration}_bucket{{le=+Inf}} Δ": inf,
                     f"{names.duration}_sum Δ": round(seconds, 4)})
        if total != sent:
            problems.append(f"{names.requests}{labels} grew by {total:g}, {sent} sent")
        if count != sent or inf != sent:
            problems.append(f"{names.duration}{hist} _count grew by {count:g} and +Inf bucket by "
                            f"{inf:g}, {sent} sent")
        if not 0 < seconds <= traffic.elapsed + 1:
            problems.append(f"{names.duration}{hist} _sum grew by {seconds:.4f}s; the {sent} "
                            f"requests took {traffic.elapsed:.3f}s in all")
        buckets = after.buckets(names.duration, **hist)
        values = [v for _, v in buckets]
        if values != sorted(values):
            problems.append(f"{names.duration}{hist}: buckets are not cumulative: {buckets}")
    allure.attach(json.dumps(rows, indent=1), name="metric deltas",
                  attachment_type=allure.attachment_type.JSON)
    print("metric deltas:", json.dumps(rows))
    assert not problems, "request metrics do not match the requests made:\n  " + \
        "\n  ".join(problems)


def test_the_charms_alert_rules_are_loaded_and_healthy(need_prom, charm):
    """Every alert of every rule file the charm ships is loaded and evaluates without error."""
    shipped = {}
    for path in charm.rule_files:
        shipped.update({a: path.name for a in re.findall(r"^\s*- alert:\s*(\S+)",
                                                        path.read_text(encoding="utf-8"), re.M)})
    loaded = {r["name"]: r for g in need_prom.rule_groups() for r in g["rules"]}
    missing = sorted(set(shipped) - set(loaded))
    assert not missing, f"alert rules the charm ships but Prometheus did not load: {missing}"
    broken = {n: loaded[n].get("lastError") for n in shipped if loaded[n].get("health") == "err"}
    assert not broken, f"alert rules that fail to evaluate: {broken}"
    print("alert rules loaded:", json.dumps({n: loaded[n]["health"] for n in sorted(shipped)}))


def test_every_dashboard_panel_has_data(endpoint, need_prom, charm, traffic):
    """Each PromQL query of each panel of the charm's dashboards, as Grafana sends it for this
    cell, returns at least one series after the traffic. Panels fed only by the charm's separate
    exporter container are not applicable where it does not run (named, never passed)."""
    values = {k: v for k, v in endpoint.observability.labels.items()}
    exporter_runs = _exporter_runs(need_prom, endpoint)
    boards = charm.dashboards
    queries = [q for name, board in boards.items() for q in panel_queries(name, board)]
    assert queries, f"the charm's dashboards {sorted(boards)} have no PromQL query"
    by_title = {str(b.get("title") or n): b for n, b in boards.items()}
    builtins = grafana_builtins(1)

    def resolve(q: PanelQuery) -> str:
        return interpolate(q.expr, by_title[q.dashboard], values, builtins)

    def skip(q: PanelQuery) -> str:
        needs = [m for m in charm.exporter_metrics if re.search(rf"\b{re.escape(m)}\b", q.expr)]
        if needs and not exporter_runs:
            return (f"reads {', '.join(needs)} from the charm's mlflow-prometheus-exporter "
                    "container, which this platform does not run")
        return ""

    results = evaluate_panels(need_prom, queries, resolve, skip=skip, timeout=SCRAPE_WAIT)
    table = [{"panel": r.query.name, "promql": r.sent, "series": r.series,
              "not applicable": r.not_applicable} for r in results]
    allure.attach(json.dumps(table, indent=1), name="dashboard panels",
                  attachment_type=allure.attachment_type.JSON)
    print("dashboard panels:", json.dumps({
        "evaluated": len(results), "with data": sum(1 for r in results if r.series),
        "empty": [r.query.name for r in results if not r.series and not r.not_applicable],
        "not applicable": [r.query.name for r in results if r.not_applicable]}))
    empty = empty_panels(results)
    assert not empty, "dashboard panels with no data in Prometheus:\n  " + "\n  ".join(empty)
    skipped = sorted({f"{r.query.dashboard} › {r.query.panel}: {r.not_applicable}"
                      for r in results if r.not_applicable})
    if skipped:
        allure.dynamic.description("Not applicable here:\n" + "\n".join(skipped))


def _exporter_runs(prom: Prometheus, endpoint: Endpoint) -> bool:
    """Whether Prometheus scrapes a second target for the unit (the exporter's port)."""
    server = urlparse(endpoint.tracking_uri)
    unit = endpoint.observability.labels["juju_unit"]
    urls = [urlparse(t["scrapeUrl"]) for t in prom.targets()
            if t["labels"].get("juju_unit") == unit]
    return any(u.port != server.port for u in urls)


@pytest.mark.phase("after-restart")
def test_unit_down_alert_pends_while_the_server_is_stopped_and_resolves(need_prom, charm, job):
    """The restart phase stopped the server: Prometheus saw the target down, the charm's
    unit-down alert went pending (its `for:` outlasts a restart, so firing would be wrong) or
    firing, and it is resolved now that the server is back."""
    alert = charm.unit_down_alert
    now = time.time()
    ups = need_prom.query_range(f'up{{job="{job}"}}', now - 3600, now, 1)
    runs = [r for r in (longest_zero_run(values) for _, values in ups) if r]
    assert runs, (f"Prometheus saw no failed scrape of job {job!r} in the last hour: the restart "
                  "phase did not stop the server, or Prometheus did not watch it")
    down, up_again = max(runs, key=lambda r: r[1] - r[0])
    states = need_prom.query_range(
        f'ALERTS{{alertname="{alert}",job="{job}"}}', down - 5, now, 1)
    active = {labels["alertstate"]: [t for t, _ in values if down <= t <= up_again + 5]
              for labels, values in states}
    active = {state: ts for state, ts in active.items() if ts}
    since = time.strftime("%H:%M:%S", time.gmtime(down))
    assert active, (f"{alert} never went pending or firing while job {job!r} was down "
                    f"({up_again - down + 1:.0f} s of failed scrapes from {since} UTC)")
    deadline = time.monotonic() + RESOLVE_WAIT
    while any(a["labels"].get("alertname") == alert and a["labels"].get("job") == job
              for a in need_prom.alerts()):
        assert time.monotonic() < deadline, (
            f"{alert} is still active {RESOLVE_WAIT:.0f}s after the server came back")
        time.sleep(0.5)
    # the figures from Prometheus's own timeline (1 s steps), not from when this test ran
    seen = sorted(t for ts in active.values() for t in ts)
    back = min((t for _, values in ups for t, v in values if v == 1 and t > up_again),
               default=None)
    assert back is not None, f"job {job!r} has no successful scrape after the outage"
    figures = {"alert": alert, "states": sorted(active), "down_for_s": round(back - down),
               "active_after_outage_start_s": round(seen[0] - down, 1),
               "active_for_s": round(seen[-1] - seen[0] + 1, 1),
               "resolved_after_server_back_s": round(seen[-1] + 1 - back, 1)}
    allure.attach(json.dumps(figures, indent=1), name="unit-down alert",
                  attachment_type=allure.attachment_type.JSON)
    print("unit-down alert:", json.dumps(figures))

