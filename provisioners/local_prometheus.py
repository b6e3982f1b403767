"""A real Prometheus per `local` cell, configured the way COS configures it for the charm.

Charmed MLflow publishes a scrape job on its `metrics-endpoint` relation (prometheus_scrape
interface) and ships alert rules and a Grafana dashboard (recorded per channel in
observability/<channel>/, see its README). On Kubernetes, the COS Prometheus turns the job into
a scrape config (prometheus_k8s lib, `MetricsEndpointConsumer`): the job name gets the
`juju_<model>_<uuid8>_<app>_prometheus_scrape` prefix, each `*:<port>` target becomes the unit's
address with the unit number appended to the job name, the Juju topology becomes target labels
and `instance` is relabelled from it. This module renders that same config for the cell's server
on loopback, loads the charm's rule files unchanged, and runs Debian's `prometheus` with scrape
and rule evaluation every second, on a free loopback port, its data in the cell's temp dir.

The charm's second target, the `mlflow-prometheus-exporter` container (`*:8000`), is an image
built from canonical/mlflow-prometheus-exporter and is not installable from the package
registries, so `local` drops it (docs/observability.md); the suite marks the panels that need it
not applicable.

One owner: the cell's LocalDeployment starts it after the server, retargets it when the server
moves (restart on another port, upgrade), and stops it at teardown; the process is a `Service`
recorded in the run's state file, so signals and the janitor release it like every other part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.system.endpoint import Observability
from harness.system.procs import Service, free_ports
from harness.system.waits import NotYet, Terminal, wait_for
from provisioners.api import RunContext

OBSERVABILITY_DIR = Path(__file__).resolve().parent.parent / "observability"
PROMETHEUS_HINT = "install Prometheus (Debian/Ubuntu: sudo apt-get install prometheus)"
INTERVAL = "1s"          # scrape and rule evaluation: a restart of a few seconds is seen
START_ATTEMPTS = 3
# prometheus_k8s lib (LIBPATCH 47) PrometheusConfig: the keys a provider's job may set
ALLOWED_KEYS = {"job_name", "metrics_path", "static_configs", "scrape_interval", "scrape_timeout",
                "proxy_url", "relabel_configs", "metric_relabel_configs", "sample_limit",
                "label_limit", "label_name_length_limit", "label_value_length_limit", "scheme",
                "basic_auth", "tls_config", "authorization", "params"}
DEFAULT_JOB = {"metrics_path": "/metrics", "static_configs": [{"targets": ["*:80"]}]}
WILDCARD = re.compile(r"\*(?::(\d+))?$")


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if Path(p).exists()), None)


def artefacts_for(channel_slug: str) -> Path | None:
    """The recorded artefacts of a channel (observability/<slug>/), None if none are."""
    root = OBSERVABILITY_DIR / channel_slug
    return root if (root / "source.json").is_file() else None


@dataclass(frozen=True)
class Topology:
    """The Juju topology COS labels the charm's targets with (cosl.JujuTopology)."""

    model: str
    model_uuid: str
    application: str = "mlflow-server"
    unit: str = "mlflow-server/0"
    charm: str = "mlflow-server"

    @classmethod
    def for_run(cls, run_id: str) -> Topology:
        model = re.sub(r"[^a-z0-9-]+", "-", f"mlflow-matrix-{run_id}".lower()).strip("-")
        return cls(model=model, model_uuid=str(uuid.uuid4()))

    @property
    def identifier(self) -> str:
        return f"{self.model}_{self.model_uuid[:8]}_{self.application}".replace("/", "_")

    def labels(self) -> dict[str, str]:
        """label_matcher_dict plus the unit, as a wildcard target gets them."""
        return {"juju_model": self.model, "juju_model_uuid": self.model_uuid,
                "juju_application": self.application, "juju_charm": self.charm,
                "juju_unit": self.unit}


