"""Prometheus's HTTP API and the charm's Grafana dashboards, as the observability suite reads them.

The suite judges what a user of the Canonical Observability Stack sees: the target Prometheus
scrapes with the charm's job, the series behind every dashboard panel, the alerts. It asks
Prometheus (never `/metrics` directly) and evaluates each panel's PromQL the way Grafana sends
it: dashboard variables replaced by the cell's Juju topology labels.

Standard library only: it runs in every cell's env, and the harness's unit tests load this file
by path to break the suite on purpose (tests/scenarios/test_prometheus_checks.py).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TIMEOUT = 10.0


class PrometheusUnreachable(AssertionError):
    """Prometheus itself did not answer: the harness's component, named in the failure."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


class Prometheus:
    """The HTTP API of one cell's Prometheus (https://prometheus.io/docs/prometheus/latest/querying/api/)."""

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: Prometheus refused the query itself
            body = json.loads(exc.read() or b"{}")
        except OSError as exc:
            raise PrometheusUnreachable(f"Prometheus at {self.url} did not answer {path}: {exc}") \
                from None
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {params.get('query', path)!r}: "
                                 f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        data = self._get("/api/v1/query", query=expr, time=at)
        if data["resultType"] == "scalar":
            return [Series({}, float(data["result"][1]))]
        return [Series(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
                for r in data["result"]]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", state="active")["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/rules", type="alert")["groups"]

    def alerts(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/alerts")["alerts"]

    def wait_for_scrape(self, job: str, after: float, timeout: float) -> dict[str, Any]:
        """The job's target once a scrape that started after `after` (epoch seconds) is stored:
        from then on every query sees what the server had counted by then. `up` is written in
        the same append as the scraped samples, so its timestamp says when they are in."""
        deadline = time.monotonic() + timeout
        while True:
            stamps = [s.value for s in self.query(f'timestamp(up{{job="{job}"}})')]
            found = [t for t in self.targets() if t["labels"].get("job") == job]
            if stamps and min(stamps) > after and found:
                return found[0]
            if time.monotonic() > deadline:
                state = ", ".join(f"{t['scrapeUrl']} last scraped {t.get('lastScrape')}: "
                                  f"{t.get('health')} {t.get('lastError') or ''}" for t in found)
                raise AssertionError(f"Prometheus did not scrape job {job!r} within {timeout:.0f}s "
                                     f"({state or 'no such target'})")
            time.sleep(0.2)


def longest_zero_run(values: list[tuple[float, float]], step: float = 1.0
                     ) -> tuple[float, float] | None:
    """First and last timestamp of the longest run of consecutive 0 samples of a range query
    (a restart's outage; a lone failed scrape of a busy server is a run of one)."""
    best: tuple[float, float] | None = None
    start = prev = None
    for t, v in values:
        if v == 0:
            start = t if start is None or prev is None or t - prev > step * 1.5 else start
            prev = t
            if best is None or t - start > best[1] - best[0]:
                best = (start, t)
        else:
            start = prev = None
    return best


def rfc3339(stamp: str | None) -> float:
    """Prometheus's timestamps (nanoseconds, 'Z') as epoch seconds; 0 for none."""
    if not stamp or stamp.startswith("0001-"):
        return 0.0
    head, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


# ---------------------------------------------------------------- the charm's artefacts


@dataclass(frozen=True)
class Charm:
    """One channel's recorded observability artefacts (observability/<channel>/, see its README)."""

    root: Path
    source: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> Charm:
        root = Path(root)
        return cls(root, json.loads((root / "source.json").read_text(encoding="utf-8")))

    @property
    def scrape_jobs(self) -> list[dict[str, Any]]:
        return json.loads((self.root / "scrape_jobs.json").read_text(encoding="utf-8"))

    @property
    def rule_files(self) -> list[Path]:
        return sorted((self.root / "rules").iterdir())

    @property
    def dashboards(self) -> dict[str, dict[str, Any]]:
        return {p.name: json.loads(p.read_text(encoding="utf-8"))
                for p in sorted((self.root / "dashboards").iterdir())}

    @property
    def exporter_metrics(self) -> tuple[str, ...]:
        """Metrics only the charm's separate exporter container serves (not the server)."""
        return tuple(self.source["exporter"]["metrics"])

    @property
    def unit_down_alert(self) -> str:
        return str(self.source["unit_down_alert"])


# ---------------------------------------------------------------- dashboards as Grafana runs them


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} › {self.panel} [{self.ref_id}]"


def panel_queries(name: str, dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of every panel, rows' nested panels included."""
    def panels(items: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])

    title = str(dashboard.get("title") or name)
    return [PanelQuery(title, str(p.get("title") or f"panel {p.get('id')}"),
                       str(t.get("refId") or "?"), str(t["expr"]))
            for p in panels(dashboard.get("panels") or [])
            for t in p.get("targets") or [] if t.get("expr")]


# Grafana's variable syntaxes: $var, ${var}, ${var:format}, [[var]], [[var:format]]
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]")
REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def interpolate(expr: str, dashboard: Mapping[str, Any], values: Mapping[str, str],
                builtins: Mapping[str, str]) -> str:
    """`expr` as Grafana sends it to Prometheus with each variable set to one value.

    A multi-value or include-All variable is regex-escaped for PromQL (Grafana's
    prometheusSpecialRegexEscape: `\\` doubled, then `$^*{}[]'+?.()|` backslash-escaped twice
    over, once for the regex and once for the PromQL string). A variable the dashboard does not
    define and the caller cannot set is an error, never an empty string.
    """
    variables = {v["name"]: v for v in (dashboard.get("templating") or {}).get("list") or []}

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in builtins:
            return builtins[name]
        if name not in values:
            raise KeyError(f"{expr!r} uses ${name}, which has no value for this cell "
                           f"(dashboard variables: {', '.join(sorted(variables)) or 'none'})")
        value = values[name]
        spec = variables.get(name, {})
        if spec.get("multi") or spec.get("includeAll"):
            value = REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))
        return value

    return VARIABLE.sub(replace, expr)


