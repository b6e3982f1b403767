"""AKS through the real Azure SDK (azure-identity, azure-mgmt-resource, azure-mgmt-containerservice)
against the loopback fake ARM of tests/fakes/azure_arm.py. Leftovers are counted through the
fake's own list API, called with the SDK (`resource_groups.list`)."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fakes.azure_arm import FakeAzure
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    cluster,
    context_for,
    fake_api,
    local_channel,
    stub_mlflow,
)

from harness.system.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, InfrastructureError
from provisioners.kubernetes.aks import (
    AksClient,
    AksProvisioner,
    AksSpec,
    make_credential,
    subscription_from_env,
)
from provisioners.kubernetes.cloud import CapacityError, CredentialsError

ROOT = Path(__file__).resolve().parents[3]
TAGS = {"mlflow-matrix-run": "20261129-200000-abc123", "mlflow-matrix-owner": "ci",
        "mlflow-matrix-created": "2026-11-29T20:00:00Z",
        "mlflow-matrix-expires": "2026-11-30T02:00:00Z"}


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME",
                "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)
    with FakeAzure(tmp_path) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


def client(az: FakeAzure) -> AksClient:
    return AksClient(make_credential(), subscription_from_env(), endpoint=az.url, poll_interval=0.02)


def spec(name: str = "r1", **tags: str) -> AksSpec:
    return AksSpec(resource_group=f"mlflow-matrix-{name}", cluster=f"mm-{name}", location="eastus",
                   kubernetes_version="1.32", vm_size="Standard_D4s_v5", node_count=2,
                   tags={**TAGS, **tags})


def listed(c: AksClient) -> list[str]:
    """Every resource group in the subscription, through ARM's list call."""
    return sorted(g.name for g in c.resources.resource_groups.list())


def test_create_then_delete_leaves_nothing(az: FakeAzure) -> None:
    c = client(az)
    s = spec()
    order: list[str] = []
    kubeconfig = c.create(s, timeout=30, progress=order.append,
                          on_group=lambda: order.append("record group"),
                          on_cluster=lambda: order.append("record cluster"))
    assert order[0] == "record group" and order[2] == "record cluster"   # recorded before created
    assert listed(c) == sorted([s.resource_group, s.node_resource_group])
    group = c.resources.resource_groups.get(s.resource_group)
    assert group.tags == TAGS
    mc = c.aks.managed_clusters.get(s.resource_group, s.cluster)
    assert (mc.sku.name, mc.sku.tier) == ("Base", "Free")
    assert mc.tags == TAGS and mc.provisioning_state == "Succeeded"
    pool = mc.agent_pool_profiles[0]
    assert (pool.count, pool.vm_size, pool.mode) == (2, "Standard_D4s_v5", "System")
    assert mc.node_resource_group == s.node_resource_group
    user = yaml.safe_load(kubeconfig)["users"][0]["user"]
    assert "client-certificate-data" in user and "exec" not in user
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN")

    c.delete(s.resource_group, s.node_resource_group, timeout=30, progress=lambda _: None)
    assert listed(c) == []
    # idempotent: a second delete after everything is gone does nothing and does not fail
    c.delete(s.resource_group, s.node_resource_group, timeout=30, progress=lambda _: None)


def test_api_versions_the_sdk_sends(az: FakeAzure) -> None:
    c = client(az)
    c.create(spec(), timeout=30, progress=lambda _: None)
    versions = {(m, p.split("/")[-1] if "operations" not in p else "op", v)
                for m, p, v in az.requests if p.startswith("/subscriptions")}
    assert ("PUT", "mm-r1", "2026-08-01") in versions
    assert ("PUT", "mlflow-matrix-r1", "2025-04-01") in versions


def test_cluster_failing_half_way_stops_early_and_delete_removes_it_all(az: FakeAzure) -> None:
    az.fail_create = True
    az.create_polls = 3
    c = client(az)
    s = spec()
    start = time.monotonic()
    with pytest.raises(InfrastructureError) as err:
        c.create(s, timeout=60, progress=lambda _: None)
    assert time.monotonic() - start < 10           # the Failed status ended the wait, not the deadline
    assert "VMExtensionProvisioningError" in err.value.message
    assert err.value.exit_code == EXIT_INFRASTRUCTURE
    assert len(listed(c)) == 2                     # the group and the node group were created
    c.delete(s.resource_group, s.node_resource_group, timeout=30, progress=lambda _: None)
    assert listed(c) == []


def test_quota_refusal_is_a_capacity_error(az: FakeAzure) -> None:
    az.quota_error = True
    c = client(az)
    s = spec()
    with pytest.raises(CapacityError) as err:
        c.create(s, timeout=30, progress=lambda _: None)
    assert "QuotaExceeded" in err.value.message and "vm_size" in (err.value.hint or "")
    assert err.value.exit_code == EXIT_INFRASTRUCTURE
    c.delete(s.resource_group, s.node_resource_group, timeout=30, progress=lambda _: None)
    assert listed(c) == []


