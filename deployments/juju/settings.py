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
# The COS consumer related to mlflow-server so its relation data can be read (issue 13); endpoint
# names: mlflow-operator docs/how-to/integrate-cos.rst, grafana-agent-k8s-operator k8s_metadata.yaml.
COS_AGENT_APP = "grafana-agent-k8s"
COS_AGENT_UNIT = f"{COS_AGENT_APP}/0"
COS_INTEGRATIONS = ((f"{SERVER_APP}:metrics-endpoint", f"{COS_AGENT_APP}:metrics-endpoint"),
                    (f"{SERVER_APP}:grafana-dashboard",
                     f"{COS_AGENT_APP}:grafana-dashboards-consumer"))


@dataclass(frozen=True)
class JujuSettings:
    """Juju and bundle settings every Kubernetes platform accepts in its matrix.yaml entry.

    Provisioner `Settings` dataclasses inherit these fields, so `matrix.yaml` validation knows
    their names and types.
    """

    access: Literal["nodeport", "loadbalancer", "port-forward"] = "nodeport"
    blocked_grace: int = 300          # seconds a unit may stay `blocked` before the wait fails
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
    cos_check: bool = True            # relate grafana-agent-k8s and check the COS relation data
    cos_agent_channel: str = "latest/stable"  # channel of that grafana-agent-k8s


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
