"""AKS through the real Azure SDK (azure-identity, azure-mgmt-resource, azure-mgmt-containerservice)
against the loopback fake ARM of tests/fakes/azure_arm.py. Leftovers are counted through the
fake's own list API, called with the SDK (`resource_groups.list`)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import yaml
from fakes.azure_arm import FakeAzure

from harness.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, InfrastructureError
from provisioners.kubernetes.aks import (
    AksClient,
    AksSpec,
    AzureCapacityError,
    AzureCredentialsError,
    make_credential,
    subscription_from_env,
)

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
    with pytest.raises(AzureCapacityError) as err:
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
    with pytest.raises(AzureCredentialsError) as err:
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
    with pytest.raises(AzureCredentialsError) as err:
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
    with pytest.raises(AzureCredentialsError) as err:
        c.check_credentials("mlflow-matrix-r1")
    assert "not-the-secret-xyz" not in err.value.render()
    assert not [r for r in az.requests if r[1].startswith("/subscriptions")]


def test_sweep_deletes_only_expired_run_tagged_groups(az: FakeAzure) -> None:
    c = client(az)
    old, fresh = spec("old"), spec("new", **{"mlflow-matrix-run": "fresh"})
    c.create(old, timeout=30, progress=lambda _: None)
    c.create(fresh, timeout=30, progress=lambda _: None)
    az.add_group("someone-elses", tags={"team": "data"})
    az.add_group("their-run-named-like-ours", tags={"mlflow-matrix-expires": "2000-01-01T00:00:00Z"})

    def due(tags: dict[str, str]) -> bool:
        return tags["mlflow-matrix-run"] != "fresh"

    dry = c.sweep(due, dry_run=True, timeout=30, progress=lambda _: None)
    assert [(g.name, g.deleted) for g in dry] == [(old.resource_group, False)]
    assert len(listed(c)) == 6
    done = c.sweep(due, dry_run=False, timeout=30, progress=lambda _: None)
    assert [(g.name, g.deleted) for g in done] == [(old.resource_group, True)]
    assert listed(c) == sorted([fresh.resource_group, fresh.node_resource_group,
                                "someone-elses", "their-run-named-like-ours"])
