"""AWS on loopback for the EKS provisioner: moto's server, plus what moto 5.x lacks.

- `MotoServer`: moto's `ThreadedMotoServer` on 127.0.0.1 (random port) with IAM's AWS-managed
  policies loaded. CloudFormation, EC2, IAM, STS, ELB and EKS clusters/nodegroups are moto's.
- `EksExtras`: an HTTP server in front of moto for EKS only (`AWS_ENDPOINT_URL_EKS`). It serves
  the EKS APIs moto 5.2 does not implement — addons and access entries — shaped after the EKS
  API reference (rest-json, errors in `x-amzn-ErrorType`), with the state changes moto skips
  (CREATING → ACTIVE after some polls, DELETING → gone, CREATE_FAILED with health issues). It
  forwards everything else to moto, and answers DescribeCluster with the endpoint and CA of
  `FakeEksApiServer`.
- `FakeEksApiServer`: a TLS Kubernetes API that authenticates bearer tokens the way EKS's
  aws-iam-authenticator does: decode `k8s-aws-v1.<base64url>`, require `x-k8s-aws-id` among the
  signed headers, call the presigned STS GetCallerIdentity URL (moto) and accept on 200; and the
  service-account tokens it minted itself. It stores what is POSTed and fills a
  `kubernetes.io/service-account-token` Secret in, as the token controller does.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fakes import loopback
from fakes.kubeapi import _certs


def complete_moto_stack_deletion() -> None:
    """moto 5.2's CloudFormation has no delete handler for a VPC's gateway attachment, route,
    route table, subnet association and internet gateway, so DeleteStack of any public VPC fails
    with DependencyViolation (the real service deletes them). Give those moto models the
    deletion CloudFormation performs; moto's own delete loop retries in dependency order."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.internet_gateways import InternetGateway
    from moto.ec2.models.route_tables import Route, RouteTable
    from moto.ec2.models.subnets import SubnetRouteTableAssociation
    from moto.ec2.models.vpn_gateway import VPCGatewayAttachment

    def detach(self: Any, account_id: str, region: str) -> None:
        ec2_backends[account_id][region].detach_internet_gateway(self.gateway_id, self.vpc_id)

    def disassociate(self: Any, account_id: str, region: str) -> None:
        backend = ec2_backends[account_id][region]
        table = backend.route_tables.get(self.route_table_id)
        for assoc, subnet in list(table.associations.items() if table else []):
            if subnet == self.subnet_id:
                backend.disassociate_route_table(assoc)

    def delete_route(self: Any, account_id: str, region: str) -> None:
        if self.route_table.id not in ec2_backends[account_id][region].route_tables:
            return
        ec2_backends[account_id][region].delete_route(
            self.route_table.id, self.destination_cidr_block)

    VPCGatewayAttachment.delete = detach  # type: ignore[attr-defined]
    SubnetRouteTableAssociation.delete = disassociate  # type: ignore[attr-defined]
    Route.delete = delete_route  # type: ignore[attr-defined]
    RouteTable.delete = lambda self, account_id, region: ec2_backends[account_id][  # type: ignore
        region].delete_route_table(self.id)
    InternetGateway.delete = lambda self, account_id, region: ec2_backends[account_id][  # type: ignore
        region].delete_internet_gateway(self.id)


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        complete_moto_stack_deletion()
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> MotoServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"


