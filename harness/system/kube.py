"""The Kubernetes side of a Juju deployment, through lightkube.

- find the charm's Services (`mlflow-server`, `mlflow-minio`) in the model's namespace and reach
  them by NodePort, LoadBalancer address or an in-process port-forward (whichever the platform's
  `access` setting chooses);
- read MinIO keys from a Secret when one exists (registered as secrets, never printed);
- pods, container logs and events for diagnostics.

Services this module creates carry the label `app.kubernetes.io/managed-by: mlflow-matrix` and
live in the model's namespace, so `juju destroy-model` removes them with everything else.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, Client
from lightkube.config.client_adapter import Client as _HttpClient
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node, Pod, Secret, Service

from harness.system.endpoint import Credentials
from harness.system.errors import InfrastructureError
from harness.system.redact import redact, register_secret
from harness.system.waits import NotYet, wait_for

FIELD_MANAGER = "mlflow-matrix"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlflow-matrix"}
PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io"
WS_MAX_MESSAGE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    how: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def register_kubeconfig_secrets(text: str) -> None:
    """Register every credential of a kubeconfig (tokens, client keys/certs, passwords)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return
    for user in data.get("users") or []:
        for key, value in ((user or {}).get("user") or {}).items():
            if key in ("token", "password", "client-key-data", "client-certificate-data") \
                    and isinstance(value, str):
                register_secret(value)


def load_config(kubeconfig: Path | None, context: str | None = None) -> SingleConfig:
    """The (context of the) kubeconfig file, or the default kubeconfig when none is given."""
    try:
        if kubeconfig is not None:
            register_kubeconfig_secrets(Path(kubeconfig).read_text(encoding="utf-8"))
            config = KubeConfig.from_file(kubeconfig)
        else:
            config = KubeConfig.from_env()
        single = config.get(context) if context else config.get()
    except Exception as exc:  # lightkube raises several types for a bad kubeconfig
        raise InfrastructureError(f"cannot load the kubeconfig {kubeconfig or '(default)'}: "
                                  f"{redact(str(exc))}",
                                  hint="pass --kubeconfig PATH (and check its current context)") \
            from None
    if single is None:
        raise InfrastructureError(f"context {context!r} not found in {kubeconfig}")
    return single