def test_deadline_ends_a_create_that_never_finishes(az: FakeAzure) -> None:
    az.create_polls = 10**9
    c = client(az)
    start = time.monotonic()
    with pytest.raises(InfrastructureError, match="deadline"):
        c.create(spec(), timeout=1.0, progress=lambda _: None)
    assert time.monotonic() - start < 5


def test_node_group_left_behind_is_deleted_too(az: FakeAzure) -> None:
    az.leak_node_group = True
    c = client(az)
    s = spec()
    c.create(s, timeout=30, progress=lambda _: None)
    c.delete(s.resource_group, None, timeout=30, progress=lambda _: None)   # found via the cluster
    assert listed(c) == []
    deletes = [p for m, p, _ in az.requests if m == "DELETE"]
    assert any(p.endswith("/" + s.node_resource_group) for p in deletes)


def test_missing_subscription_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(CredentialsError) as err:
        subscription_from_env()
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "AZURE_SUBSCRIPTION_ID" in err.value.message
    assert "AZURE_CLIENT_SECRET" in (err.value.hint or "")


def test_no_identity_fails_fast_naming_the_variables(az: FakeAzure,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("PATH", "/nonexistent")      # no `az`, `azd` or `pwsh` to fall back to
    c = client(az)
    start = time.monotonic()
    with pytest.raises(CredentialsError) as err:
        c.check_credentials("mlflow-matrix-r1")
    assert time.monotonic() - start < 10
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "AZURE_TENANT_ID" in (err.value.hint or "")
    assert not [r for r in az.requests if r[1].startswith("/subscriptions")]


def test_wrong_secret_is_bad_input_and_never_shown(az: FakeAzure,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret-xyz")
    monkeypatch.setenv("PATH", "/nonexistent")
    c = client(az)
    with pytest.raises(CredentialsError) as err:
        c.check_credentials("mlflow-matrix-r1")
    assert "not-the-secret-xyz" not in err.value.render()
    assert not [r for r in az.requests if r[1].startswith("/subscriptions")]


# ---------------------------------------------------------------- the provisioner (base + CLI)

@pytest.fixture
def aks_context(az: FakeAzure, context_for):
    def make(**settings: object):
        return context_for("aks-1.32", arm_endpoint=az.url, api_poll_interval=0.02, **settings)
    return make


def test_plan_prints_every_call_without_credentials(aks_context, monkeypatch) -> None:
    for var in ("AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID"):
        monkeypatch.delenv(var)
    lines = AksProvisioner(aks_context()).plan()
    text = "\n".join(lines)
    for call in ("PUT ", "managedClusters/mm-", "api-version=2026-08-01", "sku Base/Free",
                 "2 x Standard_D4s_v5", "listClusterAdminCredential", "DELETE ",
                 "HEAD ", "mlflow-matrix-expires=", "deadline 1800 s", "deadline 1200 s"):
        assert call in text, call


def test_up_records_before_creating_and_down_releases_everything(az: FakeAzure, aks_context) -> None:
    ctx = aks_context()
    AksProvisioner.preflight(ctx.platform.settings, {})
    prov = AksProvisioner(ctx)
    substrate = prov.up()
    c = client(az)
    assert substrate.cluster_goes_away and substrate.kubeconfig.stat().st_mode & 0o777 == 0o600
    assert "client-certificate-data" in substrate.kubeconfig.read_text()
    [res] = [r for r in json.loads(ctx.state.path.read_text())["resources"]
             if r["type"] == "aks-resource-group"]
    assert res["kind"] == "aks" and res["cluster_requested"] is True
    assert sorted([res["name"], res["node_resource_group"]]) == listed(c)
    tags = c.resources.resource_groups.get(res["name"]).tags
    assert tags["mlflow-matrix-run"] == ctx.run_id
    assert set(tags) == {"mlflow-matrix-run", "mlflow-matrix-owner", "mlflow-matrix-created",
                         "mlflow-matrix-expires"}
    prov.down()
    assert listed(c) == []
    assert not [r for r in ctx.state.resources() if r.type == "aks-resource-group"]
    assert not substrate.kubeconfig.exists()
    prov.down()                                               # idempotent


def test_create_failing_half_way_then_down_removes_everything(az: FakeAzure, aks_context) -> None:
    az.fail_create = True
    ctx = aks_context()
    prov = AksProvisioner(ctx)
    with pytest.raises(InfrastructureError):
        prov.up()
    c = client(az)
    assert len(listed(c)) == 2 and len(ctx.state.resources()) == 1
    prov.down()
    assert listed(c) == [] and ctx.state.resources() == []


def test_janitor_releases_what_a_crashed_run_recorded(az: FakeAzure, aks_context) -> None:
    ctx = aks_context()
    AksProvisioner(ctx).up()
    [recorded] = json.loads(ctx.state.path.read_text())["resources"]
    AksProvisioner.release_recorded(recorded)                 # what `mlflow-matrix janitor` calls
    assert listed(client(az)) == []


def _matrix_file(tmp_path: Path, **settings: object) -> Path:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["platforms"]["aks-1.32"].update(settings)
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _recorded(reports: Path) -> list[dict]:
    found = []
    for path in (reports / "state").glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            found += json.loads(path.read_text())["resources"]
    return found


def test_kill_9_during_up_then_janitor_cloud_removes_all_by_tag(az: FakeAzure,
                                                                 tmp_path: Path) -> None:
    az.create_polls = 10**9
    matrix = _matrix_file(tmp_path, arm_endpoint=az.url, api_poll_interval=0.05, ttl_hours=0.0001)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", "--platform", "aks-1.32",
                             "--matrix", str(matrix), "--reports-dir", str(reports)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: any(r.get("cluster_requested") for r in _recorded(reports))
                  and len(az.group_names()) == 2)
    finally:
        proc.kill()                                           # SIGKILL: no teardown at all
        proc.wait(timeout=30)
    c = client(az)
    left = listed(c)
    assert len(left) == 2                                     # the group and its node group
    fresh = {**TAGS, "mlflow-matrix-run": "fresh", "mlflow-matrix-expires": "2999-01-01T00:00:00Z"}
    az.add_group("someone-elses", tags={"team": "data"})
    az.add_group("a-fresh-run", tags=fresh)
    time.sleep(0.5)                                           # the killed run's tags expire
    janitor = [sys.executable, "-m", "harness", "janitor", "--cloud", "aks", "--matrix", str(matrix)]
    dry = subprocess.run([*janitor, "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would delete resource-group mm-" in dry.stdout and "a-fresh-run" not in dry.stdout
    assert len(listed(c)) == 4
    real = subprocess.run(janitor, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert real.returncode == 0, real.stdout + real.stderr
    assert listed(c) == ["a-fresh-run", "someone-elses"]      # 0 of the run's left, others kept


def test_sigint_during_create_tears_down(az: FakeAzure, tmp_path: Path) -> None:
    az.create_polls = 10**9
    matrix = _matrix_file(tmp_path, arm_endpoint=az.url, api_poll_interval=0.05)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--platform", "aks-1.32",
                             "--channel", "2.22/stable", "--scenario", "tracking", "--matrix",
                             str(matrix), "--reports-dir", str(reports)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: any(r.get("cluster_requested") for r in _recorded(reports)), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert listed(client(az)) == []
    assert not [r for r in _recorded(reports) if r["type"] == "aks-resource-group"]


def test_no_credentials_exit_2_before_anything_is_created(az: FakeAzure, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["PATH"] = os.path.dirname(sys.executable)             # no `az` to fall back to
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--platform", "aks-1.32",
                           "--reports-dir", str(tmp_path / "r")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    assert "AZURE_SUBSCRIPTION_ID" in proc.stderr + proc.stdout
    assert az.group_names() == []


def test_juju_deploys_on_the_admin_kubeconfig_and_is_released_before_the_group(
        az: FakeAzure, aks_context, cluster, fake_api, tmp_path: Path) -> None:
    """The admin kubeconfig AKS returns (client certificates) is what Juju and lightkube use:
    here it is the fake Kubernetes API's, under the fake `juju`."""
    fake = cluster({"values": {"SUBSTRATE": "kubernetes/default"}})
    az.kubeconfig_text = fake_api.kubeconfig(cluster="mm-aks", user="clusterAdmin_rg_mm-aks",
                                             context="mm-aks-admin")
    controllers_at_delete: list[list[str]] = []
    az.on_group_delete = lambda name: controllers_at_delete.append(
        list(fake.world()["controllers"]))
    ctx = aks_context()
    prov = AksProvisioner(ctx)
    substrate = prov.up()
    dep = prov.deployment(substrate, tmp_path / "reports" / "aks-1.32" / "2.22-stable")
    endpoint = dep.deploy(local_channel("2.22/stable"))
    assert endpoint.mlflow_version == "2.22.0"
    assert {pod for _, pod, _ in fake_api.forwards} == {"mlflow-server-0"}   # port-forward
    assert fake.world()["controllers"]                       # bootstrapped into the cluster
    dep.teardown()
    prov.down()
    juju = fake.lines("juju")
    assert any(line.startswith("juju add-k8s ") for line in juju)
    assert any(line.startswith("juju destroy-controller ") for line in juju)
    assert controllers_at_delete and controllers_at_delete[0] == []   # Juju went first
    assert listed(client(az)) == [] and ctx.state.resources() == []
