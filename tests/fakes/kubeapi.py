"""A small in-process fake of the Kubernetes API endpoints the harness calls (via lightkube).

HTTPS on 127.0.0.1 with a throwaway CA, a server certificate and a client certificate the
server requires — the kubeconfig it hands out has the shape `microk8s config` prints. Objects
follow what the charms create: `mlflow-server` is a NodePort Service (the charm's
KubernetesServicePatch, ports 5000/8000), `mlflow-minio` a ClusterIP Service (9000/9001), pods
`<app>-0` with the charm containers, one Ready node. Every namespace (Juju model) gets the same
objects.

`backends` maps an app to a loopback port: node ports the API server allocates for that app's
Services are that port (the node is 127.0.0.1), and a port-forward to its pod is relayed to it —
so a client really reaches the process behind the fake cluster.

Node ports are one cluster-wide range, as in a real API server: the charm's Service asks for
its fixed node ports (`mlflow_nodeport` 31380, `mlflow_prometheus_exporter_nodeport` 31381)
while `enable_mlflow_nodeport` is true; a second namespace asking for the same ports is refused
(422 `provided port is already allocated`), the charm's KubernetesServicePatch only logs that,
and the Service keeps Juju's ClusterIP placeholder port 65535. A Service POSTed with a taken
`nodePort` gets the same 422. `attach(world)` gives the fake the fake CLIs' state (each Juju
model's charm config, and how often a refresh replaced a pod).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import ipaddress
import json
import socket
import ssl
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fakes import loopback

APP_LABEL = "app.kubernetes.io/name"
# The charms' pods: (container, port); the `charm` container opens none.
CONTAINERS: dict[str, list[tuple[str, int | None]]] = {
    "mlflow-server": [("charm", None), ("mlflow-server", 5000),
                      ("mlflow-prometheus-exporter", 8000)],
    "mlflow-minio": [("charm", None), ("minio", 9000)],
    "mlflow-mysql": [("charm", None), ("mysql", 3306)],
}


def _certs(where: Path) -> dict[str, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("10.152.183.1")).issuer_name(
        name("10.152.183.1")).public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, org: str | None, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    server_cert, server_key = leaf("kube-apiserver", None, True)
    client_cert, client_key = leaf("admin", "system:masters", False)
    out = {"ca": ca.public_bytes(serialization.Encoding.PEM), "server_cert": server_cert,
           "server_key": server_key, "client_cert": client_cert, "client_key": client_key}
    for key, value in out.items():
        (where / f"{key}.pem").write_bytes(value)
    return out


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKubeAPI:
    def __init__(self, *, backends: dict[str, int] | None = None, crashloop: bool = False,
                 secrets: dict[str, dict[str, str]] | None = None,
                 lb_pending_polls: int = 0, lb_ip: str = "10.64.140.43",
                 missing_services: int = 0, log_secret: str = "") -> None:
        self.backends = dict(backends or {})
        self.log_secret = log_secret  # printed in container logs, to check redaction
        self.crashloop = crashloop
        self.secrets = dict(secrets or {})
        self.lb_pending_polls = lb_pending_polls
        self.lb_ip = lb_ip
        self.missing_services = missing_services  # answer 404 for this many Service GETs
        self.created: dict[tuple[str, str], dict[str, Any]] = {}
        self.generation: dict[str, int] = {}        # pod → times it was deleted (and recreated)
        self.not_ready_polls: dict[str, int] = {}   # pod → GETs answered "not Ready" after that
        self.seen_refreshes: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str]] = []
        self.forwards: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._next_port = 30100
        self.allocated: dict[int, tuple[str, str]] = {}   # node port → (namespace, Service)
        self.world: Any = lambda: {}                     # the fake CLIs' state (attach())
        self._dir = Path(tempfile.mkdtemp(prefix="fake-kubeapi-"))
        self.certs = _certs(self._dir)
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(_Handler):
            fake = api

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._dir / "server_cert.pem", self._dir / "server_key.pem")
        context.load_verify_locations(self._dir / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        self.server = loopback.serve(Handler, "fake-kubeapi", context)
        return self

    def stop(self) -> None:
        loopback.stop(self.server)

    @property
    def url(self) -> str:
        return loopback.url(self.server, "https")

    def kubeconfig(self, *, cluster: str = "microk8s-cluster", user: str = "admin",
                   context: str = "microk8s") -> str:
        b64 = {k: base64.b64encode(v).decode() for k, v in self.certs.items()}
        return (
            "apiVersion: v1\n"
            "clusters:\n"
            "- cluster:\n"
            f"    certificate-authority-data: {b64['ca']}\n"
            f"    server: {self.url}\n"
            f"  name: {cluster}\n"
            "contexts:\n"
            "- context:\n"
            f"    cluster: {cluster}\n"
            f"    user: {user}\n"
            f"  name: {context}\n"
            f"current-context: {context}\n"
            "kind: Config\n"
            "preferences: {}\n"
            "users:\n"
            f"- name: {user}\n"
            "  user:\n"
            f"    client-certificate-data: {b64['client_cert']}\n"
            f"    client-key-data: {b64['client_key']}\n")

    def attach(self, world: Any) -> FakeKubeAPI:
        """Read the Juju models (charm config, refreshes) from the fake CLIs' state."""
        self.world = world
        return self

    def _model(self, ns: str) -> dict[str, Any]:
        for key, model in (self.world().get("models") or {}).items():
            if key.split(":", 1)[-1] == ns:
                return model
        return {}

    # -- objects

    def allocate(self, ns: str, service: str, port: int) -> bool:
        """Claim a node port cluster-wide; False when another Service holds it."""
        with self._lock:
            owner = self.allocated.setdefault(port, (ns, service))
            return owner == (ns, service)

    def node_port(self, app: str) -> int:
        if app in self.backends:
            return self.backends[app]
        with self._lock:
            self._next_port += 1
            return self._next_port

    def services(self, ns: str) -> dict[str, dict[str, Any]]:
        meta = {"namespace": ns, "creationTimestamp": "2025-06-09T20:05:40Z"}
        base = {
            "mlflow-server": self._server_service(ns, meta),
            "mlflow-minio": {
                "metadata": {"name": "mlflow-minio", "labels": {APP_LABEL: "mlflow-minio"},
                             **meta},
                "spec": {"type": "ClusterIP", "selector": {APP_LABEL: "mlflow-minio"},
                         "clusterIP": "10.152.183.46",
                         "ports": [{"name": "minio", "port": 9000, "targetPort": 9000,
                                    "protocol": "TCP"},
                                   {"name": "console", "port": 9001, "targetPort": 9001,
                                    "protocol": "TCP"}]},
                "status": {"loadBalancer": {}}},
        }
        for (namespace, name), obj in self.created.items():
            if namespace == ns:
                base[name] = obj
        return base

    def _server_service(self, ns: str, meta: dict[str, Any]) -> dict[str, Any]:
        """The charm's Service: patched to NodePort 31380/31381 when the ports are free, else
        Juju's placeholder (the patch failed with 422 and the charm only logged it)."""
        config = (self._model(ns).get("config") or {}).get("mlflow-server") or {}
        nodeport = config.get("enable_mlflow_nodeport", True) is not False
        ports = [{"name": "mlflow-server", "port": 5000, "targetPort": 5000, "protocol": "TCP"},
                 {"name": "mlflow-server-prometheus-exporter", "port": 8000,
                  "targetPort": 8000, "protocol": "TCP"}]
        kind = "ClusterIP"
        if nodeport:
            wanted = (int(config.get("mlflow_nodeport", 31380)),
                      int(config.get("mlflow_prometheus_exporter_nodeport", 31381)))
            if all(self.allocate(ns, "mlflow-server", port) for port in wanted):
                kind = "NodePort"
                ports[0]["nodePort"] = self.backends.get("mlflow-server", wanted[0])
                ports[1]["nodePort"] = wanted[1]
            else:
                ports = [{"name": "placeholder", "port": 65535, "targetPort": 65535,
                          "protocol": "TCP"}]
        return {"metadata": {"name": "mlflow-server", "labels": {APP_LABEL: "mlflow-server"},
                             **meta},
                "spec": {"type": kind, "selector": {APP_LABEL: "mlflow-server"},
                         "clusterIP": "10.152.183.247", "ports": ports},
                "status": {"loadBalancer": {}}}

    def pods(self, ns: str) -> list[dict[str, Any]]:
        def pod(app: str, containers: list[tuple[str, int | None]], broken: str | None = None):
            statuses = []
            for cname, _ in containers:
                if cname == broken:
                    statuses.append({"name": cname, "ready": False, "restartCount": 5,
                                     "image": "charmedkubeflow/mlflow:2.22.0", "imageID": "",
                                     "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                           "message": "back-off 2m40s restarting "
                                                           "failed container"}},
                                     "lastState": {"terminated": {"exitCode": 1,
                                                                  "reason": "Error"}}})
                else:
                    statuses.append({"name": cname, "ready": True, "restartCount": 0,
                                     "image": "img", "imageID": "",
                                     "state": {"running": {"startedAt": "2025-06-09T20:06:00Z"}}})
            name = f"{app}-0"
            replaced = (self._model(ns).get("pods") or {}).get(app, 0)
            if replaced != self.seen_refreshes.setdefault((ns, name), 0):
                self.seen_refreshes[(ns, name)] = replaced   # a refresh replaced the pod:
                self.not_ready_polls[name] = 2               # Ready only after a while
            if self.not_ready_polls.get(name, 0) > 0:
                broken = containers[-1][0]
            generation = self.generation.get(name, 0) + replaced
            return {
                "metadata": {"name": name, "namespace": ns, "labels": {APP_LABEL: app},
                             "uid": f"{name}-uid-{generation}"},
                "spec": {"containers": [{"name": c, **({"ports": [{"containerPort": p}]}
                                                       if p else {})} for c, p in containers]},
                "status": {"phase": "Running", "podIP": "10.1.90.161",
                           "conditions": [{"type": "Ready",
                                           "status": "False" if broken else "True"}],
                           "containerStatuses": statuses}}

        broken = "mlflow-server" if self.crashloop else None
        return [pod(app, containers, broken if app == "mlflow-server" else None)
                for app, containers in CONTAINERS.items()]

    def unused_port(self) -> int:
        """A node port no process listens behind (a Service targeting a port no container
        opens: connections are refused, as the real node's kube-proxy would leave them)."""
        with self._lock:
            self._next_port += 1
            return self._next_port

    def events(self, ns: str) -> list[dict[str, Any]]:
        return [
            {"metadata": {"name": "mlflow-server-0.1", "namespace": ns},
             "involvedObject": {"kind": "Pod", "name": "mlflow-server-0", "namespace": ns},
             "reason": "BackOff", "type": "Warning", "lastTimestamp": "2025-06-09T20:13:00Z",
             "message": "Back-off restarting failed container mlflow-server in pod "
                        "mlflow-server-0"},
            {"metadata": {"name": "mlflow-server-0.0", "namespace": ns},
             "involvedObject": {"kind": "Pod", "name": "mlflow-server-0", "namespace": ns},
             "reason": "Scheduled", "type": "Normal", "lastTimestamp": "2025-06-09T20:05:41Z",
             "message": f"Successfully assigned {ns}/mlflow-server-0 to fake-node"},
        ]


