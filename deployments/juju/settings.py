"""Juju and bundle settings every Kubernetes platform accepts, and the bundle's names.

Pure data: importing it loads neither jubilant nor lightkube (matrix.yaml validation uses it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

SERVER_APP = "mlflow-server"
MINIO_APP = "mlflow-minio"
MYSQL_APP = "mlflow-mysql"
BUNDLE_APPS = (MINIO_APP, MYSQL_APP, SERVER_APP)
# `juju refresh` order of the documented upgrade (docs/how-to/manage/upgrade/*.rst upstream).
REFRESH_ORDER = (MINIO_APP, SERVER_APP)
OBJECT_STORAGE_ENDPOINT = "object-storage"
MINIO_ARTIFACT_SECRET = "mlflow-server-minio-artifact"  # created only with resource-dispatcher
DEFAULT_DEPLOY_TIMEOUT = 1800
DEFAULT_TEARDOWN_TIMEOUT = 600
FORCE_DESTROY_STEP_TIMEOUT = 120
STATUS_LOG_ENTRIES = 25
STATUS_RETRIES = 3  # failed `juju status` calls in a row tolerated while waiting
# A juju client finding its store lock held by another juju process (parallel cells share one
# client store; jubilant#192) retries this often, LOCK_BACKOFF seconds apart, then fails.
LOCK_RETRIES = 5
LOCK_BACKOFF = 0.5
LOCK_ERROR = "cannot acquire lock file"
# The charm's fixed NodePorts (mlflow-operator config.yaml): one model per cluster can have them.
SERVER_NODEPORT_OPTION = "enable_mlflow_nodeport"
SERVER_NODEPORTS = (31380, 31381)
# The COS consumer related to mlflow-server so its relation data can be read (issues 13, 21):
# opentelemetry-collector-k8s (what Canonical relates now; grafana-agent-k8s reaches end of life
# at the end of 2026) or grafana-agent-k8s. Both require `metrics-endpoint` (prometheus_scrape)
# and `grafana-dashboards-consumer` (grafana_dashboard): opentelemetry-collector-k8s-operator
# charmcraft.yaml, grafana-agent-k8s-operator k8s_metadata.yaml.
COS_AGENTS = {"opentelemetry-collector-k8s": "2/stable", "grafana-agent-k8s": "latest/stable"}
# Messages after which a unit never recovers on its own (fail at once, grace or not): the
# charm's own words for a setting only a person can change (mlflow-operator src/charm.py).
TERMINAL_MESSAGES = (r"Set create_default_artifact_root_if_missing=True",)


def cos_agent_unit(agent: str) -> str:
    return f"{agent}/0"


def cos_integrations(agent: str) -> tuple[tuple[str, str], ...]:
    return ((f"{SERVER_APP}:metrics-endpoint", f"{agent}:metrics-endpoint"),
            (f"{SERVER_APP}:grafana-dashboard", f"{agent}:grafana-dashboards-consumer"))


@dataclass(frozen=True)
class JujuSettings:
    """Juju and bundle settings every Kubernetes platform accepts in its matrix.yaml entry.

    Provisioner `Settings` dataclasses inherit these fields, so `matrix.yaml` validation knows
    their names and types.
    """

    access: Literal["nodeport", "loadbalancer", "port-forward"] = "nodeport"
    # seconds a unit may stay `blocked` / in `error` before the wait fails: Juju retries failed
    # hooks (backoff up to 5 min) and re-runs update-status every 5 min, so one interval is not
    # enough to tell a transient state from a stuck one; terminal_messages fail at once
    blocked_grace: int = 900
    error_grace: int = 600
    terminal_messages: tuple[str, ...] = TERMINAL_MESSAGES   # regexes, searched in a message
    poll_interval: float = 5.0        # seconds between `juju status` polls
    successes: int = 3                # consecutive healthy polls that end the wait
    bootstrap_timeout: int = 1200     # deadline of `juju bootstrap`
    command_timeout: int = 600        # deadline of any other Juju command
    endpoint_timeout: int = 300       # deadline for the Services and GET /version to answer
    storage_class: str = ""           # `juju add-k8s --storage`; empty: let Juju detect it
    # `juju bootstrap --config controller-service-type=…`: `cluster` keeps the controller off a
    # cloud load balancer (clouds bill for it and it can outlive a failed teardown)
    controller_service_type: Literal["", "cluster", "loadbalancer", "external"] = ""
    minio_channel: str = "ckf-1.10/stable"   # used only for channels without a bundle
    mysql_channel: str = "8.0/stable"        # used only for channels without a bundle
    debug_log_lines: int = 5000       # newest `juju debug-log --replay` lines kept in diagnostics
    cos_check: bool = True            # relate a COS agent and check the COS relation data
    cos_agent: Literal["opentelemetry-collector-k8s", "grafana-agent-k8s"] = \
        "opentelemetry-collector-k8s"
    cos_agent_channel: str = ""       # empty: the agent's channel in COS_AGENTS
    # keep the charm's fixed NodePorts 31380/31381 (`enable_mlflow_nodeport`): only one model
    # per cluster gets them, the others keep Juju's placeholder port; off, every cell gets a
    # NodePort Service of its own when `access: nodeport`
    server_nodeport: bool = False

    @property
    def agent_channel(self) -> str:
        return self.cos_agent_channel or COS_AGENTS[self.cos_agent]


def juju_settings(settings: Any) -> JujuSettings:
    """The Juju fields of a provisioner's settings (defaults for the fields it lacks)."""
    if isinstance(settings, JujuSettings) and type(settings) is JujuSettings:
        return settings
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(JujuSettings)
              if hasattr(settings, f.name)}
    return JujuSettings(**values)


def bootstrap_config(settings: JujuSettings) -> tuple[str, ...]:
    """`--config` values of `juju bootstrap` the platform's settings ask for."""
    if settings.controller_service_type:
        return (f"controller-service-type={settings.controller_service_type}",)
    return ()
