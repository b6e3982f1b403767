"""A small loopback fake of the GKE API (container.googleapis.com v1, REST) and Google's OAuth2
token endpoint.

Shapes follow googleapis `google/container/v1/cluster_service.proto` and its HTTP bindings (see
recordings/SOURCES.md): `POST /v1/projects/{p}/locations/{l}/clusters` with `{"cluster": …}`
answers an `Operation` (`CREATE_CLUSTER`, `PENDING`); `GET …/operations/{op}` moves it
`PENDING` → `RUNNING` → `DONE` (with `error` when it failed); `GET/DELETE …/clusters/{c}`;
`GET …/clusters` (location `-` lists all). Errors are `google.rpc.Status` JSON.

The token endpoint takes the service-account JWT-bearer grant google-auth sends (`token_uri` of
the key file the test writes) and hands out opaque tokens; the API accepts only those, or a
self-signed JWT of that service account.

Knobs: `create_polls`/`delete_polls`, `fail_create` (operation ends DONE with an error, cluster
ERROR), `quota_error` (403 "Insufficient regional quota"), `requests` (method, path).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fakes import loopback

PROJECT = "mlflow-matrix-test"
SA_EMAIL = f"matrix-ci@{PROJECT}.iam.gserviceaccount.com"

_CLUSTERS = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters$")
_CLUSTER = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/:]+)$")
_OPERATION = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/operations/([^/]+)$")


@dataclass
class _Op:
    body: dict[str, Any]
    polls_left: int
    on_done: Any
    error: dict[str, Any] | None = None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _status(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


class FakeGke:
    """`with FakeGke(tmp_path) as gke:`; `gke.url` is the API endpoint (http, loopback)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.lock = threading.Lock()
        self.clusters: dict[str, dict[str, Any]] = {}   # "location/name" → cluster
        self.operations: dict[str, _Op] = {}
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.create_polls = 2
        self.delete_polls = 2
        self.fail_create = False
        self.quota_error = False
        self._server: ThreadingHTTPServer | None = None
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_pem = key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()

    def __enter__(self) -> FakeGke:
        self._server = loopback.serve(type("Handler", (_Handler,), {"fake": self}), "fake-gke")
        return self

    def __exit__(self, *exc: object) -> None:
        loopback.stop(self._server)

    @property
    def url(self) -> str:
        return loopback.url(self._server)

    def key_file(self) -> Path:
        """A service-account key file (the shape `gcloud iam service-accounts keys create`
        writes) whose token_uri is this fake."""
        path = self.workdir / "fake-gcp-sa.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT,
            "private_key_id": uuid.uuid4().hex, "private_key": self._key_pem,
            "client_email": SA_EMAIL, "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.url}/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{SA_EMAIL}",
            "universe_domain": "googleapis.com"}), encoding="utf-8")
        return path

    def add_cluster(self, name: str, location: str = "us-central1-a",
                    labels: dict[str, str] | None = None) -> None:
        """A cluster someone else made (the janitor must leave it alone without our label)."""
        with self.lock:
            self.clusters[f"{location}/{name}"] = self._cluster_body(
                PROJECT, location, {"name": name, "resourceLabels": labels or {}}, "RUNNING")

    def cluster_names(self) -> list[str]:
        with self.lock:
            return sorted(c["name"] for c in self.clusters.values())

    def _cluster_body(self, project: str, location: str, spec: dict[str, Any],
                      status: str) -> dict[str, Any]:
        name = spec["name"]
        version = spec.get("initialClusterVersion") or "1.32.4-gke.1415000"
        if version.count(".") == 1:
            version += ".4-gke.1415000"
        ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nZmFrZS1jYQ==\n-----END CERTIFICATE-----\n")
        link = f"https://container.googleapis.com/v1/projects/{project}/zones/{location}/clusters/{name}"
        pools = []
        for pool in spec.get("nodePools") or []:
            pools.append({**pool, "version": version, "status": "PROVISIONING",
                          "selfLink": f"{link}/nodePools/{pool['name']}",
                          "locations": [location], "podIpv4CidrSize": 24})
        return {
            "name": name, "location": location, "zone": location, "status": status,
            "resourceLabels": spec.get("resourceLabels") or {},
            "labelFingerprint": uuid.uuid4().hex[:16],
            "initialClusterVersion": version, "currentMasterVersion": version,
            "currentNodeVersion": version, "currentNodeCount": sum(
                int(p.get("initialNodeCount") or 0) for p in pools),
            "endpoint": f"34.118.{len(self.clusters) % 250}.10",
            "masterAuth": {"clusterCaCertificate": ca.decode()},
            "nodePools": pools, "network": "default", "subnetwork": "default",
            "clusterIpv4Cidr": "10.96.0.0/14", "servicesIpv4Cidr": "34.118.224.0/20",
            "selfLink": link, "createTime": _now(),
            "locations": [location], "releaseChannel": {"channel": "REGULAR"}}

    def _new_op(self, project: str, location: str, kind: str, target: str, polls: int,
                on_done: Any, error: dict[str, Any] | None = None) -> dict[str, Any]:
        op_id = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        body = {
            "name": op_id, "zone": location, "location": location, "operationType": kind,
            "status": "PENDING", "startTime": _now(),
            "selfLink": f"https://container.googleapis.com/v1/projects/{project}/zones/{location}/"
                        f"operations/{op_id}",
            "targetLink": target}
        self.operations[op_id] = _Op(body, polls, on_done, error)
        return body

    def _advance(self, op: _Op) -> None:
        body = op.body
        if body["status"] == "DONE":
            return
        if body["status"] == "PENDING":
            body["status"] = "RUNNING"
            return
        if op.polls_left > 0:
            op.polls_left -= 1
            return
        body["status"] = "DONE"
        body["endTime"] = _now()
        if op.error:
            body["error"] = op.error
            body["statusMessage"] = op.error["message"]
        op.on_done()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGke
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if token in self.fake.tokens or self._self_signed(token):
            return True
        self._send(401, _status(401, "UNAUTHENTICATED",
                                "Request had invalid authentication credentials. Expected OAuth 2 "
                                "access token, login cookie or other valid authentication credential."))
        return False

    @staticmethod
    def _self_signed(token: str) -> bool:
        parts = token.split(".")
        if len(parts) != 3:
            return False
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return False
        return claims.get("iss") == SA_EMAIL

    def do_POST(self) -> None:
        self._route("POST")

    def do_GET(self) -> None:
        self._route("GET")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        parsed = urlparse(self.path)
        path = parsed.path
        raw = self._read()
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, path))
        if path == "/token" and method == "POST":
            return self._token(raw)
        if not self._authorized():
            return None
        with fake.lock:
            if m := _CLUSTERS.match(path):
                if method == "POST":
                    return self._create(m.group(1), m.group(2), json.loads(raw or b"{}"))
                if method == "GET":
                    loc = m.group(2)
                    found = [c for c in fake.clusters.values() if loc in ("-", c["location"])]
                    return self._send(200, {"clusters": found} if found else {})
            if m := _CLUSTER.match(path):
                return self._cluster(method, m.group(1), m.group(2), m.group(3))
            if (m := _OPERATION.match(path)) and method == "GET":
                op = fake.operations.get(m.group(3))
                if op is None:
                    return self._send(404, _status(404, "NOT_FOUND", f"Operation {m.group(3)} not found."))
                fake._advance(op)
                return self._send(200, op.body)
        return self._send(404, _status(404, "NOT_FOUND", f"{method} {path} is not served by the fake"))

    def _token(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" \
                or not self._self_signed(form.get("assertion", "")):
            return self._send(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        token = "ya29.fake-" + uuid.uuid4().hex
        with self.fake.lock:
            self.fake.tokens.add(token)
        return self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _create(self, project: str, location: str, body: dict[str, Any]) -> None:
        fake = self.fake
        spec = body.get("cluster") or {}
        name = spec.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):
            return self._send(400, _status(400, "INVALID_ARGUMENT", f"Invalid cluster name {name!r}."))
        for key, value in (spec.get("resourceLabels") or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) \
                    or not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
                return self._send(400, _status(400, "INVALID_ARGUMENT",
                                               f"Invalid resource label {key}={value!r}: keys and values "
                                               "must be lowercase letters, digits, _ or -, at most 63."))
        ckey = f"{location}/{name}"
        if ckey in fake.clusters:
            return self._send(409, _status(409, "ALREADY_EXISTS", f"Already exists: projects/{project}/"
                                                                  f"locations/{location}/clusters/{name}."))
        if fake.quota_error:
            nodes = sum(int(p.get("initialNodeCount") or 0) for p in spec.get("nodePools") or [])
            return self._send(403, _status(
                403, "PERMISSION_DENIED",
                f"Insufficient regional quota to satisfy request: resource \"CPUS\": request requires "
                f"'{nodes * 4}.0' and is short '{nodes * 4}.0'. project has a quota of '0.0' with "
                f"'0.0' available. View and manage quotas at https://console.cloud.google.com/"
                f"iam-admin/quotas?usage=USED&project={project}."))
        cluster = fake._cluster_body(project, location, spec, "PROVISIONING")
        fake.clusters[ckey] = cluster
        error = None
        if fake.fail_create:
            error = {"code": 13, "message": "All cluster resources were brought up, but: only 0 nodes "
                                            "out of 2 have registered; this is likely due to Nodes "
                                            "failing to start correctly; try re-creating the cluster "
                                            "or contact support if that doesn't work."}

        def done() -> None:
            if ckey in fake.clusters:
                fake.clusters[ckey]["status"] = "ERROR" if error else "RUNNING"
                for pool in fake.clusters[ckey]["nodePools"]:
                    pool["status"] = "ERROR" if error else "RUNNING"

        op = fake._new_op(project, location, "CREATE_CLUSTER", cluster["selfLink"], fake.create_polls,
                          done, error)
        return self._send(200, op)

    def _cluster(self, method: str, project: str, location: str, name: str) -> None:
        fake = self.fake
        ckey = f"{location}/{name}"
        cluster = fake.clusters.get(ckey)
        if cluster is None:
            return self._send(404, _status(404, "NOT_FOUND", f"Not found: projects/{project}/locations/"
                                                             f"{location}/clusters/{name}."))
        if method == "GET":
            return self._send(200, cluster)
        if method == "DELETE":
            busy = [o for o in fake.operations.values() if o.body["targetLink"] == cluster["selfLink"]
                    and o.body["status"] != "DONE"]
            if busy:
                fake._advance(busy[0])   # time passes while the client retries
                return self._send(400, _status(
                    400, "FAILED_PRECONDITION",
                    f"Operation {busy[0].body['name']} is currently "
                    f"{'creating' if busy[0].body['operationType'] == 'CREATE_CLUSTER' else 'deleting'}"
                    f" cluster {name}. Please wait and try again once it is done."))
            cluster["status"] = "STOPPING"
            op = fake._new_op(project, location, "DELETE_CLUSTER", cluster["selfLink"],
                              fake.delete_polls, lambda: fake.clusters.pop(ckey, None))
            return self._send(200, op)
        return self._send(405, _status(405, "METHOD_NOT_ALLOWED", method))
