"""Persistence: everything written before the MLflow server restarts reads back identical after.

The runner runs this suite in phases on platforms that can restart the server (Restartable):
  before-restart  write experiments, runs, metrics, artifacts and registered models, read them
                  back, and record what the server returned in the manifest (JSON); these
                  tests run in the cell's main (parallel) run, beside the other suites;
  (restart)       the runner restarts the MLflow server on the same stores;
  after-restart   read everything again: the server must return exactly what was recorded, the
                  artifacts must still be in the bucket, models must load and predict the same.
The plain (unphased) tests do the same write → verify round trip without a restart, so the
verification itself is exercised on every platform, including those that cannot restart.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from _helpers import (
    AddN,
    assert_in_bucket,
    bucket_listing,
    bucket_location,
    log_model,
    manifest_read,
    manifest_record,
    mlflow_tree,
    sha256_file,
    tree_digest,
    write_random,
)
from mlflow.entities import Metric, Param, RunTag

SECTIONS = ("tracking", "artifacts", "registry")
INPUT = pd.DataFrame({"x": [0.5, 2.0, -3.0]})
# Values a float column must keep exactly: thirds, tiny and huge magnitudes, negative zero-ish.
METRIC_VALUES = [0.1, 1 / 3, 1e-12, -2.5, 123456789.123456789, 6.02214076e23, 0.0, 42.0]


def _plain(value):
    """JSON round trip: what the manifest can hold, so recorded and fresh values compare."""
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------- tracking


def seed_tracking(client, prefix):
    experiment_id = client.create_experiment(f"{prefix}-experiment",
                                             tags={"purpose": "persistence", "ünï": "✓"})
    finished = client.create_run(experiment_id, run_name=f"{prefix}-finished",
                                 tags={"team": "matrix"})
    run_id = finished.info.run_id
    base = int(time.time() * 1000)
    metrics = [Metric("loss", v, base + i, i) for i, v in enumerate(METRIC_VALUES)]
    metrics += [Metric("acc", 0.5 + i / 100, base + i, i) for i in range(50)]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param("lr", "0.001"), Param("layers", "[64, 32]"),
                             Param("unicode", "grüße ✓")],
                     tags=[RunTag("stage", "train"), RunTag("long", "x" * 4000)])
    client.log_param(run_id, "seed", "42")
    client.log_metric(run_id, "single", 3.14159, timestamp=base, step=7)
    client.set_terminated(run_id, "FINISHED", end_time=base + 1000)
    running = client.create_run(experiment_id, run_name=f"{prefix}-running")
    client.log_metric(running.info.run_id, "progress", 0.25, timestamp=base, step=1)
    record = {"experiment_id": experiment_id, "run_ids": [run_id, running.info.run_id]}
    record["snapshot"] = snapshot_tracking(client, record)

    # What was written is what the server returns (so a later mismatch means persistence).
    snap = record["snapshot"]
    run = snap["runs"][run_id]
    assert run["info"]["status"] == "FINISHED" and run["info"]["end_time"] == base + 1000
    assert run["params"] == {"lr": "0.001", "layers": "[64, 32]", "unicode": "grüße ✓",
                             "seed": "42"}
    assert run["tags"]["team"] == "matrix" and run["tags"]["long"] == "x" * 4000
    assert [m[2] for m in run["history"]["loss"]] == METRIC_VALUES
    assert len(run["history"]["acc"]) == 50
    assert snap["runs"][running.info.run_id]["info"]["status"] == "RUNNING"
    assert snap["experiment"]["tags"]["ünï"] == "✓"
    return record


def snapshot_tracking(client, record):
    experiment = client.get_experiment(record["experiment_id"])
    runs = {}
    for run_id in record["run_ids"]:
        run = client.get_run(run_id)
        info = run.info
        runs[run_id] = {
            "info": {"run_id": info.run_id, "run_name": info.run_name,
                     "experiment_id": info.experiment_id, "status": info.status,
                     "start_time": info.start_time, "end_time": info.end_time,
                     "lifecycle_stage": info.lifecycle_stage, "artifact_uri": info.artifact_uri,
                     "user_id": info.user_id},
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "metrics": dict(run.data.metrics),
            "history": {key: sorted((m.step, m.timestamp, m.value)
                                    for m in client.get_metric_history(run_id, key))
                        for key in run.data.metrics},
        }
    found = client.search_runs([record["experiment_id"]], order_by=["attributes.start_time ASC"])
    return _plain({
        "experiment": {"experiment_id": experiment.experiment_id, "name": experiment.name,
                       "artifact_location": experiment.artifact_location,
                       "lifecycle_stage": experiment.lifecycle_stage,
                       "tags": dict(experiment.tags),
                       "creation_time": getattr(experiment, "creation_time", None),
                       "last_update_time": getattr(experiment, "last_update_time", None)},
        "runs": runs,
        "search": sorted(r.info.run_id for r in found),
        "by_name": client.get_experiment_by_name(experiment.name).experiment_id,
    })


def verify_tracking(client, record):
    now = snapshot_tracking(client, record)
    before = record["snapshot"]
    assert now["experiment"] == before["experiment"]
    assert now["search"] == before["search"] and now["by_name"] == before["by_name"]
    for run_id, run in before["runs"].items():
        got = now["runs"][run_id]
        for part in ("info", "params", "tags", "metrics", "history"):
            assert got[part] == run[part], f"run {run_id}: {part} changed"
    # Exact float equality: a store that rounds doubles (FLOAT instead of DOUBLE) is caught here.
    history = now["runs"][record["run_ids"][0]]["history"]["loss"]
    assert [v for _, _, v in history] == METRIC_VALUES


# ---------------------------------------------------------------- artifacts


ARTIFACT_FILES = {"model/weights.bin": 1_500_000, "model/config.json": 0, "notes/readme.md": 321,
                  "nested/a/b/c/deep.bin": 70_001, "with space/ünï.txt": 12}


def seed_artifacts(client, endpoint, s3, prefix, workdir):
    experiment_id = client.create_experiment(f"{prefix}-artifacts")
    run = client.create_run(experiment_id)
    source = Path(workdir) / "src"
    for i, (rel, size) in enumerate(ARTIFACT_FILES.items()):
        write_random(source / rel, size, seed=100 + i)
    client.log_artifacts(run.info.run_id, str(source))
    files = {p: list(v) for p, v in tree_digest(source).items()}
    record = {"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri, "files": files}
    verify_artifacts(client, endpoint, s3, record, workdir)
    return record


def verify_artifacts(client, endpoint, s3, record, workdir):
    run = client.get_run(record["run_id"])
    assert run.info.artifact_uri == record["artifact_uri"]
    expected = {p: tuple(v) for p, v in record["files"].items()}
    listed = mlflow_tree(client, record["run_id"])
    # An empty file lists with size None in proxied mode (see test_artifacts.py).
    assert {p: (s or 0) for p, s in listed.items()} == {p: s for p, (s, _) in expected.items()}
    location = bucket_location(endpoint, record["artifact_uri"])
    assert bucket_listing(s3, location) == {p: s for p, (s, _) in expected.items()}
    for path, (size, sha) in expected.items():
        assert_in_bucket(s3, location.child(path), size, sha)
    down = Path(workdir) / f"down-{time.time_ns()}"
    got = mlflow.artifacts.download_artifacts(run_id=record["run_id"], artifact_path="",
                                              dst_path=str(down))
    assert tree_digest(got) == expected
    one = mlflow.artifacts.download_artifacts(run_id=record["run_id"],
                                              artifact_path="model/weights.bin",
                                              dst_path=str(down / "one"))
    assert sha256_file(one) == expected["model/weights.bin"][1]


# ---------------------------------------------------------------- registry


def seed_registry(client, prefix):
    name = f"{prefix}-model"
    experiment_id = client.create_experiment(f"{prefix}-registry")
    client.create_registered_model(name, tags={"team": "matrix"}, description="persisted model")
    for n in (1, 2):
        with mlflow.start_run(experiment_id=experiment_id):
            log_model(mlflow.pyfunc, "model", python_model=AddN(n), registered_model_name=name)
    client.update_model_version(name, "1", description="first")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "previous", "1")
    record = {"name": name, "versions": ["1", "2"], "aliases": ["champion", "previous"]}
    record["snapshot"] = snapshot_registry(client, record)
    assert record["snapshot"]["model"]["aliases"] == {"champion": "2", "previous": "1"}
    assert record["snapshot"]["predictions"]["@champion"] == [10 * x + 2 for x in INPUT["x"]]
    return record


def snapshot_registry(client, record):
    name = record["name"]
    rm = client.get_registered_model(name)
    versions = {}
    for version in record["versions"]:
        mv = client.get_model_version(name, version)
        versions[version] = {
            "name": mv.name, "version": mv.version, "run_id": mv.run_id, "source": mv.source,
            "status": mv.status, "description": mv.description or "", "tags": dict(mv.tags),
            "aliases": sorted(mv.aliases), "current_stage": mv.current_stage,
            "creation_timestamp": mv.creation_timestamp,
            "last_updated_timestamp": mv.last_updated_timestamp,
            "download_uri": client.get_model_version_download_uri(name, version),
        }
    predictions = {}
    for ref in [f"/{v}" for v in record["versions"]] + [f"@{a}" for a in record["aliases"]]:
        model = mlflow.pyfunc.load_model(f"models:/{name}{ref}")
        predictions[ref] = [float(v) for v in np.asarray(model.predict(INPUT)).ravel()]
    return _plain({
        "model": {"name": rm.name, "description": rm.description, "tags": dict(rm.tags),
                  "aliases": dict(rm.aliases), "creation_timestamp": rm.creation_timestamp,
                  "last_updated_timestamp": rm.last_updated_timestamp},
        "versions": versions,
        "by_alias": {a: client.get_model_version_by_alias(name, a).version
                     for a in record["aliases"]},
        "search": sorted(v.version for v in client.search_model_versions(f"name = '{name}'")),
        "predictions": predictions,
    })


def verify_registry(client, endpoint, s3, record):
    now = snapshot_registry(client, record)
    before = record["snapshot"]
    for part in ("model", "versions", "by_alias", "search", "predictions"):
        assert now[part] == before[part], f"registered model {record['name']}: {part} changed"
    for version in record["versions"]:
        location = bucket_location(endpoint, now["versions"][version]["download_uri"])
        assert "MLmodel" in bucket_listing(s3, location), f"version {version}: no MLmodel in {location}"


# ---------------------------------------------------------------- the tests


def _seed(section, client, endpoint, s3, prefix, workdir):
    if section == "tracking":
        return seed_tracking(client, prefix)
    if section == "artifacts":
        return seed_artifacts(client, endpoint, s3, prefix, workdir)
    return seed_registry(client, prefix)


def _verify(section, client, endpoint, s3, record, workdir):
    if section == "tracking":
        verify_tracking(client, record)
    elif section == "artifacts":
        verify_artifacts(client, endpoint, s3, record, workdir)
    else:
        verify_registry(client, endpoint, s3, record)


def _recorded(manifest_path, section):
    record = manifest_read(manifest_path).get(section)
    if record is None:
        pytest.fail(f"the before-restart phase recorded no {section!r} section in "
                    f"{manifest_path}: its test failed or did not run, so there is nothing to "
                    "check after the restart")
    return record


@pytest.mark.parametrize("section", SECTIONS)
def test_round_trip_without_restart(mlflow_client, endpoint, s3, unique_name, tmp_path, section):
    """Write, then verify on the same server: the verification used after a restart works."""
    record = _plain(_seed(section, mlflow_client, endpoint, s3, unique_name(), tmp_path))
    _verify(section, mlflow_client, endpoint, s3, record, tmp_path)


@pytest.mark.phase("before-restart")
@pytest.mark.parametrize("section", SECTIONS)
def test_write_before_restart(mlflow_client, endpoint, s3, unique_name, tmp_path, manifest_path,
                              section):
    record = _seed(section, mlflow_client, endpoint, s3, unique_name(), tmp_path)
    manifest_record(manifest_path, section, _plain(record))


@pytest.mark.phase("after-restart")
@pytest.mark.parametrize("section", SECTIONS)
def test_identical_after_restart(mlflow_client, endpoint, s3, tmp_path, manifest_path, section):
    _verify(section, mlflow_client, endpoint, s3, _recorded(manifest_path, section), tmp_path)


@pytest.mark.phase("after-restart")
def test_restarted_server_accepts_writes_to_old_data(mlflow_client, manifest_path):
    """Runs, experiments and models created before the restart can be continued after it."""
    tracking = _recorded(manifest_path, "tracking")
    registry = _recorded(manifest_path, "registry")
    running = tracking["run_ids"][1]
    mlflow_client.log_metric(running, "progress", 1.0, step=2)
    mlflow_client.set_terminated(running, "FINISHED")
    run = mlflow_client.get_run(running)
    assert run.info.status == "FINISHED" and run.data.metrics["progress"] == 1.0
    assert len(mlflow_client.get_metric_history(running, "progress")) == 2
    new_run = mlflow_client.create_run(tracking["experiment_id"])
    assert new_run.info.experiment_id == tracking["experiment_id"]

    name = registry["name"]
    mlflow_client.set_registered_model_alias(name, "champion", "1")
    assert mlflow_client.get_model_version_by_alias(name, "champion").version == "1"
    with mlflow.start_run(experiment_id=tracking["experiment_id"]):
        log_model(mlflow.pyfunc, "model", python_model=AddN(3), registered_model_name=name)
    assert mlflow_client.get_model_version(name, "3").status == "READY"
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/3")
    assert list(loaded.predict(INPUT)) == pytest.approx([10 * x + 3 for x in INPUT["x"]])
    assert not any(math.isnan(v) for v in loaded.predict(INPUT))
