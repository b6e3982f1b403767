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
from datetime import timedelta
from typing import Any, ClassVar, Literal

from deployments.juju.settings import JujuSettings
from harness.system.errors import InfrastructureError, MatrixError
from harness.system.kubectl import kubectl_argv
from provisioners.api import RunContext, Substrate, SweptResource
from provisioners.kubernetes.base import KubernetesProvisioner
from provisioners.kubernetes.cloud import (
    CapacityError,
    CredentialsError,
    TaggedResource,
    gke_labels,
    resource_name,
    run_tags,
    sweep_resources,
)

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


EXPECTED = ("GOOGLE_APPLICATION_CREDENTIALS (or `gcloud auth application-default login`)",
            "CLOUDSDK_CORE_PROJECT or GOOGLE_CLOUD_PROJECT")


def credentials_error(detail: str) -> CredentialsError:
    return CredentialsError("Google Cloud", EXPECTED, detail, hint=CREDENTIALS_HINT)


def capacity_error(what: str, detail: str) -> CapacityError:
    return CapacityError("GKE", what.removeprefix("creating "), detail, hint=_CAPACITY_HINT)


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
        raise credentials_error(_first_line(exc)) from None
    project = project or env.get("CLOUDSDK_CORE_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") \
        or found or ""
    if not project:
        raise credentials_error("no Google Cloud project is set")
    try:
        credentials.refresh(Request())
    except (RefreshError, TransportError) as exc:
        raise credentials_error(f"they do not work: {_first_line(exc)}") from None
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

    def check_access(self, location: str) -> None:
        """One read in the project: a missing permission or a disabled Kubernetes Engine API
        fails here, in seconds, before anything is created."""
        from google.api_core.exceptions import GoogleAPICallError

        try:
            self.client.list_clusters(parent=f"projects/{self.project}/locations/{location}",
                                      timeout=self.call_timeout)
        except GoogleAPICallError as exc:
            raise self._error(f"listing the clusters of project {self.project}", exc) from None

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
        """Delete the cluster (its node pools and nodes go with it) and wait; idempotent.

        GKE refuses a delete while another operation runs on the cluster (FAILED_PRECONDITION,
        e.g. a create interrupted by Ctrl-C): retried until accepted or the deadline."""
        from google.api_core.exceptions import BadRequest, GoogleAPICallError, NotFound

        name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
        deadline = time.monotonic() + timeout
        what = f"deleting GKE cluster {name.rsplit('/', 1)[-1]}"
        location = name.split("/")[3]
        announced = False
        while (cluster := self.get(name)) is not None:
            if time.monotonic() > deadline:
                raise InfrastructureError(f"{what}: the cluster is still there ({cluster.status.name}, "
                                          "deadline)", hint="raise down_timeout in matrix.yaml or "
                                                            "delete it in the console")
            if not announced:
                progress(what)
                announced = True
            if cluster.status.name == "STOPPING":      # being deleted already
                time.sleep(self.poll_interval)
                continue
            try:
                op = self.client.delete_cluster(name=name, timeout=self.call_timeout)
            except NotFound:
                return
            except BadRequest as exc:
                if _rpc_status(exc) != "FAILED_PRECONDITION":   # not "another operation runs"
                    raise self._error(what, exc) from None
                time.sleep(self.poll_interval)
                continue
            except GoogleAPICallError as exc:
                raise self._error(what, exc) from None
            self._wait(op, location, what, deadline, progress)

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
            if watch_cluster:                 # a create: Ctrl-C/SIGTERM starts teardown now
                _check_cancel()
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
                raise capacity_error(what, message)
            raise InfrastructureError(f"{what}: {message}")

    def _error(self, what: str, exc: Any) -> MatrixError:
        message = _first_line(getattr(exc, "message", None) or exc)
        text = f"{what}: {message}"[:600]
        code = getattr(exc, "code", None)
        if any(m.lower() in message.lower() for m in CAPACITY_MARKERS) or code == 429:
            return capacity_error(what, message)
        if code in (401, 403):
            return credentials_error(text)
        return InfrastructureError(text)


_CAPACITY_HINT = ("pick another machine_type or zone for the platform in matrix.yaml, or request "
                  "a quota increase (console → IAM & Admin → Quotas)")