def _invalid_node_port(name: str, index: int, port: int) -> dict[str, Any]:
    """The API server's answer to a Service asking for a node port another Service holds."""
    field = f"spec.ports[{index}].nodePort"
    body = _status(422, "Invalid", f'Service "{name}" is invalid: {field}: Invalid value: '
                                   f"{port}: provided port is already allocated")
    body["details"] = {"name": name, "kind": "Service", "causes": [
        {"reason": "FieldValueInvalid", "field": field,
         "message": f"Invalid value: {port}: provided port is already allocated"}]}
    return body


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[list[str], dict[str, list[str]]]:
        url = urlparse(self.path)
        self.fake.requests.append((self.command, url.path))
        return [p for p in url.path.split("/") if p], parse_qs(url.query)

    def do_GET(self) -> None:
        parts, query = self._route()
        fake = self.fake
        if parts == ["api", "v1", "nodes"]:
            node = {"metadata": {"name": "fake-node"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                             {"type": "Hostname", "address": "fake-node"}],
                               "conditions": [{"type": "Ready", "status": "True"}]}}
            return self._send(200, {"kind": "NodeList", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": "1"}, "items": [node]})
        if len(parts) >= 5 and parts[:3] == ["api", "v1", "namespaces"]:
            ns, kind = parts[3], parts[4]
            name = parts[5] if len(parts) > 5 else None
            sub = parts[6] if len(parts) > 6 else None
            if kind == "services":
                services = fake.services(ns)
                if name is None:
                    return self._list("ServiceList", list(services.values()))
                if fake.missing_services > 0:
                    fake.missing_services -= 1
                    return self._send(404, _status(404, "NotFound",
                                                   f'services "{name}" not found'))
                if name not in services:
                    return self._send(404, _status(404, "NotFound",
                                                   f'services "{name}" not found'))
                obj = copy.deepcopy(services[name])
                if obj["spec"]["type"] == "LoadBalancer":
                    if fake.lb_pending_polls > 0:
                        fake.lb_pending_polls -= 1
                    else:
                        obj["status"] = {"loadBalancer": {"ingress": [{"ip": fake.lb_ip}]}}
                return self._send(200, obj)
            if kind == "pods":
                pods = fake.pods(ns)
                if name is None:
                    wanted = dict(item.split("=", 1) for item in
                                  query.get("labelSelector", [""])[0].split(",") if item)
                    selected = [p for p in pods if all(p["metadata"]["labels"].get(k) == v
                                                       for k, v in wanted.items())]
                    return self._list("PodList", selected)
                if sub is None:
                    pod = next((p for p in pods if p["metadata"]["name"] == name), None)
                    if pod is None:
                        return self._send(404, _status(404, "NotFound",
                                                       f'pods "{name}" not found'))
                    if fake.not_ready_polls.get(name, 0) > 0:
                        fake.not_ready_polls[name] -= 1
                    return self._send(200, pod)
                if sub == "log":
                    container = query.get("container", [""])[0]
                    lines = [f"2025-06-09 20:13:0{i} INFO {container} line {i}\n"
                             for i in range(3)]
                    if fake.log_secret:
                        lines.append(f"Error: the S3 key {fake.log_secret} was rejected\n")
                    return self._send(200, "".join(lines), "text/plain")
                if sub == "portforward":
                    return self._port_forward(ns, name, int(query.get("ports", ["0"])[0]))
            if kind == "events":
                return self._list("EventList", fake.events(ns))
            if kind == "secrets" and name:
                if name not in fake.secrets:
                    return self._send(404, _status(404, "NotFound",
                                                   f'secrets "{name}" not found'))
                data = {k: base64.b64encode(v.encode()).decode()
                        for k, v in fake.secrets[name].items()}
                return self._send(200, {"metadata": {"name": name, "namespace": ns},
                                        "type": "Opaque", "data": data})
        return self._send(404, _status(404, "NotFound", f"the fake has no {self.path}"))

    def do_POST(self) -> None:
        parts, _ = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "services":
            ns, name = parts[3], body["metadata"]["name"]
            if name in self.fake.services(ns):
                return self._send(409, _status(409, "AlreadyExists",
                                               f'services "{name}" already exists'))
            app = (body["spec"].get("selector") or {}).get(APP_LABEL, "")
            if body["spec"].get("type") in ("NodePort", "LoadBalancer"):
                for index, port in enumerate(body["spec"]["ports"]):
                    wanted = port.get("nodePort")
                    if wanted and not self.fake.allocate(ns, name, int(wanted)):
                        return self._send(422, _invalid_node_port(name, index, int(wanted)))
                    target = int(port.get("targetPort") or port["port"])
                    opened = {p for _, p in CONTAINERS.get(app, []) if p}
                    port.setdefault("nodePort", self.fake.node_port(app) if target in opened
                                    else self.fake.unused_port())
            body["metadata"]["namespace"] = ns
            body["status"] = {"loadBalancer": {}}
            self.fake.created[(ns, name)] = body
            return self._send(201, body)
        return self._send(404, _status(404, "NotFound", f"the fake has no POST {self.path}"))

    def do_DELETE(self) -> None:
        parts, _ = self._route()
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            name = parts[5]
            self.fake.generation[name] = self.fake.generation.get(name, 0) + 1
            self.fake.not_ready_polls[name] = 2
            return self._send(200, {"kind": "Pod", "apiVersion": "v1",
                                    "metadata": {"name": name}})
        return self._send(404, _status(404, "NotFound", f"the fake has no DELETE {self.path}"))

    def _list(self, kind: str, items: list[dict[str, Any]]) -> None:
        self._send(200, {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
                         "items": items})

    def _port_forward(self, ns: str, pod: str, port: int) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Request

        app = pod.rsplit("-", 1)[0]
        if "websocket" not in (self.headers.get("Upgrade") or "").lower() or \
                app not in self.fake.backends:
            return self._send(400, _status(400, "BadRequest", "upgrade request required"))
        self.fake.forwards.append((ns, pod, port))
        ws = WSConnection(ConnectionType.SERVER)
        raw = f"GET {self.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n"
        ws.receive_data(raw.encode())
        request = next(ws.events())
        assert isinstance(request, Request), request
        assert "v4.channel.k8s.io" in request.subprotocols, request.subprotocols
        lock = threading.Lock()

        def send(event: Any) -> None:
            with lock:
                self.wfile.write(ws.send(event))
                self.wfile.flush()

        send(AcceptConnection(subprotocol="v4.channel.k8s.io"))
        port_bytes = struct.pack("<H", port)
        send(BytesMessage(data=b"\x00" + port_bytes))
        send(BytesMessage(data=b"\x01" + port_bytes))
        backend = socket.create_connection(("127.0.0.1", self.fake.backends[app]))
        done = threading.Event()

        def from_backend() -> None:
            try:
                while not done.is_set():
                    chunk = backend.recv(65536)
                    if not chunk:
                        break
                    send(BytesMessage(data=b"\x00" + chunk))
            except OSError:
                pass
            finally:
                done.set()
                with contextlib.suppress(Exception):
                    send(CloseConnection(code=1000))

        threading.Thread(target=from_backend, daemon=True).start()
        try:
            while not done.is_set():
                data = self.rfile.read1(65536)
                if not data:
                    break
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        payload = bytes(event.data)
                        if payload[:1] == b"\x00" and len(payload) > 1:
                            backend.sendall(payload[1:])
                    elif isinstance(event, Ping):
                        send(event.response())
                    elif isinstance(event, CloseConnection):
                        done.set()
                        break
        except (OSError, ValueError):
            pass
        finally:
            done.set()
            backend.close()
            self.close_connection = True
