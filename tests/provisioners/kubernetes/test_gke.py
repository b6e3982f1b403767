"""GKE through the real google-cloud-container client (REST transport) and google-auth (a
service-account key whose token_uri is the fake) against tests/fakes/gke_api.py. Leftovers are
counted with the API's own list call (`list_clusters`, location `-`)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import yaml
from fakes.gke_api import PROJECT, FakeGke

from harness.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, InfrastructureError
from provisioners.kubernetes.gke import (
    GcpCapacityError,
    GcpCredentialsError,
    GkeClient,
    GkeSpec,
    access_token,
    default_credentials,
    kubeconfig,
)

LABELS = {"mlflow-matrix-run": "20261129-200000-abc123", "mlflow-matrix-owner": "ci",
          "mlflow-matrix-created": "2026-11-29t20-00-00z",
          "mlflow-matrix-expires": "2026-11-30t02-00-00z"}


@pytest.fixture
def gke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))                       # no gcloud ADC file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    for var in ("CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    with FakeGke(tmp_path) as fake:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.key_file()))
        yield fake


def client(gke: FakeGke) -> GkeClient:
    credentials, project = default_credentials()
    return GkeClient(credentials, project, endpoint=gke.url, poll_interval=0.02)


def spec(name: str = "r1", **labels: str) -> GkeSpec:
    return GkeSpec(project=PROJECT, location="us-central1-a", cluster=f"mm-{name}",
                   kubernetes_version="1.32", machine_type="e2-standard-4", node_count=2,
                   labels={**LABELS, **labels})


def listed(c: GkeClient) -> list[str]:
    return sorted(x.name for x in c.client.list_clusters(
        parent=f"projects/{PROJECT}/locations/-").clusters)


def test_create_then_delete_leaves_nothing(gke: FakeGke) -> None:
    c = client(gke)
    s = spec()
    order: list[str] = []
    cluster = c.create(s, timeout=30, progress=order.append,
                       on_cluster=lambda: order.append("recorded"))
    assert order[0] == "recorded"
    assert cluster.status.name == "RUNNING" and listed(c) == [s.cluster]
    assert dict(cluster.resource_labels) == LABELS
    pool = cluster.node_pools[0]
    assert (pool.initial_node_count, pool.config.machine_type) == (2, "e2-standard-4")
    assert cluster.location == "us-central1-a"                      # zonal
    sent = [p for m, p in gke.requests if m == "POST" and p.endswith("/clusters")]
    assert sent == [f"/v1/projects/{PROJECT}/locations/us-central1-a/clusters"]

    token = access_token(c.credentials)
    config = yaml.safe_load(kubeconfig(cluster, token, "gke-mm-r1"))
    assert config["clusters"][0]["cluster"]["server"] == f"https://{cluster.endpoint}"
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert config["users"][0]["user"] == {"token": token} and token in gke.tokens

    c.delete(s, timeout=30, progress=lambda _: None)
    assert listed(c) == []
    c.delete(s, timeout=30, progress=lambda _: None)               # idempotent


def test_operation_error_stops_early_and_delete_still_works(gke: FakeGke) -> None:
    gke.fail_create = True
    gke.create_polls = 3
    c = client(gke)
    s = spec()
    start = time.monotonic()
    with pytest.raises(InfrastructureError) as err:
        c.create(s, timeout=60, progress=lambda _: None)
    assert time.monotonic() - start < 10
    assert "only 0 nodes out of 2 have registered" in err.value.message
    assert err.value.exit_code == EXIT_INFRASTRUCTURE
    assert listed(c) == [s.cluster]                                 # half-made, still there
    c.delete(s, timeout=30, progress=lambda _: None)
    assert listed(c) == []


def test_quota_refusal_is_a_capacity_error(gke: FakeGke) -> None:
    gke.quota_error = True
    c = client(gke)
    with pytest.raises(GcpCapacityError) as err:
        c.create(spec(), timeout=30, progress=lambda _: None)
    assert "Insufficient regional quota" in err.value.message
    assert err.value.exit_code == EXIT_INFRASTRUCTURE
    assert listed(c) == []


def test_deadline_ends_an_operation_that_never_finishes(gke: FakeGke) -> None:
    gke.create_polls = 10**9
    c = client(gke)
    start = time.monotonic()
    with pytest.raises(InfrastructureError, match="deadline"):
        c.create(spec(), timeout=1.0, progress=lambda _: None)
    assert time.monotonic() - start < 5


def test_labels_the_api_refuses_are_refused(gke: FakeGke) -> None:
    """The fake enforces GKE's label rules, so the helper's output is really checked."""
    c = client(gke)
    with pytest.raises(InfrastructureError, match="Invalid resource label"):
        c.create(spec(**{"mlflow-matrix-created": "2026-11-29T20:00:00Z"}), timeout=30,
                 progress=lambda _: None)


def test_missing_credentials_fail_fast_naming_what_to_set(gke: FakeGke,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    start = time.monotonic()
    with pytest.raises(GcpCredentialsError) as err:
        default_credentials()
    assert time.monotonic() - start < 10
    assert err.value.exit_code == EXIT_BAD_INPUT
    hint = err.value.hint or ""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login",
                 "CLOUDSDK_CORE_PROJECT"):
        assert name in hint
    assert gke.requests == []


def test_revoked_key_is_bad_input(gke: FakeGke, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key = json.loads(Path(gke.key_file()).read_text())
    key["client_email"] = "someone-else@elsewhere.iam.gserviceaccount.com"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(key))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(other))
    with pytest.raises(GcpCredentialsError, match="do not work"):
        default_credentials()
    assert [p for _, p in gke.requests] == ["/token"]


def test_sweep_deletes_only_expired_labelled_clusters(gke: FakeGke) -> None:
    c = client(gke)
    old, fresh = spec("old"), spec("new", **{"mlflow-matrix-run": "fresh"})
    c.create(old, timeout=30, progress=lambda _: None)
    c.create(fresh, timeout=30, progress=lambda _: None)
    gke.add_cluster("someone-elses", labels={"team": "data"})
    gke.add_cluster("no-labels-at-all", location="europe-west1-b")

    def due(labels: dict[str, str]) -> bool:
        return labels["mlflow-matrix-run"] != "fresh"

    dry = c.sweep(due, dry_run=True, timeout=30, progress=lambda _: None)
    assert [(x.name, x.deleted) for x in dry] == [(old.cluster, False)]
    assert len(listed(c)) == 4
    done = c.sweep(due, dry_run=False, timeout=30, progress=lambda _: None)
    assert [(x.name, x.deleted) for x in done] == [(old.cluster, True)]
    assert listed(c) == sorted([fresh.cluster, "someone-elses", "no-labels-at-all"])