def scrape_configs(jobs: list[Mapping[str, Any]], topology: Topology, ports: Mapping[int, str]
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """The charm's published jobs as COS's Prometheus configures them, for one unit whose
    address for each charm port is `ports[port]` ("127.0.0.1:<free port>"). Returns the scrape
    configs and the targets dropped because no local process serves their port."""
    prefix = f"juju_{topology.identifier}_prometheus_scrape"
    unit_number = topology.unit.rsplit("/", 1)[-1]
    configs: list[dict[str, Any]] = []
    dropped: list[str] = []
    for raw in jobs or [DEFAULT_JOB]:
        job = {**DEFAULT_JOB, **{k: v for k, v in raw.items() if k in ALLOWED_KEYS}}
        job["job_name"] = f"{prefix}_{job['job_name']}" if raw.get("job_name") else prefix
        for static in job.get("static_configs") or []:
            targets = []
            for target in static.get("targets") or []:
                match = WILDCARD.match(str(target))
                if not match:
                    raise ValueError(f"scrape target {target!r} is not a wildcard `*:<port>`; "
                                     "only the charm's own unit can be rendered on loopback")
                port = int(match.group(1) or 80)
                if port in ports:
                    targets.append(ports[port])
                else:
                    dropped.append(str(target))
            if not targets:
                continue
            configs.append({
                **job, "job_name": f"{job['job_name']}-{unit_number}",
                "metrics_path": job.get("metrics_path") or "/metrics",
                "static_configs": [{**static, "targets": targets,
                                    "labels": {**topology.labels(), **static.get("labels", {})}}],
                "relabel_configs": [*job.get("relabel_configs", []), {
                    "source_labels": ["juju_model", "juju_model_uuid", "juju_application",
                                      "juju_unit"],
                    "separator": "_", "target_label": "instance", "regex": "(.*)"}],
            })
    return configs, dropped


class LocalPrometheus:
    """`prometheus` scraping one cell's MLflow server with the charm's job and rules."""

    def __init__(self, root: Path, context: RunContext, timeout: float) -> None:
        self.root = root
        self.context = context
        self.timeout = timeout
        self.topology = Topology.for_run(context.run_id)
        self.port = 0
        self._target: tuple[int, Path] | None = None   # (server port, artefacts) configured
        self.dropped: list[str] = []
        self.service: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "prometheus.yml"

    def logs(self) -> list[Path]:
        return [self.root / "prometheus.log", self.config_path]

    def observe(self, channel_slug: str, server_port: int) -> Observability:
        """What the suite gets to watch the server that just started: Prometheus started on
        first use, retargeted when the server moved or the channel (upgrade) changed."""
        artefacts = artefacts_for(channel_slug)
        if artefacts is None:  # no charm channel ships this release: nothing to configure from
            return Observability()
        if not prometheus_binary():
            return Observability(unavailable="Prometheus is not installed (no `prometheus` on "
                                             f"PATH or in /usr/bin): {PROMETHEUS_HINT}")
        if self.service is None:
            self._start(server_port, artefacts)
        elif (server_port, artefacts) != self._target:
            self._retarget(server_port, artefacts)
        return Observability(prometheus_url=self.url, labels=self.topology.labels(),
                             artefacts=str(artefacts))

    def _write_config(self, server_port: int, artefacts: Path) -> None:
        source = json.loads((artefacts / "source.json").read_text(encoding="utf-8"))
        jobs = json.loads((artefacts / "scrape_jobs.json").read_text(encoding="utf-8"))
        server = int(source["config"]["mlflow_port"])
        configs, self.dropped = scrape_configs(jobs, self.topology,
                                               {server: f"127.0.0.1:{server_port}"})
        config = {
            "global": {"scrape_interval": INTERVAL, "scrape_timeout": INTERVAL,
                       "evaluation_interval": INTERVAL},
            "rule_files": [str(p) for p in sorted((artefacts / "rules").iterdir())],
            "scrape_configs": configs,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML writer needed, and the file reads the same to a reviewer
        self.config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        self._target = (server_port, artefacts)

    def _start(self, server_port: int, artefacts: Path) -> None:
        binary = prometheus_binary()
        assert binary, "observe() checks for the binary"
        self._write_config(server_port, artefacts)
        for attempt in range(1, START_ATTEMPTS + 1):
            (self.port,) = free_ports(1)
            self.service = Service("prometheus", [
                binary, f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn",
            ], log_path=self.root / "prometheus.log", state=self.context.state).start()
            try:
                wait_for(self._probe, what="Prometheus /-/ready", timeout=self.timeout)
                return
            except Terminal:
                self.service.stop()
                if attempt == START_ATTEMPTS or "address already in use" not in \
                        self.service.log_tail(20):
                    raise

    def _retarget(self, server_port: int, artefacts: Path) -> None:
        """The server moved (restart on a new port, upgrade to another channel's charm):
        rewrite the config and reload it (SIGHUP), keeping the series scraped so far."""
        assert self.service and self.service.pid
        self._write_config(server_port, artefacts)
        os.kill(self.service.pid, signal.SIGHUP)
        wanted = [f"127.0.0.1:{server_port}", *(str(p) for p in (artefacts / "rules").iterdir())]

        def reloaded() -> None:
            loaded = json.loads(self._get("/api/v1/status/config"))["data"]["yaml"]
            if not all(w in loaded for w in wanted):
                raise NotYet("configuration not reloaded yet")

        wait_for(reloaded, what="Prometheus to reload its configuration", timeout=self.timeout)

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode("utf-8", errors="replace")

    def _probe(self) -> None:
        assert self.service
        code = self.service.exited()
        if code is not None:
            raise Terminal(f"prometheus exited with code {code}:\n" + self.service.log_tail(12))
        try:
            self._get("/-/ready")
        except OSError as exc:
            raise NotYet(f"not ready yet ({exc})") from None

    def stop(self, grace: float = 5) -> None:
        if self.service:
            self.service.stop(timeout=grace)

