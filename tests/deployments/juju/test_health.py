"""The bundle's pods as watchdog components, read from a (fake) Kubernetes API."""

from __future__ import annotations

from pathlib import Path

from fakes.kubeapi import FakeKubeAPI

from deployments.juju.health import pod_components
from harness.system.kube import Kube


def _kube(tmp_path: Path, **kwargs):
    api = FakeKubeAPI(**kwargs).start()
    config = tmp_path / "kubeconfig"
    config.write_text(api.kubeconfig())
    return api, Kube(config, namespace="mm-run-2-22-stable", timeout=5, poll=0.05)


def test_a_crashlooping_server_pod_is_named_with_its_log(tmp_path):
    api, kube = _kube(tmp_path, crashloop=True)
    try:
        server, minio, mysql, absent = pod_components(
            lambda: kube, ("mlflow-server", "mlflow-minio", "mlflow-mysql", "mlflow-absent"))
        assert server.name == "mlflow-server pod" and server.grace > 0
        assert "CrashLoopBackOff" in server.check()
        assert "mlflow-server line" in server.log_tail()
        assert minio.check() is None and mysql.check() is None
        assert absent.check() == "no mlflow-absent pod in the model's namespace"
    finally:
        kube.close()
        api.stop()


def test_healthy_pods_are_alive(tmp_path):
    api, kube = _kube(tmp_path)
    try:
        assert [c.check() for c in pod_components(lambda: kube, ("mlflow-server",
                                                                  "mlflow-minio"))] == [None, None]
    finally:
        kube.close()
        api.stop()
