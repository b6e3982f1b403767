"""GKE: one labelled zonal cluster per run, through the `google-cloud-container` SDK (REST).

Why the SDK and not `gcloud`: it is a pip dependency that installs the same everywhere (a user's
laptop or CI runner may have no Cloud SDK, and `gcloud container clusters get-credentials`
writes a kubeconfig that needs the `gke-gcloud-auth-plugin` binary); it gives typed Operation
and Cluster objects to poll, and takes credentials from google-auth's Application Default
Credentials like every Google client. Deleting the cluster deletes its node pools and node VMs.

Juju gets a kubeconfig with a static access token (the strictly-confined juju snap cannot run
exec plugins; `juju add-k8s` stores its own service-account token anyway), the cluster's
endpoint and CA from the cluster resource.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, InfrastructureError, MatrixError

PUBLIC_API = "https://container.googleapis.com"
RUN_LABEL = "mlflow-matrix-run"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
CREDENTIALS_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (or a workload identity "
    "federation config), or run `gcloud auth application-default login`; set the project with "
    "CLOUDSDK_CORE_PROJECT or GOOGLE_CLOUD_PROJECT (or `project:` in matrix.yaml); the identity "
    "needs the role in docs/platforms.md (GKE)")
CAPACITY_MARKERS = ("quota", "ZONE_RESOURCE_POOL_EXHAUSTED", "GCE_STOCKOUT",
                    "does not have enough resources", "RESOURCE_EXHAUSTED")


class GcpCredentialsError(ConfigError):
    """No usable Google credentials or project (exit 2, before anything is created)."""


class GcpCapacityError(InfrastructureError):
    """Quota or zone stockout: another machine type or zone, or a quota increase."""


@dataclass(frozen=True)
class GkeSpec:
    project: str
    location: str          # a zone: a zonal cluster has one control plane, in that zone
    cluster: str
    kubernetes_version: str
    machine_type: str
    node_count: int
    labels: Mapping[str, str]
    disk_size_gb: int = 100

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/clusters/{self.cluster}"

    def cluster_body(self) -> dict[str, Any]:
        """The Cluster message (proto field names)."""
        return {
            "name": self.cluster,
            "initial_cluster_version": self.kubernetes_version,
            "resource_labels": dict(self.labels),
            "node_pools": [{
                "name": "default-pool",
                "initial_node_count": self.node_count,
                "config": {"machine_type": self.machine_type, "disk_size_gb": self.disk_size_gb,
                           "disk_type": "pd-balanced", "oauth_scopes": list(SCOPES),
                           "resource_labels": dict(self.labels)},
                "management": {"auto_repair": True, "auto_upgrade": True},
            }],
        }


@dataclass(frozen=True)
class SweptCluster:
    name: str
    location: str
    run_id: str
    expires: str
    deleted: bool
    error: str = ""


def default_credentials(project: str = "", env: Mapping[str, str] = os.environ) -> tuple[Any, str]:
    """google-auth ADC, refreshed once (a missing, revoked or expired identity fails here, in
    seconds, before anything is created); the project from settings, CLOUDSDK_CORE_PROJECT, or
    what ADC found."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError
    from google.auth.transport.requests import Request

    try:
        credentials, found = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise GcpCredentialsError(f"no Google credentials: {_first_line(exc)}",
                                  hint=CREDENTIALS_HINT) from None
    project = project or env.get("CLOUDSDK_CORE_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") \
        or found or ""
    if not project:
        raise GcpCredentialsError("no Google Cloud project", hint=CREDENTIALS_HINT)
    try:
        credentials.refresh(Request())
    except (RefreshError, TransportError) as exc:
        raise GcpCredentialsError(f"Google credentials do not work: {_first_line(exc)}",
                                  hint=CREDENTIALS_HINT) from None
    return credentials, project


def access_token(credentials: Any) -> str:
    from google.auth.transport.requests import Request

    if not credentials.valid:
        credentials.refresh(Request())
    return str(credentials.token)


