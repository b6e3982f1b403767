"""deployments.juju.diagnostics: what a failed or finished Juju cell leaves under diagnostics/, redacted."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.cluster import check_transcript, normalize
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    cluster,
    context_for,
    fake_api,
    local_channel,
    stub_mlflow,
)
from fakes.kubeapi import FakeKubeAPI

from deployments.juju import cli as jcli
from deployments.juju import diagnostics
from harness.system import kubectl
from harness.system.redact import redact
from provisioners.kubernetes.microk8s import MicroK8sProvisioner


@pytest.fixture
def deployed(cluster, context_for, tmp_path, stub_mlflow):
    api = FakeKubeAPI(backends={"mlflow-server": stub_mlflow.port,
                                "mlflow-minio": stub_mlflow.port}, crashloop=True).start()
    fake = cluster({"juju": {"status": ["status-healthy.json"]}}, api=api)
    api.log_secret = fake.secret_key
    ctx = context_for("microk8s-1.32")
    provisioner = MicroK8sProvisioner(ctx)
    dep = provisioner.deployment(provisioner.up(), tmp_path / "reports" / "m" / "2.22-stable")
    dep.deploy(local_channel("2.22/stable"))
    yield fake, dep
    dep.teardown()
    provisioner.down()
    api.stop()


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_collect_writes_juju_and_kubernetes_state_redacted(deployed, tmp_path):
    fake, dep = deployed
    dest = tmp_path / "diagnostics"
    before = len(fake.calls())
    dep.collect(dest)
    written = files(dest)
    assert sorted(written) == [
        "juju/debug-log.txt", "juju/status-log/mlflow-minio-0.txt",
        "juju/status-log/mlflow-mysql-0.txt", "juju/status-log/mlflow-server-0.txt",
        "juju/status-log/opentelemetry-collector-k8s-0.txt",
        "juju/status.yaml", "kubernetes/describe-pods.txt", "kubernetes/events.txt",
        "kubernetes/get-all.txt", "kubernetes/logs/INDEX.txt",
        "kubernetes/logs/mlflow-server-0.mlflow-server.log"]
    everything = "\n".join(written.values())
    for secret in (fake.secret_key, fake.db_password):
        assert secret not in everything
    assert "Got following database data" in written["juju/debug-log.txt"]
    assert "'password': '***'" in written["juju/debug-log.txt"]
    assert "AWS_SECRET_ACCESS_KEY:  ***" in written["kubernetes/describe-pods.txt"]
    assert "mlflow-server-0/mlflow-server: waiting: CrashLoopBackOff" in \
        written["kubernetes/logs/INDEX.txt"]
    assert "mlflow-server-0" in written["kubernetes/events.txt"]
    assert "applications:" in written["juju/status.yaml"]
    commands = "\n".join(call.line for call in fake.calls()[before:]) + "\n"
    check_transcript("diagnostics-collect", normalize(commands))


def test_a_failing_step_is_noted_and_without_kubectl_objects_come_from_the_api(
        deployed, tmp_path, monkeypatch):
    _, dep = deployed
    real = dep.juju.run_cli

    def broken_debug_log(*args, **kwargs):
        if args[0] == "debug-log":
            raise jcli.jubilant.CLIError(1, ["juju", "debug-log"], "", "ERROR connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(dep.juju, "run_cli", broken_debug_log)
    monkeypatch.setattr(kubectl.shutil, "which", lambda name: "/nonexistent/kubectl")
    dest = tmp_path / "diagnostics"
    dep.collect(dest)
    written = files(dest)
    assert "juju debug-log: CLIError" in written["collect-errors.txt"]
    assert "juju/status.yaml" in written and "kubernetes/events.txt" in written
    text = written["kubernetes/get-all.txt"]
    assert text.startswith("# kubectl unavailable (command not found: /nonexistent/kubectl)")
    assert "mlflow-server-0" in text and "Pod:" in text


def test_nothing_to_collect_before_the_model_exists(context_for, tmp_path):
    ctx = context_for("microk8s-1.32")
    provisioner = MicroK8sProvisioner(ctx)
    dep = provisioner.deployment(provisioner.substrate(), tmp_path / "c" / "2.22")
    dest = tmp_path / "diagnostics"
    dep.collect(dest)
    assert "no Juju model to collect from" in (dest / "juju" / "README.txt").read_text()


def test_written_files_are_redacted_and_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(diagnostics, "MAX_FILE_BYTES", 100)
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    path = diagnostics.write_redacted(tmp_path / "x.txt", "x" * 500 + "\n" + key)
    text = path.read_text()
    assert "MIIEpAIBAAKCAQEA" not in text and text.startswith("[… truncated")
    assert redact("Authorization: Bearer eyJhbGciOiJSUzI1NiIs.eyJzdWIiOiJzeXN0ZW0.c2lnbmF0dXJl") \
        == "Authorization: Bearer ***"
    assert diagnostics.tail_lines("a\nb\nc\n", 2).endswith("b\nc\n")
