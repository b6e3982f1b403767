"""Upgrades: everything written before an upgrade is all there after it, field by field.

Runs in three phases of one upgrade cell (see harness/run/runner.py):
  before-upgrade  the old client writes a rich, deterministic data set and a manifest of it
  after-upgrade   the new client checks every manifest entry, then that new writes still work
  old-client      the old client reads through the new server (informational: MLflow supports
                  same-major client/server pairs only)
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import uuid
from pathlib import Path

import pytest

SEED = "before-upgrade"
VERIFY = "after-upgrade"
OLD_CLIENT = "old-client"
# after a step of a guide that can lose data (a MinIO refresh …), with the client of the server
# that runs then: the seed reads back exactly, before the guide goes on
DATA_CHECK = "data-check"

PARAMS = {"alpha": "0.5", "optimizer": "adam", "unicode": "température 学习率 🚀",
          "long": "x" * 500}
METRICS = {"loss": [(step, 1.0 / (step + 1)) for step in range(25)],
           "tiny": [(0, 1e-300), (1, -2.5e-12)], "huge": [(0, 1.5e300)]}
ARTIFACTS = {"notes.txt": b"written before the upgrade\n",
             "data/blob.bin": bytes(range(256)) * 64,
             "data/nested/ü n i.txt": "unicode name ✓".encode()}


# ------------------------------------------------------------------ helpers


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load(manifest_path: Path) -> dict:
    if not manifest_path.is_file():
        pytest.fail(f"no manifest at {manifest_path}: the before-upgrade phase wrote nothing")
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def _bucket_key(artifact_uri: str, bucket: str, path: str) -> str | None:
    """Where a direct-S3 artifact lives in the bucket; None for proxied (mlflow-artifacts:)."""
    prefix = f"s3://{bucket}/"
    if not artifact_uri.startswith(prefix):
        return None
    return f"{artifact_uri[len(prefix):].rstrip('/')}/{path}"


def _history(client, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class Problems:
    """Collects every missing or changed item, so one failure names all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, text: str) -> None:
        if not ok:
            self.items.append(text)

    def raise_if_any(self, what: str, when: str = "after the upgrade") -> None:
        if self.items:
            listed = "\n  - ".join(self.items)
            pytest.fail(f"{len(self.items)} {what} missing or changed {when}:\n"
                        f"  - {listed}", pytrace=False)


# ------------------------------------------------------------------ seed


