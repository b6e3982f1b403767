"""What a real cluster refuses, through the fake `juju` CLI and the fake Kubernetes API.

Each test here was red on the code before issue 20 (the fakes now refuse what Juju and the API
server refuse; see tests/fakes/recordings/SOURCES.md): NodePorts are one cluster-wide range, a
refresh keeps the old unit running for a while and replaces its pod later, Juju refuses a refresh
across charm bases, and a juju client can find the store lock taken by another juju process.
"""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import re

import pytest
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    cluster,
    context_for,
    deploy_all,
    fake_api,
    local_channel,
    stub_mlflow,
)

from deployments.juju import deployment as jdeployment
from harness.config.matrix import load_matrix
from harness.system.errors import InfrastructureError
from harness.system.waits import CANCEL
from provisioners.kubernetes.microk8s import MicroK8sProvisioner


@pytest.fixture(autouse=True)
def _no_cancel():
    CANCEL.clear()
    yield
    CANCEL.clear()


def _platform(context_for, **settings):
    ctx = context_for("microk8s-1.32", **settings)
    provisioner = MicroK8sProvisioner(ctx)
    return ctx, provisioner, provisioner.up()


def _deployment(provisioner, substrate, tmp_path, cell: str) -> jdeployment.JujuDeployment:
    return provisioner.deployment(substrate, tmp_path / "reports" / "microk8s-1.32" / cell)


def _model(fake, dep) -> dict:
    return fake.world()["models"][f"{dep.controller}:{dep.model}"]


# ---------------------------------------------------------------- 1. NodePorts are cluster-wide


def test_two_cells_on_one_cluster_each_reach_their_own_server(cluster, context_for, tmp_path,
                                                               stub_mlflow, fake_api):
    fake = cluster()
    _ctx, provisioner, substrate = _platform(context_for, endpoint_timeout=3)
    deps = [_deployment(provisioner, substrate, tmp_path, cell)
            for cell in ("2.22-stable", "latest-edge")]
    errors = deploy_all(deps, ("2.22/stable", "latest/edge"))
    assert not errors, f"a cell could not reach its server: {errors}"
    assert {dep.endpoint.mlflow_version for dep in deps} == {"2.22.0"}   # the stub answers
    for dep in deps:   # the charm's fixed NodePorts are off in every cell's model
        assert _model(fake, dep)["config"]["mlflow-server"] == {"enable_mlflow_nodeport": False}
        dep.teardown()
    provisioner.down()


def test_a_placeholder_service_is_a_loud_error_not_a_timeout(cluster, context_for, tmp_path,
                                                              stub_mlflow, fake_api):
    cluster()
    _ctx, provisioner, substrate = _platform(context_for, endpoint_timeout=30,
                                             server_nodeport=True)
    fake_api.allocate("someone-else", "their-service", 31380)   # another model holds the port
    dep = _deployment(provisioner, substrate, tmp_path, "2.22-stable")
    with pytest.raises(InfrastructureError) as caught:
        dep.deploy(local_channel("2.22/stable"))
    message = caught.value.message
    assert "placeholder port 65535" in message and "31380" in message
    assert "server_nodeport" in caught.value.hint
    dep.teardown()
    provisioner.down()


# ---------------------------------------------------------------- 3. the upgrade waits for the new pod


def test_upgrade_returns_only_once_the_new_charm_runs_in_a_new_ready_pod(cluster, context_for,
                                                                        tmp_path, stub_mlflow,
                                                                        fake_api):
    fake = cluster({"juju": {"refresh_polls": 5}})
    _ctx, provisioner, substrate = _platform(context_for)
    dep = _deployment(provisioner, substrate, tmp_path, "upgrade")
    dep.deploy(local_channel("2.22/stable"))
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in fake_api.pods(dep.model)}
    dep.upgrade(local_channel("latest/edge"))
    model = _model(fake, dep)
    assert model["upgrading"]["mlflow-server"] == 0, \
        "the upgrade returned while the unit still ran the old charm (upgrading-from)"
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in fake_api.pods(dep.model)}
    assert after["mlflow-server-0"] != before["mlflow-server-0"]
    assert fake_api.not_ready_polls.get("mlflow-server-0", 0) == 0, \
        "the new pod was not seen Ready"
    dep.teardown()
    provisioner.down()


# ---------------------------------------------------------------- 4. refresh across charm bases


def test_refresh_across_bases_is_refused_naming_the_bases_and_the_known_defect(
        cluster, context_for, tmp_path, stub_mlflow):
    cluster()
    _ctx, provisioner, substrate = _platform(context_for)
    dep = _deployment(provisioner, substrate, tmp_path, "upgrade")
    dep.deploy(local_channel("2.15/stable"))
    with pytest.raises(InfrastructureError) as caught:
        dep.upgrade(local_channel("2.22/stable"))
    message = caught.value.message
    assert "mlflow-server runs on ubuntu@20.04" in message
    assert "2.22/stable is published for ubuntu@24.04 only" in message
    assert "juju/juju#20830" in message
    defect = next(d for d in load_matrix().known_defects if d.id == "juju-refresh-across-bases")
    assert re.search(defect.signature.message, message)
    assert defect.upgrades == ("2.15/stable:2.22/stable",) and defect.phases == ("upgrade",)
    dep.teardown()
    provisioner.down()


# ---------------------------------------------------------------- 10. the juju client store lock


def test_a_taken_client_store_lock_is_retried(cluster, context_for, tmp_path, stub_mlflow):
    fake = cluster({"juju": {"lock_errors": 2}})
    _ctx, provisioner, substrate = _platform(context_for)
    dep = _deployment(provisioner, substrate, tmp_path, "2.22-stable")
    assert dep.deploy(local_channel("2.22/stable")).mlflow_version == "2.22.0"
    assert fake.lines("juju")[:3] == [fake.lines("juju")[0]] * 3   # add-k8s twice refused
    dep.teardown()
    provisioner.down()


# ---------------------------------------------------------------- 2. transient error and blocked


def test_a_hook_error_juju_retries_does_not_fail_the_deploy(cluster, context_for, tmp_path,
                                                           stub_mlflow):
    fake = cluster({"juju": {"status": ["status-deploying.json", "status-error.json",
                                        "status-error.json", "status-blocked.json",
                                        "status-healthy.json"]}})
    _ctx, provisioner, substrate = _platform(context_for)
    dep = _deployment(provisioner, substrate, tmp_path, "2.22-stable")
    assert dep.deploy(local_channel("2.22/stable")).mlflow_version == "2.22.0"
    assert fake.world()["last_status"][f"{dep.controller}:{dep.model}"] == "status-healthy.json"
    dep.teardown()
    provisioner.down()
