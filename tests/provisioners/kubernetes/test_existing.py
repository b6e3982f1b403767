"""provisioners.existing: the cluster of a kubeconfig, nothing provisioned, only Juju released."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fakes.cluster import check_transcript
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    RUN_ID,
    cluster,
    context_for,
    fake_api,
    local_channel,
    stub_mlflow,
)

from deployments.juju import cli as jcli
from deployments.juju import settings as jsettings
from harness.system.errors import ConfigError, InfrastructureError
from provisioners.kubernetes.existing import ExistingClusterProvisioner


@pytest.fixture
def kubeconfig(tmp_path, fake_api) -> Path:
    path = tmp_path / "user-kubeconfig"
    path.write_text(fake_api.kubeconfig(context="prod", cluster="prod", user="prod-admin"))
    return path


def test_plan_names_the_kubeconfig_and_installs_nothing(context_for, kubeconfig, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    lines = ExistingClusterProvisioner(context_for("existing", options={
        "kubeconfig": str(kubeconfig)})).plan()
    assert lines[0] == f"use the cluster of {kubeconfig} (its current context); nothing is installed"
    assert f"down: juju remove-k8s mm-{RUN_ID}-existing --client" in lines
    assert "down: the cluster is left as it was" in lines
    assert not any("snap" in line for line in lines)


def test_deploy_through_port_forward_and_release_only_juju(cluster, context_for, kubeconfig,
                                                          tmp_path, fake_api):
    fake = cluster({"values": {"SUBSTRATE": "kubernetes/default"}})
    ctx = context_for("existing", options={"kubeconfig": str(kubeconfig)})
    provisioner = ExistingClusterProvisioner(ctx)
    substrate = provisioner.up()
    assert substrate.kubeconfig == kubeconfig and substrate.details["nodes"] == "1"
    dep = provisioner.deployment(substrate, tmp_path / "reports" / "existing" / "2.22-stable")
    endpoint = dep.deploy(local_channel("2.22/stable"))
    assert endpoint.tracking_uri.startswith("http://127.0.0.1:")
    assert endpoint.mlflow_version == "2.22.0"
    assert {pod for _, pod, _ in fake_api.forwards} == {"mlflow-server-0"}
    dep.teardown()
    provisioner.down()
    assert kubeconfig.exists(), "the user's kubeconfig is never removed"
    assert not any(line.startswith(("snap", "microk8s", "k8s")) for line in fake.lines())
    assert ctx.state.resources() == []
    check_transcript("existing-deploy-down", fake.transcript(**{str(kubeconfig): "<kubeconfig>"}))


def test_a_given_controller_is_used_and_never_destroyed(cluster, context_for, kubeconfig):
    fake = cluster({"juju": {"controllers": ["prod-controller"]}})
    ctx = context_for("existing", options={"kubeconfig": str(kubeconfig),
                                           "controller": "prod-controller"})
    provisioner = ExistingClusterProvisioner(ctx)
    substrate = provisioner.up()
    juju = jcli._Juju(command_timeout=30)
    settings = jsettings.juju_settings(ctx.platform.settings)
    assert provisioner.juju_controller.ensure(substrate, juju, settings) == \
        (f"mm-{RUN_ID}-existing", "prod-controller")
    provisioner.down()
    assert "prod-controller" in fake.world()["controllers"]
    assert fake.lines("juju") == [
        f"juju add-k8s mm-{RUN_ID}-existing --controller prod-controller",
        f"juju remove-k8s mm-{RUN_ID}-existing --controller prod-controller"]


def test_missing_or_unreachable_cluster_is_reported(context_for, tmp_path, kubeconfig, fake_api):
    with pytest.raises(ConfigError, match="no kubeconfig at"):
        ExistingClusterProvisioner(context_for("existing", options={
            "kubeconfig": str(tmp_path / "nope")})).up()
    fake_api.stop()
    with pytest.raises(InfrastructureError, match="does not answer"):
        ExistingClusterProvisioner(context_for("existing", options={
            "kubeconfig": str(kubeconfig)})).up()