def grafana_builtins(scrape_interval: float) -> dict[str, str]:
    """Grafana's global variables for a dashboard viewed over the last hour on this scrape
    interval ($__rate_interval = max($__interval + scrape interval, 4 × scrape interval))."""
    interval = max(int(scrape_interval), 1)
    return {"__interval": f"{interval}s", "__interval_ms": str(interval * 1000),
            "__rate_interval": f"{max(2 * interval, 4 * interval)}s",
            "__range": "1h", "__range_s": "3600", "__range_ms": "3600000"}


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    sent: str
    series: int
    not_applicable: str = ""


def evaluate_panels(prom: Prometheus, queries: list[PanelQuery], resolve: Callable[[PanelQuery], str],
                    *, skip: Callable[[PanelQuery], str] = lambda q: "", timeout: float = 10.0,
                    ) -> list[PanelResult]:
    """Each query's series count, polled until every applicable query has data or `timeout`
    passes (a counter's increase() needs two scrapes of it). `resolve` gives the PromQL as
    Grafana would send it; `skip` a reason a query cannot have data here ("" if it can)."""
    deadline = time.monotonic() + timeout
    while True:
        results = []
        for q in queries:
            reason = skip(q)
            sent = resolve(q)
            count = 0 if reason else len(prom.query(sent))
            results.append(PanelResult(q, sent, count, reason))
        if all(r.series or r.not_applicable for r in results) or time.monotonic() > deadline:
            return results
        time.sleep(0.5)


def empty_panels(results: list[PanelResult]) -> list[str]:
    """One line per panel query that Prometheus answered with no series."""
    return [f"{r.query.name}: no data for {r.sent}" for r in results
            if not r.series and not r.not_applicable]