def _check_cancel() -> None:
    """Ctrl-C/SIGTERM in the runner: stop waiting so teardown can start."""
    from harness.system.errors import Interrupted
    from harness.system.waits import CANCEL

    if CANCEL.is_set():
        raise Interrupted()


def _rpc_status(exc: Any) -> str:
    """The google.rpc status name of a REST error (the HTTP code alone says only 400)."""
    if getattr(exc, "grpc_status_code", None) is not None:
        return str(exc.grpc_status_code.name)
    try:
        return str(exc.response.json()["error"]["status"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__



# ====================================================================== the provisioner

RESOURCE_TYPE = "gke-cluster"


@dataclass(frozen=True)
class GkeSettings(JujuSettings):
    project: str = ""                     # default: CLOUDSDK_CORE_PROJECT, GOOGLE_CLOUD_PROJECT, ADC's
    zone: str = "us-central1-a"           # a zonal cluster: one control plane, nodes in this zone
    machine_type: str = "e2-standard-4"   # 4 vCPU, 16 GiB
    node_count: int = 2
    kubernetes_version: str = "1.32"
    disk_size_gb: int = 100
    up_timeout: int = 1800                # cluster create deadline (s)
    down_timeout: int = 1200              # cluster delete deadline (s)
    api_poll_interval: float = 10.0       # between operation polls (s)
    ttl_hours: float = 6.0                # mlflow-matrix-expires = created + this
    api_endpoint: str = PUBLIC_API
    # Node ports are closed by GKE's default firewall: reach MLflow through the API server.
    access: Literal["nodeport", "loadbalancer", "port-forward"] = "port-forward"


def _client(settings: GkeSettings) -> GkeClient:
    credentials, project = default_credentials(settings.project)
    return GkeClient(credentials, project, endpoint=settings.api_endpoint,
                     poll_interval=settings.api_poll_interval)


class GkeProvisioner(KubernetesProvisioner):
    """GKE: one labelled zonal cluster per run; a static-token kubeconfig for Juju."""

    kind: ClassVar[str] = "gke"
    cluster_timeouts: ClassVar[tuple[int, int]] = (1800, 1200)
    ci_cloud: ClassVar[str | None] = "gcp"
    Settings = GkeSettings

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.kubeconfig = context.work_dir / f"{context.platform.name}-{context.run_id}.kubeconfig"

    def spec(self, project: str) -> GkeSpec:
        s, run_id = self.settings, self.context.run_id
        return GkeSpec(project=project, location=s.zone, cluster=resource_name(run_id, limit=40),
                       kubernetes_version=s.kubernetes_version, machine_type=s.machine_type,
                       node_count=s.node_count, disk_size_gb=s.disk_size_gb,
                       labels=gke_labels(run_tags(run_id, ttl=timedelta(hours=s.ttl_hours))))

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        _client(settings).check_access(settings.zone)

    def create_cluster(self) -> Substrate:
        client = _client(self.settings)
        spec = self.spec(client.project)
        state = self.context.state
        cluster = client.create(
            spec, timeout=self.settings.up_timeout, progress=self._progress,
            on_cluster=lambda: state.add(RESOURCE_TYPE, kind=self.kind, name=spec.cluster,
                                         project=spec.project, location=spec.location,
                                         api_endpoint=self.settings.api_endpoint,
                                         api_poll_interval=self.settings.api_poll_interval,
                                         down_timeout=self.settings.down_timeout,
                                         run_id=self.context.run_id))
        self._write_kubeconfig(kubeconfig(cluster, access_token(client.credentials),
                                          f"gke_{spec.project}_{spec.location}_{spec.cluster}"))
        return Substrate(name=self.context.platform.name, kubeconfig=self.kubeconfig,
                         cluster_goes_away=True,
                         details={"project": spec.project, "zone": spec.location,
                                  "cluster": spec.cluster, "endpoint": cluster.endpoint})

    def delete_cluster(self) -> None:
        mine = [r for r in self.context.state.resources()
                if r.type == RESOURCE_TYPE and r.data.get("kind") == self.kind]
        if not mine:
            self._progress(f"no cluster recorded by this run; an earlier run's: `mlflow-matrix "
                           f"down --run-id ID`, or `mlflow-matrix janitor --cloud {self.kind}`")
        for resource in mine:
            _delete_recorded(resource.data, self.settings.down_timeout, self._progress)
            self.context.state.release(resource.id)
        self.kubeconfig.unlink(missing_ok=True)

    def cluster_goes_away(self) -> bool:
        return True

    def cluster_plan(self) -> list[str]:
        s = self.settings
        project = s.project or os.environ.get("CLOUDSDK_CORE_PROJECT") or \
            os.environ.get("GOOGLE_CLOUD_PROJECT") or "<ADC project>"
        spec = self.spec(project)
        labels = ", ".join(f"{k}={v}" for k, v in spec.labels.items())
        return [
            "credentials: google-auth Application Default Credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS, else `gcloud auth application-default login`), "
            "scope cloud-platform, refreshed once, then GET …/clusters in the zone to check them",
            f"POST {s.api_endpoint}/v1/{spec.parent}/clusters (google-cloud-container, REST) "
            f"cluster {spec.cluster}: Kubernetes {s.kubernetes_version}, zonal ({s.zone}), "
            f"node pool default-pool {s.node_count} x {s.machine_type} ({s.disk_size_gb} GB "
            f"pd-balanced), resourceLabels: {labels}",
            f"GET {s.api_endpoint}/v1/{spec.parent}/operations/<op> every "
            f"{s.api_poll_interval:g} s until DONE (an error, or the cluster in ERROR, stops), "
            f"deadline {s.up_timeout} s",
            f"GET {s.api_endpoint}/v1/{spec.name} → endpoint + masterAuth.clusterCaCertificate; "
            f"kubeconfig with a static access token (no exec plugin) → {self.kubeconfig}",
        ]

    def cluster_down_plan(self) -> list[str]:
        s = self.settings
        spec = self.spec(s.project or "<project>")
        return [f"DELETE {s.api_endpoint}/v1/{spec.name} (its node pools and nodes with it); "
                f"GET the operation every {s.api_poll_interval:g} s until DONE, deadline "
                f"{s.down_timeout} s; GET the cluster → 404"]

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        base = kubectl_argv(self.kubeconfig, None, None, [])
        return [("version.txt", [*base, "version"]),
                ("nodes.txt", [*base, "get", "nodes", "-o", "wide"]),
                ("storage.txt", [*base, "get", "storageclass,pv,pvc", "-A"]),
                ("services.txt", [*base, "get", "services", "-A", "-o", "wide"])]

    @classmethod
    def release_cluster_resource(cls, resource: Mapping[str, Any]) -> bool:
        if resource.get("type") != RESOURCE_TYPE:
            return False
        _delete_recorded(resource, int(resource.get("down_timeout") or GkeSettings.down_timeout),
                         print)
        return True

    @classmethod
    def sweep(cls, settings: Any, *, older_than: timedelta | None, dry_run: bool,
              progress: Callable[[str], None]) -> list[SweptResource]:
        """Clusters labelled mlflow-matrix-run that are due, deleted like `down` does."""
        client = _client(settings)
        found = [TaggedResource("gke-cluster", f"{c.location}/{c.name}", dict(c.resource_labels))
                 for c in client.labelled_clusters()]

        def delete(resource: TaggedResource) -> None:
            location, name = resource.name.split("/", 1)
            client.delete(f"projects/{client.project}/locations/{location}/clusters/{name}",
                          timeout=settings.down_timeout, progress=progress)

        return sweep_resources(found, delete, older_than=older_than, dry_run=dry_run,
                               progress=progress)

    def _write_kubeconfig(self, text: str) -> None:
        from harness.system.kube import register_kubeconfig_secrets

        register_kubeconfig_secrets(text)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _progress(self, line: str) -> None:
        print(f"{self.context.platform.name}: {line}", flush=True)


def _delete_recorded(resource: Mapping[str, Any], timeout: float,
                     progress: Callable[[str], None]) -> None:
    settings = GkeSettings(project=resource["project"],
                           api_endpoint=resource.get("api_endpoint") or PUBLIC_API,
                           api_poll_interval=float(resource.get("api_poll_interval") or 10.0))
    client = _client(settings)
    client.delete(f"projects/{resource['project']}/locations/{resource['location']}/clusters/"
                  f"{resource['name']}", timeout=timeout, progress=progress)
