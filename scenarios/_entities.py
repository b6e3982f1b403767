"""MLflow's newer entities as one seed-and-read-back unit, for the suites that carry data across
a server restart (persistence) or an upgrade (upgrade): a trace of nested spans, a dataset input,
a prompt with two versions and an alias, and (MLflow 3) a logged model.

`seed` writes one entity and returns a JSON-able record of what the server holds, checked against
what was sent; `verify` reads it again and fails on any difference. Each entity needs an API its
release may lack (`API`, by rule in _rules.py): callers gate with `_helpers.require_api`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import mlflow
import pandas as pd
from _helpers import (
    AddN,
    bucket_listing,
    bucket_location,
    log_model,
    traces_logged_synchronously,
)

# entity -> the API rule (api_<name> in _rules.py) its release must have
API = {"traces": "traces", "dataset_input": "dataset_inputs", "prompt": "prompt_registry",
       "logged_model": "logged_models"}
ENTITIES = tuple(API)
TEMPLATES = ("Answer {{question}} briefly.", "Answer {{question}} in {{language}} ✓")
FRAME = pd.DataFrame({"x": [0.5, 1.5], "y": ["a", "ü"]})
INPUT = pd.DataFrame({"x": [1.0, -2.0]})


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _user(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


def _trace_id(info: Any) -> str:
    return getattr(info, "trace_id", None) or info.request_id


# ---------------------------------------------------------------- traces


def _seed_traces(client: Any, prefix: str) -> dict[str, Any]:
    traces_logged_synchronously()
    experiment_id = client.create_experiment(f"{prefix}-traces")
    mlflow.set_experiment(experiment_id=experiment_id)
    with (mlflow.start_run(experiment_id=experiment_id) as run,
          mlflow.start_span(name="root", attributes={"k": "v ✓"}) as root):
        trace_id = getattr(root, "trace_id", None) or root.request_id
        root.set_inputs({"q": "two plus two"})
        with mlflow.start_span(name="child", attributes={"depth": 1}) as child:
            with mlflow.start_span(name="grandchild") as grandchild:
                grandchild.set_outputs(4)
            child.set_outputs({"sum": 4})
        root.set_outputs("4")
    client.set_trace_tag(trace_id, "kept", "across restarts ✓")
    record = {"experiment_id": experiment_id, "trace_id": trace_id, "run_id": run.info.run_id}
    record["snapshot"] = _snapshot_traces(client, record)
    spans = record["snapshot"]["spans"]
    assert [(s["name"], s["parent"]) for s in spans] == [
        ("root", None), ("child", "root"), ("grandchild", "child")], spans
    assert spans[0]["inputs"] == {"q": "two plus two"} and spans[2]["outputs"] == 4
    assert record["snapshot"]["tags"] == {"kept": "across restarts ✓"}
    assert record["snapshot"]["run"] == run.info.run_id
    return record


def _snapshot_traces(client: Any, record: dict[str, Any]) -> dict[str, Any]:
    trace = client.get_trace(record["trace_id"])
    info = trace.info
    names = {s.span_id: s.name for s in trace.data.spans}
    spans = sorted(trace.data.spans, key=lambda s: (s.start_time_ns, s.name))
    found = client.search_traces([record["experiment_id"]])
    return _plain({
        "id": _trace_id(info), "experiment_id": info.experiment_id,
        "timestamp_ms": info.timestamp_ms, "execution_time_ms": info.execution_time_ms,
        "status": str(getattr(info.status, "value", info.status)).split(".")[-1],
        "tags": _user(info.tags), "run": info.request_metadata.get("mlflow.sourceRun"),
        "spans": [{"name": s.name, "parent": names.get(s.parent_id),
                   "start_ns": s.start_time_ns, "end_ns": s.end_time_ns,
                   "status": str(getattr(s.status.status_code, "value", s.status.status_code)),
                   "inputs": s.inputs, "outputs": s.outputs,
                   "attributes": {k: s.get_attribute(k) for k in ("k", "depth")
                                  if s.get_attribute(k) is not None}}
                  for s in spans],
        "search": sorted(_trace_id(t.info) for t in found),
    })


# ---------------------------------------------------------------- dataset input


def _dataset_view(run: Any) -> list[dict[str, Any]]:
    return sorted(({"name": i.dataset.name, "digest": i.dataset.digest,
                    "source_type": i.dataset.source_type,
                    "source": json.loads(i.dataset.source), "schema": json.loads(i.dataset.schema),
                    "profile": json.loads(i.dataset.profile),
                    "tags": {t.key: t.value for t in i.tags}}
                   for i in run.inputs.dataset_inputs), key=lambda d: d["name"])


def _seed_dataset_input(client: Any, prefix: str) -> dict[str, Any]:
    experiment_id = client.create_experiment(f"{prefix}-datasets")
    dataset = mlflow.data.from_pandas(FRAME, source="s3://mm-bucket/seed.csv", name="seed",
                                      targets="y")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_input(dataset, context="training")
    record = {"run_id": run.info.run_id}
    record["snapshot"] = _snapshot_dataset_input(client, record)
    sent = dataset._to_mlflow_entity()
    got = record["snapshot"]["inputs"]
    assert [(d["name"], d["digest"], d["source_type"]) for d in got] == [
        (sent.name, sent.digest, sent.source_type)], got
    assert got[0]["schema"] == json.loads(sent.schema)
    assert got[0]["tags"].get("mlflow.data.context") == "training"
    return record


def _snapshot_dataset_input(client: Any, record: dict[str, Any]) -> dict[str, Any]:
    return _plain({"inputs": _dataset_view(client.get_run(record["run_id"]))})


# ---------------------------------------------------------------- prompt


def _seed_prompt(client: Any, prefix: str) -> dict[str, Any]:
    name = f"{prefix}-prompt"
    for i, template in enumerate(TEMPLATES, start=1):
        client.register_prompt(name, template, commit_message=f"v{i}")
    client.set_prompt_alias(name, "production", 1)
    record = {"name": name}
    record["snapshot"] = _snapshot_prompt(client, record)
    assert record["snapshot"]["versions"] == {
        "1": {"template": TEMPLATES[0], "variables": ["question"], "commit_message": "v1"},
        "2": {"template": TEMPLATES[1], "variables": ["language", "question"],
              "commit_message": "v2"}}
    assert record["snapshot"]["alias"] == {"production": "1"}
    return record


def load_prompt(client: Any, uri: str) -> Any:
    """load_prompt from the server, not from the MLflow 3 client's prompt cache."""
    import inspect

    if "cache_ttl_seconds" in inspect.signature(client.load_prompt).parameters:
        return client.load_prompt(uri, cache_ttl_seconds=0)
    return client.load_prompt(uri)


