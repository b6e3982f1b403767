"""harness.system.kube against an in-process fake of the Kubernetes API (TLS, client certificate)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from fakes.fixtures import StubMlflow
from fakes.kubeapi import FakeKubeAPI

from harness.system.errors import InfrastructureError
from harness.system.kube import Kube, load_config, register_kubeconfig_secrets
from harness.system.redact import redact

NS = "mm-run-2-22-stable"


@pytest.fixture
def stub():
    server = StubMlflow("2.22.0")
    yield server
    server.close()


def start(tmp_path: Path, **kwargs) -> tuple[FakeKubeAPI, Kube]:
    api = FakeKubeAPI(**kwargs).start()
    config = tmp_path / "kubeconfig"
    config.write_text(api.kubeconfig())
    return api, Kube(config, namespace=NS, timeout=5, poll=0.05)


@pytest.fixture
def kube(tmp_path: Path, stub: StubMlflow):
    api, kube = start(tmp_path, backends={"mlflow-server": stub.port, "mlflow-minio": 31999},
                      crashloop=True, log_secret="LOGGEDSECRET0123456789",
                      secrets={"mlflow-server-minio-artifact": {
                          "AWS_ACCESS_KEY_ID": "minio",
                          "AWS_SECRET_ACCESS_KEY": "ARTIFACTSECRET0123456789"}})
    yield api, kube
    kube.close()
    api.stop()


def test_nodeport_uses_the_charms_node_port_on_the_nodes_address(kube, stub):
    api, client = kube
    address = client.reach("mlflow-server", 5000, "nodeport", timeout=5)
    assert (address.host, address.port) == ("127.0.0.1", stub.port)
    with urllib.request.urlopen(f"{address.url}/version", timeout=5) as response:
        assert response.read() == b"2.22.0"
    assert ("POST", f"/api/v1/namespaces/{NS}/services") not in api.requests


def test_nodeport_twin_is_created_for_a_clusterip_service_once(kube):
    api, client = kube
    first = client.reach("mlflow-minio", 9000, "nodeport", timeout=5)
    second = client.reach("mlflow-minio", 9000, "nodeport", timeout=5)
    assert first == second and first.port == 31999
    twin = api.created[(NS, "mm-mlflow-minio-nodeport")]
    assert twin["spec"]["selector"] == {"app.kubernetes.io/name": "mlflow-minio"}
    assert twin["spec"]["ports"][0]["port"] == 9000
    assert twin["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mlflow-matrix"}


def test_loadbalancer_waits_for_the_ingress_address(tmp_path):
    api, client = start(tmp_path, lb_pending_polls=2, lb_ip="10.64.140.43")
    try:
        address = client.reach("mlflow-server", 5000, "loadbalancer", timeout=10)
        assert (address.host, address.port, address.how) == ("10.64.140.43", 5000,
                                                             "loadbalancer")
        assert api.created[(NS, "mm-mlflow-server-lb")]["spec"]["type"] == "LoadBalancer"
    finally:
        client.close()
        api.stop()


def test_loadbalancer_without_address_ends_at_the_deadline(tmp_path):
    api, client = start(tmp_path, lb_pending_polls=10_000)
    try:
        with pytest.raises(InfrastructureError, match="load-balancer address"):
            client.reach("mlflow-server", 5000, "loadbalancer", timeout=0.6)
    finally:
        client.close()
        api.stop()


def test_port_forward_relays_http_through_the_api_websocket(tmp_path, stub):
    api, client = start(tmp_path, backends={"mlflow-server": stub.port})
    try:
        address = client.reach("mlflow-server", 5000, "port-forward", timeout=5)
        assert address.host == "127.0.0.1" and address.how == "port-forward"
        for _ in range(3):  # one websocket per connection
            with urllib.request.urlopen(f"{address.url}/version", timeout=5) as response:
                assert response.read() == b"2.22.0"
        assert api.forwards == [(NS, "mlflow-server-0", 5000)] * 3
    finally:
        client.close()
        api.stop()


def test_port_forward_needs_a_ready_pod(kube):
    _, client = kube  # mlflow-server-0 is in CrashLoopBackOff here
    with pytest.raises(InfrastructureError, match="no ready pod behind Service mlflow-server"):
        client.reach("mlflow-server", 5000, "port-forward", timeout=0.5)


def test_a_service_that_appears_late_is_waited_for(tmp_path, stub):
    api, client = start(tmp_path, backends={"mlflow-server": stub.port}, missing_services=2)
    try:
        assert client.reach("mlflow-server", 5000, "nodeport", timeout=10).port == stub.port
    finally:
        client.close()
        api.stop()


def test_unhealthy_containers_logs_and_events_for_diagnostics(kube):
    _, client = kube
    unhealthy = client.unhealthy_containers()
    assert unhealthy == [("mlflow-server-0", "mlflow-server",
                          "waiting: CrashLoopBackOff back-off 2m40s restarting failed container")]
    log = client.container_log("mlflow-server-0", "mlflow-server", tail_lines=10)
    assert "mlflow-server line 0" in log
    events = client.events()
    assert events[0].startswith("2025-06-09 20:05:41") and "Scheduled" in events[0]
    assert "BackOff" in events[1]


def test_minio_keys_from_a_secret_are_registered_as_secrets(kube):
    _, client = kube
    creds = client.secret_credentials("mlflow-server-minio-artifact")
    assert (creds.access_key, creds.secret_key) == ("minio", "ARTIFACTSECRET0123456789")
    assert redact("key ARTIFACTSECRET0123456789") == "key ***"
    assert client.secret_credentials("absent") is None


def test_kubeconfig_credentials_are_registered_as_secrets(tmp_path):
    api = FakeKubeAPI().start()
    text = api.kubeconfig()
    api.stop()
    register_kubeconfig_secrets(text)
    key_data = text.split("client-key-data: ", 1)[1].split()[0]
    assert key_data not in redact(f"leaked {key_data}")


def test_a_bad_kubeconfig_is_an_error_with_a_hint(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(InfrastructureError) as caught:
        load_config(bad)
    assert "--kubeconfig" in (caught.value.hint or "")


def test_restart_pod_waits_for_a_ready_replacement(tmp_path):
    api, client = start(tmp_path)
    try:
        client.restart_pod("mlflow-server-0", timeout=5)
        assert ("DELETE", f"/api/v1/namespaces/{NS}/pods/mlflow-server-0") in api.requests
        assert api.generation["mlflow-server-0"] == 1 and api.not_ready_polls[
            "mlflow-server-0"] == 0, "it waited through the not-ready polls"
    finally:
        client.close()
        api.stop()