def kubeconfig(cluster: Any, token: str, name: str) -> str:
    """A kubeconfig with a static bearer token: no exec plugin for the juju snap to fail on."""
    import yaml

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {
            "server": f"https://{cluster.endpoint}",
            "certificate-authority-data": cluster.master_auth.cluster_ca_certificate}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }, sort_keys=False)


class GkeClient:
    """The GKE API calls of a run; every operation is polled to DONE with a deadline."""

    def __init__(self, credentials: Any, project: str, *, endpoint: str = PUBLIC_API,
                 poll_interval: float = 10.0, call_timeout: float = 60.0) -> None:
        from google.cloud.container_v1 import ClusterManagerClient
        from google.cloud.container_v1.services.cluster_manager.transports.rest import (
            ClusterManagerRestTransport,
        )

        scheme, _, host = endpoint.rstrip("/").partition("://")
        transport = ClusterManagerRestTransport(host=host, credentials=credentials,
                                                url_scheme=scheme or "https")
        self.client = ClusterManagerClient(transport=transport)
        self.credentials = credentials
        self.project = project
        self.poll_interval = poll_interval
        self.call_timeout = call_timeout

    # ------------------------------------------------------------------ create
    def create(self, spec: GkeSpec, *, timeout: float, progress: Callable[[str], None],
               on_cluster: Callable[[], None] = lambda: None) -> Any:
        """Create the cluster and wait until it runs; returns the Cluster. `on_cluster` runs
        before the create call, so the run state names the cluster if this process dies."""
        from google.api_core.exceptions import GoogleAPICallError
        from google.cloud.container_v1 import Cluster

        deadline = time.monotonic() + timeout
        on_cluster()
        progress(f"creating GKE cluster {spec.cluster} in {spec.location} (Kubernetes "
                 f"{spec.kubernetes_version}, {spec.node_count} x {spec.machine_type}); "
                 "this takes 5-10 minutes")
        what = f"creating GKE cluster {spec.cluster}"
        try:
            op = self.client.create_cluster(parent=spec.parent, cluster=Cluster(spec.cluster_body()),
                                            timeout=self.call_timeout)
        except GoogleAPICallError as exc:
            raise self._error(what, exc) from None
        self._wait(op, spec, what, deadline, progress, watch_cluster=True)
        cluster = self.get(spec.name)
        if cluster is None or cluster.status.name != "RUNNING":
            state = cluster.status.name if cluster else "gone"
            raise InfrastructureError(f"{what}: the cluster is {state}, not RUNNING")
        return cluster

    def get(self, name: str) -> Any:
        from google.api_core.exceptions import GoogleAPICallError, NotFound

        try:
            return self.client.get_cluster(name=name, timeout=self.call_timeout)
        except NotFound:
            return None
        except GoogleAPICallError as exc:
            raise self._error(f"reading cluster {name}", exc) from None

    # ------------------------------------------------------------------ delete
    def delete(self, spec_or_name: GkeSpec | str, *, timeout: float,
               progress: Callable[[str], None]) -> None:
        """Delete the cluster (its node pools and nodes go with it) and wait; idempotent."""
        from google.api_core.exceptions import FailedPrecondition, GoogleAPICallError, NotFound

        name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
        deadline = time.monotonic() + timeout
        what = f"deleting GKE cluster {name.rsplit('/', 1)[-1]}"
        cluster = self.get(name)
        if cluster is None:
            return
        progress(what)
        op = None
        try:
            op = self.client.delete_cluster(name=name, timeout=self.call_timeout)
        except NotFound:
            return
        except FailedPrecondition:
            op = None      # already being deleted (a `down` after an interrupted `down`)
        except GoogleAPICallError as exc:
            raise self._error(what, exc) from None
        location = name.split("/")[3]
        if op is not None:
            self._wait(op, location, what, deadline, progress)
        while self.get(name) is not None:
            if time.monotonic() > deadline:
                raise InfrastructureError(f"{what}: the cluster is still there (deadline)",
                                          hint="raise down_timeout in matrix.yaml or delete it "
                                               "in the console")
            time.sleep(self.poll_interval)

    # ------------------------------------------------------------------ janitor
    def labelled_clusters(self) -> Iterator[Any]:
        """Clusters of the project in every location carrying the run label, and no others."""
        from google.api_core.exceptions import GoogleAPICallError

        try:
            found = self.client.list_clusters(parent=f"projects/{self.project}/locations/-",
                                              timeout=self.call_timeout)
        except GoogleAPICallError as exc:
            raise self._error(f"listing the clusters of project {self.project}", exc) from None
        for cluster in found.clusters:
            if dict(cluster.resource_labels).get(RUN_LABEL):
                yield cluster

    def sweep(self, is_due: Callable[[Mapping[str, str]], bool], *, dry_run: bool, timeout: float,
              progress: Callable[[str], None]) -> list[SweptCluster]:
        swept = []
        for cluster in self.labelled_clusters():
            labels = dict(cluster.resource_labels)
            if not is_due(labels):
                continue
            item = dict(name=cluster.name, location=cluster.location, run_id=labels[RUN_LABEL],
                        expires=labels.get("mlflow-matrix-expires", ""))
            if dry_run:
                swept.append(SweptCluster(**item, deleted=False))
                continue
            name = f"projects/{self.project}/locations/{cluster.location}/clusters/{cluster.name}"
            try:
                self.delete(name, timeout=timeout, progress=progress)
                swept.append(SweptCluster(**item, deleted=True))
            except MatrixError as exc:
                swept.append(SweptCluster(**item, deleted=False, error=exc.message))
        return swept

    # ------------------------------------------------------------------ waiting
    def _wait(self, op: Any, where: GkeSpec | str, what: str, deadline: float,
              progress: Callable[[str], None], watch_cluster: bool = False) -> None:
        """Poll the operation until DONE; an operation error or a cluster in ERROR ends it."""
        from google.api_core.exceptions import GoogleAPICallError

        location = where if isinstance(where, str) else where.location
        op_name = f"projects/{self.project}/locations/{location}/operations/{op.name}"
        started = last_report = time.monotonic()
        while True:
            if op.status.name == "DONE":
                break
            if watch_cluster and isinstance(where, GkeSpec):
                cluster = self.get(where.name)
                if cluster is not None and cluster.status.name == "ERROR":
                    with contextlib.suppress(GoogleAPICallError):   # the operation says why
                        op = self.client.get_operation(name=op_name, timeout=self.call_timeout)
                    if op.status.name != "DONE":
                        raise InfrastructureError(f"{what}: cluster status ERROR: "
                                                  f"{cluster.status_message or op.status_message}")
                    break
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"{what}: operation {op.name} still {op.status.name} after "
                    f"{int(time.monotonic() - started)} s (deadline)",
                    hint="raise up_timeout/down_timeout in matrix.yaml, or look at the "
                         "operation in the console")
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
            try:
                op = self.client.get_operation(name=op_name, timeout=self.call_timeout)
            except GoogleAPICallError as exc:
                raise self._error(what, exc) from None
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                progress(f"{what}: {op.status.name} ({int(time.monotonic() - started)} s)")
        if op.error and (op.error.code or op.error.message):
            message = op.error.message or op.status_message
            if any(m.lower() in message.lower() for m in CAPACITY_MARKERS):
                raise GcpCapacityError(f"{what}: {message}", hint=_CAPACITY_HINT)
            raise InfrastructureError(f"{what}: {message}")

    def _error(self, what: str, exc: Any) -> MatrixError:
        message = _first_line(getattr(exc, "message", None) or exc)
        text = f"{what}: {message}"[:600]
        code = getattr(exc, "code", None)
        if any(m.lower() in message.lower() for m in CAPACITY_MARKERS) or code == 429:
            return GcpCapacityError(text, hint=_CAPACITY_HINT)
        if code in (401, 403):
            return GcpCredentialsError(text, hint=CREDENTIALS_HINT)
        return InfrastructureError(text)


_CAPACITY_HINT = ("pick another machine_type or zone for the platform in matrix.yaml, or request "
                  "a quota increase (console → IAM & Admin → Quotas)")


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