class Kube:
    """lightkube client bound to one namespace (a Juju model)."""

    def __init__(self, kubeconfig: Path | None, context: str | None = None, *,
                 namespace: str, timeout: float = 20.0, poll: float = 1.0) -> None:
        self.namespace = namespace
        self.poll = poll  # seconds between checks while waiting for an object
        self.config = load_config(kubeconfig, context)
        self.timeout = timeout
        self.client = Client(self.config, namespace=namespace, field_manager=FIELD_MANAGER,
                             timeout=httpx2.Timeout(timeout))
        self._forwards: list[PortForward] = []

    def close(self) -> None:
        for forward in self._forwards:
            forward.close()
        self._forwards.clear()
        with contextlib.suppress(Exception):
            self.client.close()

    # -- Services

    def service(self, name: str) -> Service:
        try:
            return self.client.get(Service, name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise NotYet(f"Service {name} does not exist yet") from None
            raise

    def reach(self, name: str, port: int, mode: str, *, timeout: float) -> Address:
        """An address this machine can open for port `port` of Service `name`."""
        service = wait_for(lambda: self.service(name), what=f"Service {name} in {self.namespace}",
                           timeout=timeout, interval=self.poll)
        sport = _service_port(service, port)
        if mode == "nodeport":
            return self._via_nodeport(service, sport)
        if mode == "loadbalancer":
            return self._via_loadbalancer(service, sport, timeout)
        if mode == "port-forward":
            return self._via_port_forward(service, sport, timeout)
        raise InfrastructureError(f"unknown access mode {mode!r}",
                                  hint="use nodeport, loadbalancer or port-forward")

    def _companion(self, service: Service, sport: ServicePort, kind: str) -> Service:
        """A NodePort/LoadBalancer twin of a charm Service (same selector), created once."""
        suffix = "nodeport" if kind == "NodePort" else "lb"
        name = f"mm-{service.metadata.name}-{suffix}"[:63]
        body = Service(
            metadata=ObjectMeta(name=name, namespace=self.namespace, labels=dict(MANAGED_BY)),
            spec=ServiceSpec(type=kind, selector=dict(service.spec.selector or {}),
                             ports=[ServicePort(port=sport.port, targetPort=sport.targetPort
                                                or sport.port, protocol=sport.protocol or "TCP",
                                                name=sport.name)]))
        try:
            return self.client.create(body, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            return self.client.get(Service, name, namespace=self.namespace)

    def _via_nodeport(self, service: Service, sport: ServicePort) -> Address:
        if service.spec.type in ("NodePort", "LoadBalancer") and sport.nodePort:
            return Address(self.node_address(), int(sport.nodePort), "nodeport")
        twin = self._companion(service, sport, "NodePort")
        node_port = twin.spec.ports[0].nodePort
        if not node_port:
            raise InfrastructureError(f"the API server allocated no nodePort for "
                                      f"{twin.metadata.name}")
        return Address(self.node_address(), int(node_port), "nodeport")

    def _via_loadbalancer(self, service: Service, sport: ServicePort, timeout: float) -> Address:
        target = service if service.spec.type == "LoadBalancer" else \
            self._companion(service, sport, "LoadBalancer")
        name = target.metadata.name

        def ingress() -> Address:
            current = self.client.get(Service, name, namespace=self.namespace)
            items = (current.status.loadBalancer.ingress or []) if current.status and \
                current.status.loadBalancer else []
            for item in items:
                if item.ip or item.hostname:
                    return Address(item.ip or item.hostname, int(sport.port), "loadbalancer")
            raise NotYet(f"Service {name} has no load-balancer address yet")

        return wait_for(ingress, what=f"a load-balancer address for {name}", timeout=timeout,
                        interval=self.poll, hint="is a load balancer (MetalLB, cloud LB) enabled?")

    def _via_port_forward(self, service: Service, sport: ServicePort, timeout: float) -> Address:
        selector = service.spec.selector or {}
        if not selector:
            raise InfrastructureError(f"Service {service.metadata.name} has no selector to "
                                      "port-forward to")

        def ready_pod() -> tuple[str, int]:
            for pod in self.client.list(Pod, namespace=self.namespace, labels=selector):
                if _pod_ready(pod):
                    return pod.metadata.name, _target_port(pod, sport)
            raise NotYet(f"no ready pod behind Service {service.metadata.name}")

        pod, port = wait_for(ready_pod, what=f"a ready pod behind {service.metadata.name}",
                             timeout=timeout, interval=self.poll)
        forward = PortForward(self.config, self.namespace, pod, port).start()
        self._forwards.append(forward)
        return Address("127.0.0.1", forward.local_port, "port-forward")

    def node_address(self) -> str:
        """InternalIP (else ExternalIP, else hostname) of a Ready node."""
        nodes = list(self.client.list(Node))
        nodes.sort(key=lambda n: not _node_ready(n))
        for node in nodes:
            addresses = {a.type: a.address for a in (node.status.addresses or [])} \
                if node.status else {}
            for kind in ("InternalIP", "ExternalIP", "Hostname"):
                if addresses.get(kind):
                    return addresses[kind]
        raise InfrastructureError("no node with an address", hint="check `kubectl get nodes`")

    # -- restart

    def restart_pod(self, name: str, *, timeout: float) -> None:
        """Delete a pod and wait until its controller has replaced it with a Ready one."""
        old = self.client.get(Pod, name, namespace=self.namespace)
        old_uid = old.metadata.uid if old.metadata else None
        self.client.delete(Pod, name, namespace=self.namespace)

        def replaced() -> None:
            try:
                pod = self.client.get(Pod, name, namespace=self.namespace)
            except ApiError as exc:
                if exc.status.code == 404:
                    raise NotYet(f"pod {name} not recreated yet") from None
                raise
            if (pod.metadata.uid if pod.metadata else None) == old_uid:
                raise NotYet(f"pod {name} not deleted yet")
            if not _pod_ready(pod):
                raise NotYet(f"pod {name} recreated, not ready yet")

        wait_for(replaced, what=f"pod {name} to be recreated and ready", timeout=timeout,
                 interval=self.poll)

    # -- secrets

    def secret_credentials(self, name: str) -> Credentials | None:
        """S3 keys from a Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, if it exists."""
        try:
            secret = self.client.get(Secret, name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code in (403, 404):
                return None
            raise
        data = secret.data or {}
        try:
            access = base64.b64decode(data.get("AWS_ACCESS_KEY_ID", "")).decode()
            key = base64.b64decode(data.get("AWS_SECRET_ACCESS_KEY", "")).decode()
        except ValueError:
            return None
        if not access or not key:
            return None
        register_secret(key)
        return Credentials(access, key)

    # -- diagnostics

    def pods(self) -> list[Pod]:
        return list(self.client.list(Pod, namespace=self.namespace))

    def unhealthy_containers(self) -> list[tuple[str, str, str]]:
        """(pod, container, why) for every container that is not running and ready."""
        found = []
        for pod in self.pods():
            statuses = list((pod.status.initContainerStatuses or []) if pod.status else []) + \
                list((pod.status.containerStatuses or []) if pod.status else [])
            if not statuses and pod.status and pod.status.phase != "Running":
                for container in pod.spec.containers:
                    found.append((pod.metadata.name, container.name, pod.status.phase or "?"))
            for status in statuses:
                state = status.state
                if state and state.running and status.ready:
                    continue
                if state and state.terminated and state.terminated.reason == "Completed":
                    continue
                why = "not ready"
                if state and state.waiting:
                    why = f"waiting: {state.waiting.reason or ''} {state.waiting.message or ''}"
                elif state and state.terminated:
                    why = f"terminated: {state.terminated.reason or ''} (exit " \
                          f"{state.terminated.exitCode})"
                found.append((pod.metadata.name, status.name, why.strip()))
        return found

    def container_log(self, pod: str, container: str, *, tail_lines: int = 1000) -> str:
        try:
            return "".join(self.client.log(pod, namespace=self.namespace, container=container,
                                           tail_lines=tail_lines))
        except ApiError as exc:
            return f"(no log: {exc.status.message})\n"

    def events(self) -> list[str]:
        lines = []
        for event in self.client.list(Event, namespace=self.namespace):
            when = event.lastTimestamp or event.eventTime or \
                (event.metadata.creationTimestamp if event.metadata else None)
            obj = event.involvedObject
            lines.append((str(when or ""), f"{when or '-'}  {event.type or '-':<8} "
                          f"{event.reason or '-':<20} {obj.kind}/{obj.name}: "
                          f"{(event.message or '').strip()}"))
        return [line for _, line in sorted(lines)]

    def dump(self, kinds: Iterable[type] = (Pod, Service)) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in kinds:
            out[kind.__name__] = [obj.to_dict() for obj in
                                  self.client.list(kind, namespace=self.namespace)]
        return out


def _service_port(service: Service, port: int) -> ServicePort:
    ports = list(service.spec.ports or [])
    for candidate in ports:
        if candidate.port == port:
            return candidate
    for candidate in ports:
        if candidate.targetPort == port:
            return candidate
    if ports:
        return ports[0]
    raise InfrastructureError(f"Service {service.metadata.name} exposes no port")


def _target_port(pod: Pod, sport: ServicePort) -> int:
    target = sport.targetPort if sport.targetPort is not None else sport.port
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod.spec.containers:
        for cport in container.ports or []:
            if cport.name == target:
                return int(cport.containerPort)
    return int(sport.port)


def _pod_ready(pod: Pod) -> bool:
    if not pod.status or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _node_ready(node: Node) -> bool:
    conditions = node.status.conditions if node.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


class PortForward:
    """`kubectl port-forward` in-process: a loopback listener; each connection is one websocket
    to the pod's `portforward` subresource (subprotocol v4.channel.k8s.io: channel 0 carries data,
    channel 1 errors; the first frame of each channel is the port, little-endian)."""

    def __init__(self, config: SingleConfig, namespace: str, pod: str, port: int) -> None:
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self._http = _HttpClient(config, ConnectionParams(timeout=httpx2.Timeout(15)))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.local_port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}/portforward"

    def start(self) -> PortForward:
        self._listener.listen(16)
        self._listener.settimeout(0.5)
        thread = threading.Thread(target=self._accept, name=f"port-forward-{self.pod}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._relay, args=(conn,), daemon=True,
                                      name=f"port-forward-{self.pod}-conn")
            thread.start()

    def _relay(self, conn: socket.socket) -> None:
        from httpx2.websockets import WebSocketDisconnect, WebSocketNetworkError

        try:
            with self._http.websocket(self.path, subprotocols=[PORT_FORWARD_PROTOCOL],
                                      params={"ports": str(self.port)},
                                      max_message_size_bytes=WS_MAX_MESSAGE,
                                      keepalive_ping_interval_seconds=None) as ws:
                done = threading.Event()
                upstream = threading.Thread(target=self._to_pod, args=(conn, ws, done),
                                            daemon=True)
                upstream.start()
                seen_port = {0: False, 1: False}
                while not done.is_set() and not self._closed.is_set():
                    try:
                        frame = ws.receive_bytes(timeout=0.5)
                    except TimeoutError:
                        continue
                    if not frame:
                        continue
                    channel, payload = frame[0], frame[1:]
                    if channel in seen_port and not seen_port[channel]:
                        seen_port[channel] = True  # the port number, sent once per channel
                        payload = payload[2:]
                    if not payload:
                        continue
                    if channel == 0:
                        conn.sendall(payload)
                    elif channel == 1:
                        self.errors.append(redact(payload.decode("utf-8", errors="replace")))
                        break
                done.set()
        except (WebSocketDisconnect, WebSocketNetworkError, OSError, httpx2.HTTPError) as exc:
            self.errors.append(redact(str(exc)))
        except Exception as exc:  # never let a relay thread die with a traceback
            self.errors.append(f"{type(exc).__name__}: {redact(str(exc))}")
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _to_pod(self, conn: socket.socket, ws: Any, done: threading.Event) -> None:
        conn.settimeout(0.5)
        try:
            while not done.is_set() and not self._closed.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                ws.send_bytes(b"\x00" + data)
        except Exception:  # the websocket or the socket closed under us
            pass
        finally:
            done.set()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(Exception):
            self._http.close()