class _Json(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


# ---------------------------------------------------------------- EKS extras


class EksExtras:
    """Addons and access entries (absent from moto 5.2), slow states and injected failures."""

    def __init__(self, moto_url: str, *, kube: FakeEksApiServer | None = None,
                 polls_to_active: int = 1, polls_to_gone: int = 1) -> None:
        self.moto = urllib.parse.urlsplit(moto_url)
        self.kube = kube
        self.polls_to_active = polls_to_active
        self.polls_to_gone = polls_to_gone
        self.cluster_creating_polls = 0        # DescribeCluster says CREATING this many times
        self.hold_cluster_creating = False     # … or for ever (SIGINT while waiting)
        self.nodegroup_failure: tuple[str, str] | None = None   # (health code, message)
        self.addon_failure: dict[str, tuple[str, str]] = {}     # addon → (health code, message)
        self.addons: dict[tuple[str, str], dict[str, Any]] = {}
        self.access: dict[tuple[str, str], dict[str, Any]] = {}
        self.policies: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.request_times: list[float] = []   # time.time() of each entry of `requests`
        self._polls: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> EksExtras:
        fake = self

        class Handler(_Json):
            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

            def do_PUT(self) -> None:
                fake.handle(self, "PUT")

        self.server = loopback.serve(Handler, "fake-eks-extras")
        return self

    def stop(self) -> None:
        loopback.stop(self.server)

    @property
    def url(self) -> str:
        return loopback.url(self.server)

    def calls(self, method: str, prefix: str = "") -> list[tuple[str, Any]]:
        return [(p, b) for m, p, b in self.requests if m == method and p.startswith(prefix)]

    # -- dispatch

    def handle(self, h: _Json, method: str) -> None:
        raw = h._body()
        path = urllib.parse.urlsplit(h.path).path
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append((method, path, body))
            self.request_times.append(time.time())
        if len(parts) >= 3 and parts[0] == "clusters" and parts[2] == "addons":
            return self._addons(h, method, parts, body)
        if len(parts) >= 3 and parts[0] == "clusters" and parts[2] == "access-entries":
            return self._access(h, method, parts, body)
        code, headers, data = self._forward(h, method, raw)
        if code == 200 and method == "GET" and len(parts) == 2 and parts[0] == "clusters":
            data = self._cluster_view(parts[1], data)
        elif code == 200 and method == "GET" and len(parts) == 4 and parts[2] == "node-groups" \
                and self.nodegroup_failure:
            doc = json.loads(data)
            code_, message = self.nodegroup_failure
            doc["nodegroup"]["status"] = "CREATE_FAILED"
            doc["nodegroup"]["health"] = {"issues": [{"code": code_, "message": message,
                                                      "resourceIds": []}]}
            data = json.dumps(doc).encode()
        elif code == 200 and method == "DELETE" and len(parts) == 2 and parts[0] == "clusters":
            with self._lock:
                for store in (self.addons, self.access, self.policies):
                    for key in [k for k in store if k[0] == parts[1]]:
                        del store[key]
        h.send_response(code)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date",
                                   "server"):
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _forward(self, h: _Json, method: str, raw: bytes) -> tuple[int, list[tuple[str, str]],
                                                                      bytes]:
        conn = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() != "host"}
            headers["Host"] = self.moto.netloc
            conn.request(method, h.path, body=raw or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _poll(self, *key: str) -> int:
        with self._lock:
            self._polls[key] = self._polls.get(key, 0) + 1
            return self._polls[key]

    def _cluster_view(self, name: str, data: bytes) -> bytes:
        doc = json.loads(data)
        cluster = doc["cluster"]
        if self.hold_cluster_creating or self._poll("cluster", name) <= \
                self.cluster_creating_polls:
            cluster["status"] = "CREATING"
        if self.kube is not None:
            cluster["endpoint"] = self.kube.url
            cluster["certificateAuthority"] = {"data": base64.b64encode(
                self.kube.certs["ca"]).decode()}
        return json.dumps(doc).encode()

    def _cluster_exists(self, name: str) -> bool:
        conn = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=30)
        try:
            conn.request("GET", f"/clusters/{urllib.parse.quote(name)}", headers={
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/eks/"
                                 "aws4_request, SignedHeaders=host, Signature=x"})
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        finally:
            conn.close()

    @staticmethod
    def _error(h: _Json, status: int, code: str, message: str) -> None:
        h._send(status, {"message": message}, {"x-amzn-ErrorType": code})

    # -- addons (CreateAddon, DescribeAddon, DeleteAddon, ListAddons)

    def _addons(self, h: _Json, method: str, parts: list[str], body: Any) -> None:
        cluster = parts[1]
        if not self._cluster_exists(cluster):
            return self._error(h, 404, "ResourceNotFoundException",
                               f"No cluster found for name: {cluster}.")
        if method == "POST" and len(parts) == 3:
            name = body["addonName"]
            with self._lock:
                if (cluster, name) in self.addons:
                    return self._error(h, 409, "ResourceInUseException",
                                       f"Addon already exists with name: {name}")
                now = time.time()
                addon = {
                    "addonName": name, "clusterName": cluster, "status": "CREATING",
                    "addonVersion": body.get("addonVersion") or "v1.0.0-eksbuild.1",
                    "health": {"issues": []},
                    "addonArn": f"arn:aws:eks:us-east-1:123456789012:addon/{cluster}/{name}/x",
                    "createdAt": now, "modifiedAt": now, "tags": body.get("tags") or {},
                    "podIdentityAssociations": [
                        f"arn:aws:eks:us-east-1:123456789012:podidentityassociation/{cluster}/"
                        f"a-{i}" for i, _ in enumerate(body.get("podIdentityAssociations") or [])],
                }
                if body.get("configurationValues"):
                    addon["configurationValues"] = body["configurationValues"]
                self.addons[(cluster, name)] = addon
            return h._send(200, {"addon": addon})
        if method == "GET" and len(parts) == 3:
            return h._send(200, {"addons": sorted(n for c, n in self.addons if c == cluster)})
        name = parts[3]
        with self._lock:
            addon = self.addons.get((cluster, name))
        if addon is None:
            return self._error(h, 404, "ResourceNotFoundException",
                               f"No addon: {name} found in cluster: {cluster}")
        if method == "DELETE":
            addon["status"] = "DELETING"
            self._polls.pop(("addon-gone", cluster, name), None)
            return h._send(200, {"addon": addon})
        polls = self._poll(f"addon-{addon['status']}", cluster, name)
        if addon["status"] == "CREATING" and polls >= self.polls_to_active:
            failure = self.addon_failure.get(name)
            addon["status"] = "CREATE_FAILED" if failure else "ACTIVE"
            if failure:
                addon["health"] = {"issues": [{"code": failure[0], "message": failure[1],
                                               "resourceIds": []}]}
        elif addon["status"] == "DELETING" and polls >= self.polls_to_gone:
            with self._lock:
                self.addons.pop((cluster, name), None)
            return self._error(h, 404, "ResourceNotFoundException",
                               f"No addon: {name} found in cluster: {cluster}")
        return h._send(200, {"addon": addon})

    # -- access entries (CreateAccessEntry, AssociateAccessPolicy, List/Describe)

    def _access(self, h: _Json, method: str, parts: list[str], body: Any) -> None:
        cluster = parts[1]
        if not self._cluster_exists(cluster):
            return self._error(h, 404, "ResourceNotFoundException",
                               f"No cluster found for name: {cluster}.")
        if method == "POST" and len(parts) == 3:
            principal = body["principalArn"]
            with self._lock:
                if (cluster, principal) in self.access:
                    return self._error(h, 409, "ResourceInUseException",
                                       "The specified access entry resource is already in use "
                                       "on this cluster.")
                entry = {"clusterName": cluster, "principalArn": principal,
                         "kubernetesGroups": body.get("kubernetesGroups") or [],
                         "accessEntryArn": f"arn:aws:eks:us-east-1:123456789012:access-entry/"
                                           f"{cluster}/x", "createdAt": time.time(),
                         "modifiedAt": time.time(), "tags": body.get("tags") or {},
                         "username": principal, "type": body.get("type") or "STANDARD"}
                self.access[(cluster, principal)] = entry
            return h._send(200, {"accessEntry": entry})
        if method == "GET" and len(parts) == 3:
            return h._send(200, {"accessEntries": sorted(p for c, p in self.access
                                                         if c == cluster)})
        principal = parts[3]
        if (cluster, principal) not in self.access:
            return self._error(h, 404, "ResourceNotFoundException",
                               f"The specified principalArn could not be found: {principal}")
        if method == "POST" and len(parts) == 5 and parts[4] == "access-policies":
            policy = {"policyArn": body["policyArn"], "accessScope": body["accessScope"],
                      "associatedAt": time.time(), "modifiedAt": time.time()}
            self.policies.setdefault((cluster, principal), []).append(policy)
            return h._send(200, {"clusterName": cluster, "principalArn": principal,
                                 "associatedAccessPolicy": policy})
        if method == "GET" and len(parts) == 4:
            return h._send(200, {"accessEntry": self.access[(cluster, principal)]})
        return self._error(h, 400, "InvalidRequestException", f"unsupported: {method} {parts}")


