"""GKE through the real google-cloud-container client (REST transport) and google-auth (a
service-account key whose token_uri is the fake) against tests/fakes/gke_api.py. Leftovers are
counted with the API's own list call (`list_clusters`, location `-`)."""
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
from fakes.fixtures import context_for  # noqa: F401  (pytest fixture)
from fakes.gke_api import PROJECT, FakeGke

from harness.system.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, InfrastructureError
from provisioners.kubernetes.cloud import CapacityError, CredentialsError
from provisioners.kubernetes.gke import (
    GkeClient,
    GkeProvisioner,
    GkeSpec,
    access_token,
    default_credentials,
    kubeconfig,
)

ROOT = Path(__file__).resolve().parents[3]
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
    with pytest.raises(CapacityError) as err:
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
    with pytest.raises(CredentialsError) as err:
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
    with pytest.raises(CredentialsError, match="do not work"):
        default_credentials()
    assert [p for _, p in gke.requests] == ["/token"]


# ---------------------------------------------------------------- the provisioner (base + CLI)

@pytest.fixture
def gke_context(gke: FakeGke, context_for):
    def make(**settings: object):
        return context_for("gke-1.32", api_endpoint=gke.url, api_poll_interval=0.02, **settings)
    return make


def test_plan_prints_every_call_without_credentials(gke_context, monkeypatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    text = "\n".join(GkeProvisioner(gke_context()).plan())
    for call in ("POST ", "/locations/us-central1-a/clusters", "2 x e2-standard-4",
                 "mlflow-matrix-run=", "mlflow-matrix-expires=", "operations/<op>", "until DONE",
                 "static access token", "DELETE ", "deadline 1800 s", "deadline 1200 s"):
        assert call in text, call


def test_up_records_before_creating_and_down_releases_everything(gke: FakeGke, gke_context) -> None:
    ctx = gke_context()
    GkeProvisioner.preflight(ctx.platform.settings, {})
    prov = GkeProvisioner(ctx)
    substrate = prov.up()
    c = client(gke)
    assert substrate.cluster_goes_away and substrate.kubeconfig.stat().st_mode & 0o777 == 0o600
    user = yaml.safe_load(substrate.kubeconfig.read_text())["users"][0]["user"]
    assert set(user) == {"token"} and user["token"] in gke.tokens
    [res] = [r for r in json.loads(ctx.state.path.read_text())["resources"]
             if r["type"] == "gke-cluster"]
    assert res["kind"] == "gke" and listed(c) == [res["name"]]
    [cluster] = c.client.list_clusters(parent=f"projects/{PROJECT}/locations/-").clusters
    labels = dict(cluster.resource_labels)
    assert labels["mlflow-matrix-run"] == ctx.run_id
    assert set(labels) == {"mlflow-matrix-run", "mlflow-matrix-owner", "mlflow-matrix-created",
                           "mlflow-matrix-expires"}
    assert all(v == v.lower() and len(v) <= 63 for v in labels.values())
    prov.down()
    assert listed(c) == []
    assert not [r for r in ctx.state.resources() if r.type == "gke-cluster"]
    assert not substrate.kubeconfig.exists()
    prov.down()


def test_create_failing_half_way_then_down_removes_everything(gke: FakeGke, gke_context) -> None:
    gke.fail_create = True
    ctx = gke_context()
    prov = GkeProvisioner(ctx)
    with pytest.raises(InfrastructureError):
        prov.up()
    c = client(gke)
    assert len(listed(c)) == 1 and len(ctx.state.resources()) == 1
    prov.down()
    assert listed(c) == [] and ctx.state.resources() == []


def test_janitor_releases_what_a_crashed_run_recorded(gke: FakeGke, gke_context) -> None:
    ctx = gke_context()
    GkeProvisioner(ctx).up()
    [recorded] = json.loads(ctx.state.path.read_text())["resources"]
    GkeProvisioner.release_recorded(recorded)
    assert listed(client(gke)) == []


def _matrix_file(tmp_path: Path, **settings: object) -> Path:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["platforms"]["gke-1.32"].update(settings)
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


def test_kill_9_during_up_then_janitor_cloud_removes_all_by_label(gke: FakeGke,
                                                                   tmp_path: Path) -> None:
    gke.create_polls = 10         # still creating when killed; the janitor's delete waits it out
    matrix = _matrix_file(tmp_path, api_endpoint=gke.url, api_poll_interval=0.05,
                          ttl_hours=0.0001)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", "--platform", "gke-1.32",
                             "--matrix", str(matrix), "--reports-dir", str(reports)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: bool(_recorded(reports)) and len(gke.cluster_names()) == 1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    c = client(gke)
    gke.add_cluster("someone-elses", labels={"team": "data"})
    gke.add_cluster("a-fresh-run", labels={**LABELS, "mlflow-matrix-run": "fresh",
                                           "mlflow-matrix-expires": "2999-01-01t00-00-00z"})
    time.sleep(0.5)
    janitor = [sys.executable, "-m", "harness", "janitor", "--cloud", "gke", "--matrix", str(matrix)]
    dry = subprocess.run([*janitor, "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would delete gke-cluster us-central1-a/mm-" in dry.stdout
    assert "a-fresh-run" not in dry.stdout and len(listed(c)) == 3
    real = subprocess.run(janitor, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert real.returncode == 0, real.stdout + real.stderr
    assert listed(c) == ["a-fresh-run", "someone-elses"]


def test_sigint_during_create_tears_down(gke: FakeGke, tmp_path: Path) -> None:
    gke.create_polls = 40
    matrix = _matrix_file(tmp_path, api_endpoint=gke.url, api_poll_interval=0.05)
    reports = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--platform", "gke-1.32",
                             "--channel", "2.22/stable", "--scenario", "tracking", "--matrix",
                             str(matrix), "--reports-dir", str(reports)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: bool(gke.cluster_names()), timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert listed(client(gke)) == []
    assert not [r for r in _recorded(reports) if r["type"] == "gke-cluster"]
    # the delete was refused while the create ran, and retried until GKE accepted it
    assert any(m == "DELETE" for m, _ in gke.requests)


def test_no_credentials_exit_2_before_anything_is_created(gke: FakeGke, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCLOUD_"))}
    env["NO_GCE_CHECK"] = "True"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--platform", "gke-1.32",
                           "--reports-dir", str(tmp_path / "r")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    assert "GOOGLE_APPLICATION_CREDENTIALS" in proc.stderr + proc.stdout
    assert gke.requests == []
