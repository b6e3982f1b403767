"""AKS: one tagged resource group per run holding one Free-tier managed cluster.

Deleting the run's resource group deletes the cluster, and AKS deletes the cluster's node
resource group (`MC_<group>_<cluster>_<location>`: VM scale set, NICs, disks, load balancer,
public IPs) with it; teardown then checks that the node group is really gone. Juju gets the
cluster's *admin* kubeconfig (client certificates): the strictly-confined juju snap cannot run
the `kubelogin` exec plugin a user kubeconfig needs.

Credentials are azure-identity's `DefaultAzureCredential` (a service principal from AZURE_*
variables, workload identity, or `az login`); the subscription is AZURE_SUBSCRIPTION_ID.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from deployments.juju.settings import JujuSettings
from harness.system.errors import InfrastructureError, MatrixError
from harness.system.kubectl import kubectl_argv
from provisioners.api import RunContext, Substrate, SweptResource
from provisioners.kubernetes.base import KubernetesProvisioner
from provisioners.kubernetes.cloud import (
    CapacityError,
    CredentialsError,
    TaggedResource,
    resource_name,
    run_tags,
    sweep_resources,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.polling import LROPoller

PUBLIC_ARM = "https://management.azure.com"
RUN_TAG = "mlflow-matrix-run"
# Refusals that mean "no capacity for this size here", not "something is broken" (exit 3, said so).
CAPACITY_CODES = frozenset({
    "QuotaExceeded", "ErrCode_InsufficientVCPUQuota", "InsufficientVCPUQuota",
    "OperationNotAllowed", "SkuNotAvailable", "AllocationFailed", "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest",
    "PublicIPCountLimitReached",
})
AUTH_CODES = frozenset({"AuthorizationFailed", "InvalidAuthenticationToken",
                        "InvalidAuthenticationTokenTenant", "ExpiredAuthenticationToken",
                        "SubscriptionNotFound", "LinkedAuthorizationFailed"})
FAILED_STATES = frozenset({"Failed", "Canceled"})
CREDENTIALS_HINT = (
    "set AZURE_SUBSCRIPTION_ID and a service principal: AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE for workload identity / GitHub OIDC), "
    "or run `az login`; the identity needs the role in docs/platforms.md (AKS)")
_KNOWN_AUTHORITIES = ("login.microsoftonline.com", "login.chinacloudapi.cn",
                      "login.microsoftonline.us")


EXPECTED = ("AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE")
CAPACITY_HINT = ("pick another vm_size or location for the platform in matrix.yaml, or request a "
                 "quota increase (Azure portal → Quotas → Compute)")


def credentials_error(detail: str) -> CredentialsError:
    return CredentialsError("Azure", EXPECTED, detail, hint=CREDENTIALS_HINT)


@dataclass(frozen=True)
class AksSpec:
    """Everything the create call needs; built from matrix.yaml and the run id."""

    resource_group: str
    cluster: str
    location: str
    kubernetes_version: str
    vm_size: str
    node_count: int
    tags: Mapping[str, str]
    os_disk_gb: int = 128

    @property
    def node_resource_group(self) -> str:
        """Named explicitly in the create call (AKS's default pattern), so it is known and
        recorded before the cluster exists."""
        return f"MC_{self.resource_group}_{self.cluster}_{self.location}"[:80]

    @property
    def dns_prefix(self) -> str:
        return self.cluster[:54]

    def cluster_body(self) -> dict[str, Any]:
        """The ManagedCluster PUT body (REST names; the SDK accepts the JSON shape)."""
        return {
            "location": self.location,
            "tags": dict(self.tags),
            "sku": {"name": "Base", "tier": "Free"},
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "kubernetesVersion": self.kubernetes_version,
                "dnsPrefix": self.dns_prefix,
                "nodeResourceGroup": self.node_resource_group,
                "enableRBAC": True,
                "agentPoolProfiles": [{
                    "name": "system", "mode": "System", "count": self.node_count,
                    "vmSize": self.vm_size, "osType": "Linux", "osDiskSizeGB": self.os_disk_gb,
                    "type": "VirtualMachineScaleSets", "tags": dict(self.tags)}],
                "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay",
                                   "loadBalancerSku": "standard", "outboundType": "loadBalancer"},
            },
        }


def subscription_from_env(env: Mapping[str, str] = os.environ) -> str:
    sub = (env.get("AZURE_SUBSCRIPTION_ID") or "").strip()
    if not sub:
        raise credentials_error("AZURE_SUBSCRIPTION_ID is not set")
    return sub


def make_credential(env: Mapping[str, str] = os.environ) -> TokenCredential:
    """DefaultAzureCredential without the slow or interactive members.

    Managed identity is tried only where one can exist (IDENTITY_ENDPOINT/MSI_ENDPOINT set, i.e.
    on an Azure host); elsewhere its IMDS probe would only add seconds before the error. Instance
    discovery is turned off only for an authority host that is not a public Azure cloud (Azure
    Stack, or this project's loopback fake): there is no metadata endpoint to ask.
    """
    from azure.identity import DefaultAzureCredential

    # Its chain logs every member's failure as a multi-line WARNING; check_credentials turns the
    # failure into one error naming the variables instead.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    authority = (env.get("AZURE_AUTHORITY_HOST") or "").removeprefix("https://").rstrip("/")
    on_azure = bool(env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"))
    return DefaultAzureCredential(
        exclude_managed_identity_credential=not on_azure,
        exclude_interactive_browser_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_powershell_credential=True,
        exclude_developer_cli_credential=True,
        disable_instance_discovery=bool(authority) and authority not in _KNOWN_AUTHORITIES,
        process_timeout=20)


class AksClient:
    """The ARM calls of an AKS run; every long-running call waits with a deadline."""

    def __init__(self, credential: TokenCredential, subscription_id: str, *,
                 endpoint: str = PUBLIC_ARM, poll_interval: float = 15.0) -> None:
        from azure.mgmt.containerservice import ContainerServiceClient
        from azure.mgmt.resource.resources import ResourceManagementClient

        self.credential = credential
        self.subscription_id = subscription_id
        self.endpoint = endpoint.rstrip("/")
        self.poll_interval = poll_interval
        common = {"base_url": self.endpoint, "credential_scopes": [self.scope],
                  "polling_interval": poll_interval, "retry_total": 4,
                  "connection_timeout": 30, "read_timeout": 120}
        self.resources = ResourceManagementClient(credential, subscription_id, **common)
        self.aks = ContainerServiceClient(credential, subscription_id, **common)

    @property
    def scope(self) -> str:
        return f"{self.endpoint}/.default"

    # ------------------------------------------------------------------ checks
    def check_credentials(self, resource_group: str) -> None:
        """A token, then one cheap read in the subscription: fails in seconds, creates nothing."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

        try:
            self.credential.get_token(self.scope)
        except ClientAuthenticationError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise credentials_error(first) from None
        try:
            self.resources.resource_groups.check_existence(resource_group)
        except HttpResponseError as exc:
            raise self._error(f"reading resource groups of subscription {self.subscription_id}",
                              exc) from None

    # ------------------------------------------------------------------ create
    def create(self, spec: AksSpec, *, timeout: float, progress: Callable[[str], None],
               on_group: Callable[[], None] = lambda: None,
               on_cluster: Callable[[], None] = lambda: None) -> bytes:
        """Resource group, then the cluster (waited for); returns the admin kubeconfig.

        `on_group`/`on_cluster` run *before* each create call, so the run state names the
        resource even if this process dies during the call."""
        from azure.core.exceptions import HttpResponseError

        deadline = time.monotonic() + timeout
        on_group()
        progress(f"creating resource group {spec.resource_group} in {spec.location}")
        try:
            self.resources.resource_groups.create_or_update(
                spec.resource_group, {"location": spec.location, "tags": dict(spec.tags)})
        except HttpResponseError as exc:
            raise self._error(f"creating resource group {spec.resource_group}", exc) from None
        on_cluster()
        progress(f"creating AKS cluster {spec.cluster} (Kubernetes {spec.kubernetes_version}, "
                 f"{spec.node_count} x {spec.vm_size}); this takes 5-10 minutes")
        what = f"creating AKS cluster {spec.cluster}"
        try:
            poller = self.aks.managed_clusters.begin_create_or_update(
                spec.resource_group, spec.cluster, spec.cluster_body(),
                polling_interval=self.poll_interval)
        except HttpResponseError as exc:
            raise self._error(what, exc) from None
        self._wait(poller, what, deadline, progress,
                   state=lambda: self._cluster_state(spec.resource_group, spec.cluster),
                   cancellable=True)
        state = self._cluster_state(spec.resource_group, spec.cluster)
        if state != "Succeeded":
            raise InfrastructureError(f"{what}: provisioningState is {state}",
                                      hint="see the cluster's activity log in the Azure portal")
        try:
            creds = self.aks.managed_clusters.list_cluster_admin_credentials(
                spec.resource_group, spec.cluster)
        except HttpResponseError as exc:
            raise self._error(f"getting the admin kubeconfig of {spec.cluster}", exc) from None
        if not creds.kubeconfigs:
            raise InfrastructureError(f"AKS returned no admin kubeconfig for {spec.cluster}")
        return bytes(creds.kubeconfigs[0].value)

    def _cluster_state(self, group: str, cluster: str) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            mc = self.aks.managed_clusters.get(group, cluster)
        except ResourceNotFoundError:
            return "NotFound"
        return str(mc.provisioning_state or "")

    # ------------------------------------------------------------------ delete
    def delete(self, resource_group: str, node_resource_group: str | None, *, timeout: float,
               progress: Callable[[str], None]) -> None:
        """Delete the run's group (cluster and all), then make sure the node group went too.
        Idempotent: a group that is already gone is fine."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        deadline = time.monotonic() + timeout
        node_groups = {node_resource_group} if node_resource_group else set()
        try:
            node_groups |= {mc.node_resource_group for mc in
                            self.aks.managed_clusters.list_by_resource_group(resource_group)
                            if mc.node_resource_group}
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            raise self._error(f"listing the clusters of {resource_group}", exc) from None
        for group in [resource_group, *sorted(node_groups)]:
            self._delete_group(group, deadline, progress)
        left = [g for g in node_groups if self._group_exists(g)]
        if left:
            raise InfrastructureError(f"node resource group {', '.join(left)} is still there after "
                                      f"{resource_group} was deleted",
                                      hint="delete it in the portal or with `az group delete -n NAME`")

    def _group_exists(self, name: str) -> bool:
        from azure.core.exceptions import HttpResponseError

        try:
            return bool(self.resources.resource_groups.check_existence(name))
        except HttpResponseError as exc:
            raise self._error(f"checking resource group {name}", exc) from None

    def _delete_group(self, name: str, deadline: float, progress: Callable[[str], None]) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        if not self._group_exists(name):
            return
        progress(f"deleting resource group {name}")
        what = f"deleting resource group {name}"
        try:
            poller = self.resources.resource_groups.begin_delete(
                name, polling_interval=self.poll_interval)
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            raise self._error(what, exc) from None
        self._wait(poller, what, deadline, progress)

    # ------------------------------------------------------------------ janitor
    def tagged_groups(self) -> Iterator[Any]:
        """Resource groups carrying the run tag; node groups (managedBy a cluster) are skipped:
        they go with their cluster, and ARM refuses to delete them directly."""
        from azure.core.exceptions import HttpResponseError

        try:
            groups = list(self.resources.resource_groups.list(filter=f"tagName eq '{RUN_TAG}'"))
        except HttpResponseError as exc:
            raise self._error("listing resource groups by tag", exc) from None
        for group in groups:
            if (group.tags or {}).get(RUN_TAG) and not group.managed_by:
                yield group

    # ------------------------------------------------------------------ waiting
    def _wait(self, poller: LROPoller[Any], what: str, deadline: float,
              progress: Callable[[str], None], state: Callable[[], str] | None = None,
              cancellable: bool = False) -> None:
        """Until the poller is done, the deadline passes, or a terminal failed state shows.
        A `cancellable` wait (creates, not deletes) also ends on the runner's Ctrl-C."""
        from azure.core.exceptions import HttpResponseError

        from harness.system.errors import Interrupted
        from harness.system.waits import CANCEL

        started = time.monotonic()
        last_report = started
        while True:
            if cancellable and CANCEL.is_set():   # Ctrl-C/SIGTERM: teardown starts now
                raise Interrupted()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InfrastructureError(
                    f"{what}: not finished after {int(time.monotonic() - started)} s (deadline)",
                    hint="raise the platform's up_timeout/down_timeout in matrix.yaml, or check "
                         "the operation in the Azure portal")
            try:
                poller.wait(timeout=min(remaining, max(self.poll_interval, 0.05)))
            except HttpResponseError as exc:
                raise self._error(what, exc) from None
            if poller.done():
                try:
                    poller.result()
                except HttpResponseError as exc:
                    raise self._error(what, exc) from None
                return
            current = state() if state else ""
            if current in FAILED_STATES:
                try:  # the operation's own error says why; give the poller a moment to fetch it
                    poller.wait(timeout=min(max(deadline - time.monotonic(), 0), 10))
                    poller.result(timeout=0)
                except HttpResponseError as exc:
                    raise self._error(what, exc) from None
                raise InfrastructureError(f"{what}: provisioningState is {current}",
                                          hint="see the cluster's activity log in the Azure portal")
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                progress(f"{what}: {poller.status()} {current} "
                         f"({int(time.monotonic() - started)} s)".replace("  ", " "))

    def _error(self, what: str, exc: Any) -> MatrixError:
        """An SDK error as the user-facing error of the right exit code."""
        code = getattr(getattr(exc, "error", None), "code", None) or ""
        message = getattr(getattr(exc, "error", None), "message", None) or str(exc)
        message = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        text = f"{what}: {code + ': ' if code else ''}{message}"[:600]
        if getattr(exc, "status_code", None) == 401 or code in AUTH_CODES:
            return credentials_error(text)
        if code in CAPACITY_CODES or "quota" in message.lower():
            return CapacityError("Azure", what.removeprefix("creating "),
                                 f"{code + ': ' if code else ''}{message}"[:600], hint=CAPACITY_HINT)
        return InfrastructureError(text)


# ====================================================================== the provisioner

RESOURCE_TYPE = "aks-resource-group"
RESOURCE_API = "2025-04-01"        # the api-versions the pinned SDKs send (see the fake's test)
AKS_API = "2026-08-01"


@dataclass(frozen=True)
class AksSettings(JujuSettings):
    location: str = "eastus"
    vm_size: str = "Standard_D4s_v5"      # 4 vCPU, 16 GiB
    node_count: int = 2
    kubernetes_version: str = "1.32"
    os_disk_gb: int = 128
    up_timeout: int = 1800                # cluster create deadline (s)
    down_timeout: int = 1200              # resource group delete deadline (s)
    api_poll_interval: float = 15.0       # between ARM long-running-operation polls (s)
    ttl_hours: float = 6.0                # mlflow-matrix-expires = created + this
    arm_endpoint: str = PUBLIC_ARM        # another cloud (Azure China/Government, Stack)
    # Nodes have no public IPs: reach MLflow through the API server.
    access: Literal["nodeport", "loadbalancer", "port-forward"] = "port-forward"


def _client(settings: AksSettings) -> AksClient:
    return AksClient(make_credential(), subscription_from_env(), endpoint=settings.arm_endpoint,
                     poll_interval=settings.api_poll_interval)


class AksProvisioner(KubernetesProvisioner):
    """AKS: resource group + Free-tier cluster per run; the admin kubeconfig for Juju."""

    kind: ClassVar[str] = "aks"
    cluster_timeouts: ClassVar[tuple[int, int]] = (1800, 1200)
    ci_cloud: ClassVar[str | None] = "azure"
    Settings = AksSettings

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.kubeconfig = context.work_dir / f"{context.platform.name}-{context.run_id}.kubeconfig"

    # ------------------------------------------------------------ names
    def spec(self) -> AksSpec:
        run_id = self.context.run_id
        s = self.settings
        return AksSpec(resource_group=resource_name(run_id, "aks", limit=90),
                       cluster=resource_name(run_id, limit=40), location=s.location,
                       kubernetes_version=s.kubernetes_version, vm_size=s.vm_size,
                       node_count=s.node_count, os_disk_gb=s.os_disk_gb,
                       tags=run_tags(run_id, ttl=timedelta(hours=s.ttl_hours)))

    # ------------------------------------------------------------ hooks
    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        _client(settings).check_credentials(resource_name("preflight", "aks", limit=90))

    def create_cluster(self) -> Substrate:
        spec = self.spec()
        client = _client(self.settings)
        state = self.context.state
        rid: list[str] = []
        recorded = {"kind": self.kind, "name": spec.resource_group,
                    "node_resource_group": spec.node_resource_group, "cluster": spec.cluster,
                    "location": spec.location, "subscription": client.subscription_id,
                    "arm_endpoint": client.endpoint, "run_id": self.context.run_id,
                    "api_poll_interval": self.settings.api_poll_interval,
                    "down_timeout": self.settings.down_timeout}
        kubeconfig = client.create(
            spec, timeout=self.settings.up_timeout, progress=self._progress,
            on_group=lambda: rid.append(state.add(RESOURCE_TYPE, **recorded)),
            on_cluster=lambda: state.update(rid[0], cluster_requested=True))
        self._write_kubeconfig(kubeconfig.decode())
        return Substrate(name=self.context.platform.name, kubeconfig=self.kubeconfig,
                         cluster_goes_away=True,
                         details={"resource_group": spec.resource_group, "cluster": spec.cluster,
                                  "node_resource_group": spec.node_resource_group,
                                  "location": spec.location})

    def delete_cluster(self) -> None:
        mine = [r for r in self.context.state.resources()
                if r.type == RESOURCE_TYPE and r.data.get("kind") == self.kind]
        if not mine:
            self._progress(f"no resource group recorded by this run; an earlier run's: `mlflow-matrix "
                           f"down --run-id ID`, or `mlflow-matrix janitor --cloud {self.kind}`")
        for resource in mine:
            _client(self.settings).delete(resource.data["name"],
                                          resource.data.get("node_resource_group"),
                                          timeout=self.settings.down_timeout,
                                          progress=self._progress)
            self.context.state.release(resource.id)
        self.kubeconfig.unlink(missing_ok=True)

    def cluster_goes_away(self) -> bool:
        return True

    def cluster_plan(self) -> list[str]:
        s, spec = self.settings, self.spec()
        sub = f"/subscriptions/{os.environ.get('AZURE_SUBSCRIPTION_ID') or '$AZURE_SUBSCRIPTION_ID'}"
        group = f"{s.arm_endpoint}{sub}/resourcegroups/{spec.resource_group}"
        mc = (f"{s.arm_endpoint}{sub}/resourceGroups/{spec.resource_group}/providers/"
              f"Microsoft.ContainerService/managedClusters/{spec.cluster}")
        tags = ", ".join(f"{k}={v}" for k, v in spec.tags.items())
        return [
            "credentials: azure-identity DefaultAzureCredential (AZURE_TENANT_ID/AZURE_CLIENT_ID/"
            "AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, else `az login`), token for "
            f"{s.arm_endpoint}/.default; HEAD {s.arm_endpoint}{sub}/resourcegroups/<name> checks it",
            f"PUT {group}?api-version={RESOURCE_API} location={s.location} tags: {tags}",
            f"PUT {mc}?api-version={AKS_API} sku Base/Free, Kubernetes {s.kubernetes_version}, "
            f"system pool {s.node_count} x {s.vm_size} ({s.os_disk_gb} GB OS disk), "
            f"nodeResourceGroup {spec.node_resource_group}, same tags",
            f"poll its Azure-AsyncOperation every {s.api_poll_interval:g} s until Succeeded "
            f"(Failed/Canceled stops), deadline {s.up_timeout} s; GET the cluster: "
            "provisioningState Succeeded",
            f"POST {mc}/listClusterAdminCredential?api-version={AKS_API} → admin kubeconfig "
            f"(client certificates, no exec plugin) → {self.kubeconfig}",
        ]

    def cluster_down_plan(self) -> list[str]:
        s, spec = self.settings, self.spec()
        sub = f"/subscriptions/{os.environ.get('AZURE_SUBSCRIPTION_ID') or '$AZURE_SUBSCRIPTION_ID'}"
        return [
            f"DELETE {s.arm_endpoint}{sub}/resourcegroups/{spec.resource_group}?api-version="
            f"{RESOURCE_API} (the cluster, and AKS deletes {spec.node_resource_group} with it); "
            f"poll its Location until 200, deadline {s.down_timeout} s",
            f"HEAD {s.arm_endpoint}{sub}/resourcegroups/{spec.node_resource_group} → 404 "
            "expected; if it is still there: DELETE it and wait",
        ]

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
        settings = AksSettings(
            arm_endpoint=resource.get("arm_endpoint") or PUBLIC_ARM,
            api_poll_interval=float(resource.get("api_poll_interval") or 15.0),
            down_timeout=int(resource.get("down_timeout") or AksSettings.down_timeout))
        client = AksClient(make_credential(), resource.get("subscription") or subscription_from_env(),
                           endpoint=settings.arm_endpoint, poll_interval=settings.api_poll_interval)
        client.delete(resource["name"], resource.get("node_resource_group"),
                      timeout=settings.down_timeout, progress=print)
        return True

    @classmethod
    def sweep(cls, settings: Any, *, older_than: timedelta | None, dry_run: bool,
              progress: Callable[[str], None]) -> list[SweptResource]:
        """Resource groups tagged mlflow-matrix-run that are due, deleted like `down` does."""
        client = _client(settings)
        found = [TaggedResource("resource-group", g.name, dict(g.tags or {}))
                 for g in client.tagged_groups()]
        return sweep_resources(
            found, lambda r: client.delete(r.name, None, timeout=settings.down_timeout,
                                           progress=progress),
            older_than=older_than, dry_run=dry_run, progress=progress)

    # ------------------------------------------------------------ helpers
    def _write_kubeconfig(self, text: str) -> None:
        from harness.system.kube import register_kubeconfig_secrets

        register_kubeconfig_secrets(text)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _progress(self, line: str) -> None:
        print(f"{self.context.platform.name}: {line}", flush=True)