# ---------------------------------------------------------------- the cluster's API server


class FakeEksApiServer:
    """TLS Kubernetes API with EKS-style token authentication (STS presigned URL)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="fake-eks-api-"))
        self.certs = _certs(self._dir)
        self.objects: dict[str, dict[str, Any]] = {}   # API path of the object → object
        self.sa_tokens: dict[str, str] = {}            # minted service-account tokens
        self.identities: list[str] = []
        self.rejected: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> FakeEksApiServer:
        fake = self

        class Handler(_Json):
            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self._dir / "server_cert.pem", self._dir / "server_key.pem")
        self.server = loopback.serve(Handler, "fake-eks-api", tls)
        return self

    def stop(self) -> None:
        loopback.stop(self.server)

    @property
    def url(self) -> str:
        return loopback.url(self.server, "https")

    def authenticate(self, header: str) -> str | None:
        """The caller's ARN, as the authenticator would find it, or None (401)."""
        token = header.removeprefix("Bearer ").strip()
        if not token.startswith("k8s-aws-v1."):
            return None
        b64 = token.removeprefix("k8s-aws-v1.")
        url = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        if "x-k8s-aws-id" not in query.get("X-Amz-SignedHeaders", [""])[0].split(";") or \
                query.get("Action") != ["GetCallerIdentity"]:
            return None
        # moto's single-port server routes by the Authorization header's credential scope, so
        # the presigned query's scope is repeated there (moto checks no signature either way)
        scope = query.get("X-Amz-Credential", [""])[0]
        request = urllib.request.Request(url, headers={
            "x-k8s-aws-id": "cluster",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
                             "Signature=presigned"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                text = resp.read().decode()
        except urllib.error.URLError:
            return None
        start = text.find("<Arn>")
        return text[start + 5:text.find("</Arn>")] if start >= 0 else None

    def handle(self, h: _Json, method: str) -> None:
        header = h.headers.get("Authorization", "")
        bearer = header.removeprefix("Bearer ").strip()
        identity = self.sa_tokens.get(bearer) or self.authenticate(header)
        if identity is None:
            self.rejected.append(h.path)
            return h._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "Unauthorized", "reason": "Unauthorized",
                                 "code": 401})
        self.identities.append(identity)
        path = urllib.parse.urlsplit(h.path).path.rstrip("/")
        if method == "POST":
            body = json.loads(h._body())
            key = f"{path}/{body['metadata']['name']}"
            if key in self.objects:
                return h._send(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "AlreadyExists", "code": 409,
                                     "message": f"{body['metadata']['name']} already exists"})
            body["metadata"].update({"uid": uuid.uuid4().hex, "resourceVersion": "1",
                                     "creationTimestamp": "2026-01-01T00:00:00Z"})
            if body.get("type") == "kubernetes.io/service-account-token":
                # the token controller fills the Secret in (here: at once)
                token = "eyJhbGciOiJSUzI1NiJ9." + uuid.uuid4().hex
                account = body["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                self.sa_tokens[token] = (f"system:serviceaccount:"
                                         f"{body['metadata']['namespace']}:{account}")
                body["data"] = {"token": base64.b64encode(token.encode()).decode()}
            self.objects[key] = body
            return h._send(201, body)
        if path in self.objects:
            return h._send(200, self.objects[path])
        return h._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "message": f"{h.path} not found",
                             "code": 404})

    def object(self, kind_path: str, name: str) -> dict[str, Any]:
        return self.objects[f"{kind_path}/{name}"]


@contextlib.contextmanager
def aws_on_loopback(monkeypatch: Any = None) -> Any:
    """moto + EKS extras + the cluster API, and the environment botocore reads to reach them."""
    moto = MotoServer().start()
    kube = FakeEksApiServer().start()
    extras = EksExtras(moto.url, kube=kube).start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.url,
           "AWS_ENDPOINT_URL_EKS": extras.url}
    try:
        yield moto, extras, kube, env
    finally:
        extras.stop()
        kube.stop()
        moto.stop()
