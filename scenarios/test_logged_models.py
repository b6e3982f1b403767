"""Logged models (MLflow 3): the entity `log_model` creates, read back, linked, searched, deleted.

MLflow 3 stores every logged model as a LoggedModel of its experiment (id, name, params, tags,
metrics linked through runs, status, artifact location) and links it to the run that produced
it and to the model versions registered from it. Expected values are what each test sent; each
test works in its own experiment. On 2.x releases every test is not applicable
(scenarios/_rules.py).
"""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from _helpers import (
    AddN,
    assert_walk,
    bucket_listing,
    bucket_location,
    expect_page_refusals,
    expect_refusal,
    log_model,
    require_api,
    walk_pages,
)
from packaging.version import Version

PAGE = 3
WRITTEN = 7


@pytest.fixture
def version(endpoint) -> Version:
    version = Version(endpoint.mlflow_version)
    require_api("logged_models", version)
    return version


@pytest.fixture
def experiment_id(mlflow_client, unique_name, version):
    experiment_id = mlflow_client.create_experiment(unique_name())
    yield experiment_id
    mlflow_client.delete_experiment(experiment_id)


def _status(model) -> str:
    return str(getattr(model.status, "name", model.status)).split(".")[-1]


def test_logged_model_round_trip(mlflow_client, experiment_id, unique_name):
    """id, name, type, params, tags, linked metrics and status read back exactly."""
    run = mlflow_client.create_run(experiment_id)
    params = {"lr": "0.01", "layers": "[64, 32]", "ünï": "✓"}
    tags = {"team": "matrix", "purpose": "round trip"}
    name = unique_name("model")
    created = mlflow_client.create_logged_model(experiment_id, name=name,
                                                source_run_id=run.info.run_id, tags=tags,
                                                params=params, model_type="agent")
    mid = created.model_id
    assert _status(created) == "PENDING"
    for step, value in enumerate((0.5, 0.75, 0.875)):
        mlflow_client.log_metric(run.info.run_id, "score", value, step=step, model_id=mid)
    mlflow_client.log_model_params(mid, {"extra": "param"})
    mlflow_client.set_logged_model_tags(mid, {"stage": "candidate", "drop": "me"})
    mlflow_client.delete_logged_model_tag(mid, "drop")
    mlflow_client.finalize_logged_model(mid, "READY")

    got = mlflow_client.get_logged_model(mid)
    assert (got.model_id, got.name, got.experiment_id) == (mid, name, experiment_id)
    assert got.source_run_id == run.info.run_id and got.model_type == "agent"
    assert got.params == {**params, "extra": "param"}
    assert {k: v for k, v in got.tags.items() if not k.startswith("mlflow.")} == {
        **tags, "stage": "candidate"}
    assert _status(got) == "READY"
    assert sorted((m.key, m.step, m.value, m.run_id) for m in got.metrics or []) == [
        ("score", s, v, run.info.run_id) for s, v in enumerate((0.5, 0.75, 0.875))]
    assert got.creation_timestamp <= got.last_updated_timestamp


def test_log_model_links_run_logged_model_and_version(mlflow_client, experiment_id, unique_name,
                                                      endpoint, s3):
    """log_model → LoggedModel (source run, artifacts in the bucket) → register_model."""
    name = unique_name("registered")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(mlflow.pyfunc, "model", python_model=AddN(4))
    model = mlflow_client.get_logged_model(info.model_id)
    assert model.source_run_id == run.info.run_id and model.experiment_id == experiment_id
    assert _status(model) == "READY"
    location = bucket_location(endpoint, model.artifact_location)
    assert "MLmodel" in bucket_listing(s3, location), f"no MLmodel in {location}"
    mv = mlflow.register_model(f"models:/{info.model_id}", name)
    try:
        got = mlflow_client.get_model_version(name, mv.version)
        assert got.model_id == info.model_id and got.run_id == run.info.run_id
        loaded = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
        assert list(loaded.predict(pd.DataFrame({"x": [1.0]}))) == [14.0]
    finally:
        mlflow_client.delete_registered_model(name)


def test_search_logged_models_filter_order_and_pages(mlflow_client, experiment_id, version):
    run = mlflow_client.create_run(experiment_id)
    wanted = []
    for i in range(WRITTEN + 2):
        kind = "paged" if i < WRITTEN else "other"
        model = mlflow_client.create_logged_model(experiment_id, name=f"m{i:02d}",
                                                  params={"kind": kind})
        mlflow_client.log_metric(run.info.run_id, "score", float(i), model_id=model.model_id)
        if kind == "paged":
            wanted.append(model.model_id)

    def fetch(max_results, token, field="name", ascending=True):
        return mlflow_client.search_logged_models(
            [experiment_id], filter_string="params.kind = 'paged'", max_results=max_results,
            order_by=[{"field_name": field, "ascending": ascending}], page_token=token)

    assert_walk(walk_pages(fetch, PAGE), wanted, lambda m: m.model_id,
                what="search_logged_models by name")
    walk = walk_pages(lambda n, t: fetch(n, t, "metrics.score", False), PAGE)
    assert_walk(walk, wanted[::-1], lambda m: m.model_id, what="search_logged_models by score")
    expect_page_refusals(fetch, "max_results_search_logged_models", version)


def test_deleted_logged_model_is_gone(mlflow_client, experiment_id):
    kept = mlflow_client.create_logged_model(experiment_id, name="kept")
    doomed = mlflow_client.create_logged_model(experiment_id, name="doomed")
    mlflow_client.delete_logged_model(doomed.model_id)
    expect_refusal(lambda: mlflow_client.get_logged_model(doomed.model_id),
                   "RESOURCE_DOES_NOT_EXIST")
    found = mlflow_client.search_logged_models([experiment_id])
    assert [m.model_id for m in found] == [kept.model_id]
