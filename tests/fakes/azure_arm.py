"""A small loopback fake of Azure Resource Manager and the Entra ID token endpoint.

Serves what the real `azure-identity`, `azure-mgmt-resource` and `azure-mgmt-containerservice`
clients call for one AKS cluster per resource group, over HTTPS with a throwaway CA (`trustme`):
the SDK's bearer-token policy refuses plain http.

Shapes follow Azure/azure-rest-api-specs (see recordings/SOURCES.md): resource groups are created
synchronously (200/201), deleted as a long-running operation (202 + `Location`, polled until
200); a managed cluster PUT answers 201 with `provisioningState: Creating` and an
`Azure-AsyncOperation` header whose status goes `InProgress` → `Succeeded` (or `Failed` with an
error), the cluster's node resource group `MC_<rg>_<cluster>_<location>` exists from the PUT on
and goes away with the cluster; `listClusterAdminCredential` returns a base64 kubeconfig with
client certificates.

Knobs a test sets on the instance: `create_polls`/`delete_polls` (InProgress answers before a
terminal one), `fail_create` (the cluster operation ends Failed half-way), `quota_error` (the
PUT is refused with a quota code), `leak_node_group` (the `MC_` group survives its cluster).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fakes import loopback

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-client-secret-value"

_RG = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)$", re.I)
_RGS = re.compile(r"^/subscriptions/([^/]+)/resourcegroups$", re.I)
_MC = re.compile(r"^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/"
                 r"microsoft\.containerservice/managedclusters/([^/]+)(/listclusteradmincredential)?$",
                 re.I)
_MCS = re.compile(r"^/subscriptions/([^/]+)(/resourcegroups/[^/]+)?/providers/"
                  r"microsoft\.containerservice/managedclusters$", re.I)
_ASYNC_OP = re.compile(r"^/subscriptions/([^/]+)/providers/microsoft\.containerservice/locations/"
                       r"([^/]+)/operations/([^/]+)$", re.I)
_RG_OPRESULT = re.compile(r"^/subscriptions/([^/]+)/operationresults/([^/]+)$", re.I)
_OIDC = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")


@dataclass
class _Operation:
    id: str
    polls_left: int
    on_success: Any
    on_failure: Any = None
    error: dict[str, str] | None = None
    status: str = "InProgress"
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class FakeAzure:
    """Start with `with FakeAzure(tmp_path) as az:`; `az.url` is the ARM and authority host."""

    def __init__(self, workdir: Path) -> None:
        import trustme

        self.workdir = workdir
        self.ca = trustme.CA()
        self.ca_path = workdir / "fake-azure-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.lock = threading.Lock()
        self.groups: dict[str, dict[str, Any]] = {}        # lower-case name → resource group
        self.clusters: dict[str, dict[str, Any]] = {}      # lower-case "rg/name" → cluster
        self.operations: dict[str, _Operation] = {}
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []     # (method, path, api-version)
        self.create_polls = 2
        self.delete_polls = 2
        self.fail_create = False
        self.quota_error = False
        self.leak_node_group = False
        # the admin kubeconfig handed out (e.g. the fake Kubernetes API's); None: a made-up one
        self.kubeconfig_text: str | None = None
        self.on_group_delete: Any = None      # called (group name) when a DELETE is accepted
        self.api_versions: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeAzure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(context)
        self._server = loopback.serve(type("Handler", (_Handler,), {"fake": self}), "fake-arm",
                                      context)
        return self

    def __exit__(self, *exc: object) -> None:
        loopback.stop(self._server)

    @property
    def url(self) -> str:
        return loopback.url(self._server, "https")

    def env(self) -> dict[str, str]:
        """What a user sets for a service principal, pointed at this fake."""
        return {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT_ID,
                "AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
                "AZURE_AUTHORITY_HOST": self.url, "REQUESTS_CA_BUNDLE": str(self.ca_path)}

    # ------------------------------------------------------------------ test helpers
    def add_group(self, name: str, location: str = "eastus", tags: dict[str, str] | None = None,
                  managed_by: str | None = None) -> None:
        """A resource group someone else made (the janitor must leave it alone without our tag)."""
        with self.lock:
            self.groups[name.lower()] = self._group_body(name, location, tags or {}, managed_by)

    def group_names(self) -> list[str]:
        with self.lock:
            return sorted(g["name"] for g in self.groups.values())

    # ------------------------------------------------------------------ bodies
    def _group_body(self, name: str, location: str, tags: dict[str, str],
                    managed_by: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}", "name": name,
            "type": "Microsoft.Resources/resourceGroups", "location": location, "tags": tags,
            "properties": {"provisioningState": "Succeeded"}}
        if managed_by:
            body["managedBy"] = managed_by
        return body

    def _kubeconfig(self, cluster: dict[str, Any]) -> str:
        if self.kubeconfig_text is not None:
            return self.kubeconfig_text
        fqdn = cluster["properties"]["fqdn"]
        name = cluster["name"]
        ca = base64.b64encode(self.ca.cert_pem.bytes()).decode()
        cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n")
        key = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nZmFrZQ==\n-----END RSA PRIVATE KEY-----\n")
        user = f"clusterAdmin_{cluster['resourceGroup']}_{name}"
        return (
            "apiVersion: v1\nclusters:\n- cluster:\n"
            f"    certificate-authority-data: {ca}\n    server: https://{fqdn}:443\n"
            f"  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {user}\n"
            f"  name: {name}-admin\ncurrent-context: {name}-admin\nkind: Config\npreferences: {{}}\n"
            f"users:\n- name: {user}\n  user:\n    client-certificate-data: {cert.decode()}\n"
            f"    client-key-data: {key.decode()}\n    token: {uuid.uuid4().hex}\n")

    # ------------------------------------------------------------------ operations
    def _new_op(self, polls: int, on_success: Any, on_failure: Any = None,
                error: dict[str, str] | None = None) -> _Operation:
        op = _Operation(uuid.uuid4().hex, polls, on_success, on_failure, error)
        self.operations[op.id] = op
        return op

    def _advance(self, op: _Operation) -> None:
        if op.status != "InProgress":
            return
        if op.polls_left > 0:
            op.polls_left -= 1
            return
        if op.error:
            op.status = "Failed"
            if op.on_failure:
                op.on_failure()
        else:
            op.status = "Succeeded"
            op.on_success()

    def _delete_group_now(self, key: str) -> None:
        group = self.groups.pop(key, None)
        if not group:
            return
        for ckey in [k for k in self.clusters if k.startswith(key + "/")]:
            self._delete_cluster_now(ckey)

    def _delete_cluster_now(self, ckey: str) -> None:
        cluster = self.clusters.pop(ckey, None)
        if not cluster:
            return
        node_group = cluster["properties"]["nodeResourceGroup"].lower()
        if self.leak_node_group and node_group in self.groups:
            self.groups[node_group].pop("managedBy", None)
        else:
            self.groups.pop(node_group, None)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAzure
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", uuid.uuid4().hex)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw and raw[:1] in b"{[" else {"_raw": raw.decode()}

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.fake.tokens:
            return True
        self._send(401, _error("InvalidAuthenticationToken", "The access token is invalid."),
                   {"WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
                                        'error="invalid_token"'})
        return False

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _route(self, method: str) -> None:
        parsed = urlparse(self.path)
        path = parsed.path
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        fake = self.fake
        body = self._body() if method in ("PUT", "POST") else {}
        with fake.lock:
            fake.requests.append((method, path, query.get("api-version", "")))
        if m := _OIDC.match(path):
            return self._oidc(m.group(1))
        if m := _TOKEN.match(path):
            return self._token(m.group(1), body)
        if not self._authorized():
            return None
        with fake.lock:
            if m := _RG.match(path):
                return self._group(method, m.group(2), body)
            if _RGS.match(path) and method == "GET":
                return self._list_groups(query.get("$filter", ""))
            if m := _MC.match(path):
                return self._cluster(method, m.group(2), m.group(3), bool(m.group(4)), body, query)
            if (m := _MCS.match(path)) and method == "GET":
                return self._list_clusters(m.group(2))
            if m := _ASYNC_OP.match(path):
                return self._async_op(m.group(3))
            if m := _RG_OPRESULT.match(path):
                return self._location_op(m.group(2))
        return self._send(404, _error("NotFound", f"{method} {path} is not served by the fake"))

    # ---------------------------------------------------------------- Entra ID
    def _oidc(self, tenant: str) -> None:
        base = f"{self.fake.url}/{tenant}"
        self._send(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "token id_token"],
            "tenant_region_scope": "WW"})

    def _token(self, tenant: str, body: dict[str, Any]) -> None:
        form = {k: v[0] for k, v in parse_qs(body.get("_raw", "")).items()}
        if tenant != TENANT or form.get("client_id") != CLIENT_ID \
                or form.get("client_secret") != CLIENT_SECRET:
            return self._send(401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
                                     "secret being sent in the request is the client secret value.",
                "error_codes": [7000215]})
        token = "fake-arm-token-" + uuid.uuid4().hex
        with self.fake.lock:
            self.fake.tokens.add(token)
        return self._send(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                "access_token": token})

    # ---------------------------------------------------------------- resource groups
    def _group(self, method: str, name: str, body: dict[str, Any]) -> None:
        fake = self.fake
        key = name.lower()
        group = fake.groups.get(key)
        if method in ("GET", "HEAD"):
            if group is None:
                return self._send(404, None if method == "HEAD" else _error(
                    "ResourceGroupNotFound", f"Resource group '{name}' could not be found."))
            return self._send(204 if method == "HEAD" else 200, None if method == "HEAD" else group)
        if method == "PUT":
            status = 200 if group else 201
            fake.groups[key] = fake._group_body(name, body["location"], body.get("tags") or {})
            return self._send(status, fake.groups[key])
        if method == "DELETE":
            if group is None:
                return self._send(404, _error("ResourceGroupNotFound",
                                              f"Resource group '{name}' could not be found."))
            if group.get("managedBy"):
                return self._send(409, _error(
                    "ResourceGroupManagedByMismatch",
                    f"The resource group '{name}' is managed by '{group['managedBy']}'. "
                    "It can only be deleted through the resource that manages it."))
            if fake.on_group_delete:
                fake.on_group_delete(name)
            group["properties"]["provisioningState"] = "Deleting"
            op = fake._new_op(fake.delete_polls, lambda: fake._delete_group_now(key))
            location = (f"{fake.url}/subscriptions/{SUBSCRIPTION}/operationresults/{op.id}"
                        "?api-version=2025-04-01")
            return self._send(202, None, {"Location": location, "Retry-After": "0"})
        return self._send(405, _error("MethodNotAllowed", method))

    def _list_groups(self, filter_: str) -> None:
        groups = list(self.fake.groups.values())
        if m := re.match(r"tagName eq '([^']+)'(?: and tagValue eq '([^']*)')?", filter_):
            tag, value = m.group(1), m.group(2)
            groups = [g for g in groups if tag in (g.get("tags") or {})
                      and (value is None or g["tags"][tag] == value)]
        self._send(200, {"value": groups})

    def _list_clusters(self, scope: str | None) -> None:
        clusters = list(self.fake.clusters.values())
        if scope:
            group = scope.rsplit("/", 1)[1].lower()
            if group not in self.fake.groups:
                return self._send(404, _error("ResourceGroupNotFound",
                                              f"Resource group '{group}' could not be found."))
            clusters = [c for c in clusters if c["resourceGroup"].lower() == group]
        return self._send(200, {"value": clusters})

    def _location_op(self, op_id: str) -> None:
        op = self.fake.operations.get(op_id)
        if op is None:
            return self._send(404, _error("OperationNotFound", op_id))
        self.fake._advance(op)
        if op.status == "InProgress":
            return self._send(202, None, {"Location": f"{self.fake.url}{self.path}", "Retry-After": "0"})
        if op.status == "Failed":
            return self._send(500, {"error": op.error})
        return self._send(200, None)

    # ---------------------------------------------------------------- managed clusters
    def _cluster(self, method: str, rg: str, name: str, creds: bool, body: dict[str, Any],
                 query: dict[str, str]) -> None:
        fake = self.fake
        fake.api_versions["managedClusters"] = query.get("api-version", "")
        ckey = f"{rg.lower()}/{name.lower()}"
        cluster = fake.clusters.get(ckey)
        if creds:
            if method != "POST":
                return self._send(405, _error("MethodNotAllowed", method))
            if cluster is None:
                return self._send(404, _error("ResourceNotFound", f"managed cluster {name} not found"))
            value = base64.b64encode(fake._kubeconfig(cluster).encode()).decode()
            return self._send(200, {"kubeconfigs": [{"name": "clusterAdmin", "value": value}]})
        if method == "GET":
            if cluster is None:
                return self._send(404, _error(
                    "ResourceNotFound", f"The Resource 'Microsoft.ContainerService/managedClusters/"
                                        f"{name}' under resource group '{rg}' was not found."))
            return self._send(200, cluster)
        if method == "PUT":
            return self._create_cluster(rg, name, ckey, body)
        if method == "DELETE":
            if cluster is None:
                return self._send(204, None)
            cluster["properties"]["provisioningState"] = "Deleting"
            op = fake._new_op(fake.delete_polls, lambda: fake._delete_cluster_now(ckey))
            return self._send(202, None, self._async_headers(cluster["location"], op))
        return self._send(405, _error("MethodNotAllowed", method))

    def _async_headers(self, location: str, op: _Operation) -> dict[str, str]:
        url = (f"{self.fake.url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerService/"
               f"locations/{location}/operations/{op.id}?api-version=2017-08-31")
        return {"Azure-AsyncOperation": url, "Retry-After": "0"}

    def _create_cluster(self, rg: str, name: str, ckey: str, body: dict[str, Any]) -> None:
        fake = self.fake
        if rg.lower() not in fake.groups:
            return self._send(404, _error("ResourceGroupNotFound",
                                          f"Resource group '{rg}' could not be found."))
        props = body.get("properties") or {}
        pools = props.get("agentPoolProfiles") or []
        if not pools or not props.get("dnsPrefix"):
            return self._send(400, _error("InvalidParameter",
                                          "agentPoolProfiles and dnsPrefix are required"))
        if fake.quota_error:
            need = sum(int(p.get("count") or 0) for p in pools) * 4
            return self._send(400, _error(
                "QuotaExceeded",
                f"Provisioning of resource(s) for container service {name} in resource group {rg} "
                f"failed. Message: Operation could not be completed as it results in exceeding "
                f"approved standardDSv5Family Cores quota. Location: {body['location']}, Current "
                f"Limit: 0, Current Usage: 0, Additional Required: {need}."))
        location = body["location"]
        node_group = props.get("nodeResourceGroup") or f"MC_{rg}_{name}_{location}"
        cid = (f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{rg}/providers/"
               f"Microsoft.ContainerService/managedClusters/{name}")
        version = props.get("kubernetesVersion") or "1.32.7"
        if version.count(".") == 1:
            version += ".7"
        cluster = {
            "id": cid, "location": location, "name": name, "resourceGroup": rg,
            "tags": body.get("tags") or {}, "type": "Microsoft.ContainerService/ManagedClusters",
            "sku": body.get("sku") or {"name": "Base", "tier": "Free"},
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                         "tenantId": TENANT},
            "properties": {
                "provisioningState": "Creating", "powerState": {"code": "Running"},
                "kubernetesVersion": version, "currentKubernetesVersion": version,
                "dnsPrefix": props["dnsPrefix"],
                "fqdn": f"{props['dnsPrefix']}-{uuid.uuid4().hex[:8]}.hcp.{location}.azmk8s.io",
                "agentPoolProfiles": [{**p, "provisioningState": "Creating", "maxPods": 110,
                                       "orchestratorVersion": version,
                                       "currentOrchestratorVersion": version,
                                       "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202507.01.0"}
                                      for p in pools],
                "nodeResourceGroup": node_group, "enableRBAC": True,
                "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay",
                                   "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16",
                                   "dnsServiceIP": "10.0.0.10", "outboundType": "loadBalancer",
                                   "loadBalancerSku": "standard"},
                "maxAgentPools": 100}}
        fake.clusters[ckey] = cluster
        fake.groups[node_group.lower()] = fake._group_body(node_group, location, dict(cluster["tags"]),
                                                           managed_by=cid)

        def done(state: str) -> Any:
            def set_state() -> None:
                if ckey in fake.clusters:
                    fake.clusters[ckey]["properties"]["provisioningState"] = state
                    for pool in fake.clusters[ckey]["properties"]["agentPoolProfiles"]:
                        pool["provisioningState"] = state
            return set_state

        error = None
        if fake.fail_create:
            error = {"code": "VMExtensionProvisioningError",
                     "message": "Unable to establish outbound connection from agents, please see "
                                "https://learn.microsoft.com/en-us/troubleshoot/azure/"
                                "azure-kubernetes/error-code-outboundconnfailvmextensionerror"}
        op = fake._new_op(fake.create_polls, done("Succeeded"), done("Failed"), error)
        return self._send(201, cluster, self._async_headers(location, op))

    def _async_op(self, op_id: str) -> None:
        op = self.fake.operations.get(op_id)
        if op is None:
            return self._send(404, _error("OperationNotFound", op_id))
        self.fake._advance(op)
        body: dict[str, Any] = {"name": op.id, "status": op.status, "startTime": op.started}
        if op.status == "Failed":
            body["error"] = op.error
        if op.status != "InProgress":
            body["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self._send(200, body, {"Retry-After": "0"} if op.status == "InProgress" else None)