def _snapshot_prompt(client: Any, record: dict[str, Any]) -> dict[str, Any]:
    name = record["name"]
    versions = {}
    for number in ("1", "2"):
        prompt = load_prompt(client, f"prompts:/{name}/{number}")
        versions[number] = {"template": prompt.template, "variables": sorted(prompt.variables),
                            "commit_message": prompt.commit_message}
    alias = load_prompt(client, f"prompts:/{name}@production")
    return _plain({"versions": versions, "alias": {"production": str(alias.version)}})


# ---------------------------------------------------------------- logged model


def _seed_logged_model(client: Any, prefix: str, endpoint: Any, s3: Any) -> dict[str, Any]:
    experiment_id = client.create_experiment(f"{prefix}-logged-model")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(mlflow.pyfunc, "model", python_model=AddN(5), params={"n": "5"})
        mlflow.log_metric("score", 0.875, step=2, model_id=info.model_id)
    client.set_logged_model_tags(info.model_id, {"kept": "yes ✓"})
    record = {"model_id": info.model_id, "run_id": run.info.run_id, "experiment_id": experiment_id}
    record["snapshot"] = _snapshot_logged_model(client, record, endpoint, s3)
    got = record["snapshot"]["model"]
    assert (got["source_run_id"], got["experiment_id"], got["status"]) == (
        run.info.run_id, experiment_id, "READY"), got
    assert got["params"] == {"n": "5"} and got["tags"] == {"kept": "yes ✓"}
    assert got["metrics"] == [["score", 2, 0.875]]
    return record


def _snapshot_logged_model(client: Any, record: dict[str, Any], endpoint: Any,
                           s3: Any) -> dict[str, Any]:
    model = client.get_logged_model(record["model_id"])
    location = bucket_location(endpoint, model.artifact_location)
    loaded = mlflow.pyfunc.load_model(f"models:/{record['model_id']}")
    return _plain({
        "model": {"id": model.model_id, "name": model.name, "experiment_id": model.experiment_id,
                  "source_run_id": model.source_run_id, "params": model.params,
                  "tags": _user(model.tags), "artifact_location": model.artifact_location,
                  "status": str(getattr(model.status, "name", model.status)).split(".")[-1],
                  "metrics": sorted([m.key, m.step, m.value] for m in model.metrics or [])},
        "in_bucket": "MLmodel" in bucket_listing(s3, location),
        "predictions": [float(v) for v in loaded.predict(INPUT)],
        "search": [m.model_id for m in client.search_logged_models([record["experiment_id"]])],
    })


# ---------------------------------------------------------------- one entry point


def seed(entity: str, client: Any, prefix: str, endpoint: Any, s3: Any) -> dict[str, Any]:
    """Write one entity, check the server holds what was sent, return its record."""
    if entity == "traces":
        record = _seed_traces(client, prefix)
    elif entity == "dataset_input":
        record = _seed_dataset_input(client, prefix)
    elif entity == "prompt":
        record = _seed_prompt(client, prefix)
    else:
        record = _seed_logged_model(client, prefix, endpoint, s3)
    record["written_by"] = mlflow.__version__
    record["written_at"] = int(time.time())
    return _plain(record)


def snapshot(entity: str, client: Any, record: dict[str, Any], endpoint: Any, s3: Any) -> dict:
    if entity == "traces":
        return _snapshot_traces(client, record)
    if entity == "dataset_input":
        return _snapshot_dataset_input(client, record)
    if entity == "prompt":
        return _snapshot_prompt(client, record)
    return _snapshot_logged_model(client, record, endpoint, s3)


def verify(entity: str, client: Any, record: dict[str, Any], endpoint: Any, s3: Any,
           when: str) -> None:
    """The entity reads back exactly as recorded; every changed part is named."""
    now = snapshot(entity, client, record, endpoint, s3)
    before = record["snapshot"]
    changed = [f"{part}: {before.get(part)!r} -> {now.get(part)!r}"
               for part in sorted(set(before) | set(now)) if before.get(part) != now.get(part)]
    assert not changed, f"{entity} written by MLflow {record['written_by']} changed {when}:\n  " + \
        "\n  ".join(changed)