@pytest.mark.phase(SEED)
def test_seed_data_set(mlflow_client, endpoint, manifest_path, s3):
    import mlflow

    client = mlflow_client
    token = uuid.uuid4().hex[:8]
    manifest: dict = {"written_by": endpoint.mlflow_version, "experiments": [], "runs": [],
                      "models": []}
    experiment_name = f"mm-upgrade-{token}"
    experiment_id = client.create_experiment(experiment_name,
                                             tags={"purpose": "upgrade", "token": token})
    manifest["experiments"].append({"id": experiment_id, "name": experiment_name,
                                    "tags": {"purpose": "upgrade", "token": token},
                                    "lifecycle_stage": "active"})
    deleted_experiment = client.create_experiment(f"mm-upgrade-deleted-{token}")
    client.delete_experiment(deleted_experiment)
    manifest["experiments"].append({"id": deleted_experiment,
                                    "name": f"mm-upgrade-deleted-{token}", "tags": {},
                                    "lifecycle_stage": "deleted"})

    start = 1_700_000_000_000
    runs = []
    for i, (name, kind) in enumerate((("parent", "parent"), ("child", "child"),
                                      ("deleted-run", "deleted"))):
        tags = {"kind": kind}
        if kind == "child":
            tags["mlflow.parentRunId"] = runs[0].info.run_id
        runs.append(client.create_run(experiment_id, run_name=name, tags=tags,
                                      start_time=start + 1000 * i))
    parent, child, doomed = runs
    for i, (run, status) in enumerate(((parent, "FINISHED"), (child, "FAILED"),
                                       (doomed, "FINISHED"))):
        for key, value in PARAMS.items():
            client.log_param(run.info.run_id, key, value)
        base_ts = 1_700_000_000_000
        for key, points in METRICS.items():
            for step, value in points:
                client.log_metric(run.info.run_id, key, value, timestamp=base_ts + step, step=step)
        note = f"{run.info.run_name} ✓"
        client.set_tag(run.info.run_id, "note", note)
        artifacts = {}
        with tempfile.TemporaryDirectory() as tmp:
            for rel, data in ARTIFACTS.items():
                path = Path(tmp, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                artifacts[rel] = {"sha256": _sha(data), "size": len(data)}
            client.log_artifacts(run.info.run_id, tmp)
        end = start + 60_000 + 1000 * i
        client.set_terminated(run.info.run_id, status=status, end_time=end)
        # Expected values are what this test sent, never what the old server answered: a value
        # the old server mangled must not "survive" the upgrade. The run id and artifact URI
        # are the server's names for the run, used only to find it again.
        sent = {
            "id": run.info.run_id, "experiment_id": experiment_id,
            "name": ("parent", "child", "deleted-run")[i], "status": status, "params": PARAMS,
            "metrics": {k: [[step, base_ts + step, value] for step, value in points]
                        for k, points in METRICS.items()},
            "tags": {"kind": ("parent", "child", "deleted")[i], "note": note},
            "parent": parent.info.run_id if run is child else None,
            "deleted": run is doomed, "artifact_uri": run.info.artifact_uri,
            "artifacts": artifacts, "start_time": start + 1000 * i, "end_time": end,
        }
        manifest["runs"].append(sent)

    model_name = f"mm-upgrade-model-{token}"
    client.create_registered_model(model_name, tags={"owner": "matrix"},
                                   description="registered before the upgrade")
    versions = []
    for i, run in enumerate((parent, child), start=1):
        source = f"{run.info.artifact_uri}/data"
        mv = client.create_model_version(model_name, source, run_id=run.info.run_id,
                                         tags={"n": str(i)}, description=f"version {i}")
        assert str(mv.version) == str(i), f"the new model's version {i} got number {mv.version}"
        versions.append({"version": str(i), "run_id": run.info.run_id, "tags": {"n": str(i)},
                         "description": f"version {i}", "source": source})
    client.set_registered_model_alias(model_name, "champion", "1")
    client.set_registered_model_alias(model_name, "challenger", "2")
    manifest["models"].append({"name": model_name, "description": "registered before the upgrade",
                               "tags": {"owner": "matrix"}, "versions": versions,
                               "aliases": {"champion": "1", "challenger": "2"}})
    client.delete_run(doomed.info.run_id)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    assert mlflow.get_tracking_uri() == endpoint.tracking_uri
    # the old server must hold what was sent, or the upgrade is judged on mangled data
    _verify_experiments(client, manifest, when="before the upgrade")
    _verify_runs(client, manifest, when="before the upgrade")
    _verify_models(client, manifest, when="before the upgrade")


# ------------------------------------------------------------------ verify


def _verify_experiments(client, manifest, when: str = "after the upgrade") -> None:
    problems = Problems()
    for exp in manifest["experiments"]:
        try:
            got = client.get_experiment(exp["id"])
        except Exception as exc:
            problems.check(False, f"experiment {exp['name']} ({exp['id']}): {exc}")
            continue
        problems.check(got.name == exp["name"], f"experiment {exp['id']} name: {got.name!r}")
        problems.check(got.lifecycle_stage == exp["lifecycle_stage"],
                       f"experiment {exp['name']} lifecycle_stage {got.lifecycle_stage!r}")
        for key, value in exp["tags"].items():
            problems.check(got.tags.get(key) == value,
                           f"experiment {exp['name']} tag {key!r}: {got.tags.get(key)!r}")
    problems.raise_if_any("experiment fields", when)


def _verify_runs(client, manifest, when: str = "after the upgrade") -> None:
    problems = Problems()
    for run in manifest["runs"]:
        label = f"run {run['name']} ({run['id']})"
        try:
            got = client.get_run(run["id"])
        except Exception as exc:
            problems.check(False, f"{label}: {exc}")
            continue
        problems.check(got.info.status == run["status"], f"{label} status {got.info.status}")
        problems.check(got.info.run_name == run["name"], f"{label} name {got.info.run_name!r}")
        problems.check(got.info.start_time == run["start_time"], f"{label} start_time")
        problems.check(got.info.end_time == run["end_time"], f"{label} end_time")
        expected_stage = "deleted" if run["deleted"] else "active"
        problems.check(got.info.lifecycle_stage == expected_stage,
                       f"{label} lifecycle_stage {got.info.lifecycle_stage!r}")
        for key, value in run["params"].items():
            problems.check(got.data.params.get(key) == value, f"{label} param {key!r}")
        for key, value in run["tags"].items():
            problems.check(got.data.tags.get(key) == value,
                           f"{label} tag {key!r}: {got.data.tags.get(key)!r}")
        if run["parent"]:
            problems.check(got.data.tags.get("mlflow.parentRunId") == run["parent"],
                           f"{label} parent link")
        for key, expected in run["metrics"].items():
            history = _history(client, run["id"], key)
            expected = [tuple(p) for p in expected]
            if len(history) != len(expected):
                problems.check(False, f"{label} metric {key!r}: {len(history)} of "
                               f"{len(expected)} points")
                continue
            for want, have in zip(expected, history, strict=True):
                problems.check(want[:2] == have[:2] and _same_float(want[2], have[2]),
                               f"{label} metric {key!r} step {want[0]}: {have} != {want}")
    problems.raise_if_any("run fields", when)


def _verify_artifacts(client, manifest, s3, endpoint) -> None:
    problems = Problems()
    for run in manifest["runs"]:
        label = f"run {run['name']}"
        with tempfile.TemporaryDirectory() as tmp:
            for rel, meta in run["artifacts"].items():
                key = _bucket_key(run["artifact_uri"], endpoint.artifact_bucket or "", rel)
                if key is not None:
                    try:
                        head = s3.head_object(Bucket=endpoint.artifact_bucket, Key=key)
                        problems.check(head["ContentLength"] == meta["size"],
                                       f"{label} bucket object {key} size")
                    except Exception as exc:
                        problems.check(False, f"{label} bucket object {key}: {exc}")
                try:
                    local = client.download_artifacts(run["id"], rel, tmp)
                    data = Path(local).read_bytes()
                    problems.check(_sha(data) == meta["sha256"], f"{label} artifact {rel} sha256")
                except Exception as exc:
                    problems.check(False, f"{label} artifact {rel}: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}")
    problems.raise_if_any("artifacts")


def _verify_models(client, manifest, when: str = "after the upgrade") -> None:
    problems = Problems()
    for model in manifest["models"]:
        label = f"registered model {model['name']}"
        try:
            got = client.get_registered_model(model["name"])
        except Exception as exc:
            problems.check(False, f"{label}: {exc}")
            continue
        problems.check(got.description == model["description"], f"{label} description")
        for key, value in model["tags"].items():
            problems.check(got.tags.get(key) == value, f"{label} tag {key!r}")
        aliases = dict(getattr(got, "aliases", {}) or {})
        for alias, version in model["aliases"].items():
            problems.check(str(aliases.get(alias)) == version,
                           f"{label} alias {alias!r} → {aliases.get(alias)!r}, expected {version}")
        for version in model["versions"]:
            try:
                mv = client.get_model_version(model["name"], version["version"])
            except Exception as exc:
                problems.check(False, f"{label} version {version['version']}: {exc}")
                continue
            problems.check(mv.run_id == version["run_id"], f"{label} v{version['version']} run")
            problems.check(mv.source == version["source"], f"{label} v{version['version']} source")
            problems.check(mv.description == version["description"],
                           f"{label} v{version['version']} description")
            for key, value in version["tags"].items():
                problems.check(mv.tags.get(key) == value,
                               f"{label} v{version['version']} tag {key!r}")
    problems.raise_if_any("registry fields", when)


@pytest.mark.phase(VERIFY)
def test_experiments_survive(mlflow_client, manifest_path):
    _verify_experiments(mlflow_client, _load(manifest_path))


@pytest.mark.phase(VERIFY)
def test_runs_params_tags_and_metric_histories_survive(mlflow_client, manifest_path):
    _verify_runs(mlflow_client, _load(manifest_path))


@pytest.mark.phase(VERIFY)
def test_artifacts_survive_in_bucket_and_through_mlflow(mlflow_client, manifest_path, s3,
                                                        endpoint):
    _verify_artifacts(mlflow_client, _load(manifest_path), s3, endpoint)


@pytest.mark.phase(VERIFY)
def test_registered_models_versions_and_aliases_survive(mlflow_client, manifest_path):
    _verify_models(mlflow_client, _load(manifest_path))


@pytest.mark.phase(VERIFY)
def test_deleted_run_stays_hidden_from_active_search(mlflow_client, manifest_path):
    from mlflow.entities import ViewType

    manifest = _load(manifest_path)
    experiment_id = manifest["experiments"][0]["id"]
    active = {r.info.run_id for r in mlflow_client.search_runs(
        [experiment_id], run_view_type=ViewType.ACTIVE_ONLY)}
    deleted = {r.info.run_id for r in mlflow_client.search_runs(
        [experiment_id], run_view_type=ViewType.DELETED_ONLY)}
    expected_deleted = {r["id"] for r in manifest["runs"] if r["deleted"]}
    assert deleted == expected_deleted
    assert active == {r["id"] for r in manifest["runs"]} - expected_deleted


@pytest.mark.phase(VERIFY)
def test_new_writes_after_upgrade(mlflow_client, manifest_path, endpoint):
    manifest = _load(manifest_path)
    experiment_id = manifest["experiments"][0]["id"]
    run = mlflow_client.create_run(experiment_id, run_name="after-upgrade")
    mlflow_client.log_param(run.info.run_id, "written_by", endpoint.mlflow_version)
    mlflow_client.log_metric(run.info.run_id, "loss", 0.125, step=7)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "after.txt").write_text("after the upgrade")
        mlflow_client.log_artifact(run.info.run_id, str(Path(tmp, "after.txt")))
        Path(tmp, "dl").mkdir()  # MLflow 2.x clients refuse a destination that does not exist
        back = mlflow_client.download_artifacts(run.info.run_id, "after.txt", tmp + "/dl")
        assert Path(back).read_text() == "after the upgrade"
    mlflow_client.set_terminated(run.info.run_id)
    got = mlflow_client.get_run(run.info.run_id)
    assert got.data.params["written_by"] == endpoint.mlflow_version
    assert got.data.metrics["loss"] == 0.125
    model = manifest["models"][0]["name"]
    mv = mlflow_client.create_model_version(model, f"{got.info.artifact_uri}/after.txt",
                                            run_id=run.info.run_id)
    assert int(mv.version) == len(manifest["models"][0]["versions"]) + 1
    mlflow_client.set_registered_model_alias(model, "latest-write", mv.version)
    assert mlflow_client.get_model_version_by_alias(model, "latest-write").version == mv.version


# ------------------------------------------------------------------ old client


@pytest.mark.phase(OLD_CLIENT)
def test_old_client_reads_experiments_and_runs(mlflow_client, manifest_path):
    manifest = _load(manifest_path)
    _verify_experiments(mlflow_client, manifest)
    _verify_runs(mlflow_client, manifest)


@pytest.mark.phase(OLD_CLIENT)
def test_old_client_reads_registry(mlflow_client, manifest_path):
    _verify_models(mlflow_client, _load(manifest_path))



# ------------------------------------------------------------------ after a guide step


@pytest.mark.phase(DATA_CHECK)
def test_seed_reads_back_after_the_step(mlflow_client, manifest_path, s3, endpoint):
    manifest = _load(manifest_path)
    when = "after this guide step"
    _verify_experiments(mlflow_client, manifest, when)
    _verify_runs(mlflow_client, manifest, when)
    _verify_models(mlflow_client, manifest, when)


@pytest.mark.phase(DATA_CHECK)
def test_seed_artifacts_read_back_after_the_step(mlflow_client, manifest_path, s3, endpoint):
    _verify_artifacts(mlflow_client, _load(manifest_path), s3, endpoint)
