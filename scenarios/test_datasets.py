"""Datasets: run inputs (log_input, 2.4+) and evaluation datasets (3.4+), read back and searched.

A dataset input is what a run says it trained or evaluated on: name, digest, source, schema and
profile as the client computed them, plus the input's tags (context). The expected values are the
client's own dataset object, never the server's answer. Evaluation datasets (MLflow 3.4+) are
server-side entities of their own, searched and walked past their first page. The UI's
experiments/search-datasets lists which (name, digest, context) an experiment's runs used.
On releases without an API its tests are not applicable (scenarios/_rules.py).
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from _helpers import (
    assert_walk,
    expect_page_refusals,
    expect_refusal,
    require_api,
    rest,
    walk_pages,
)
from packaging.version import Version

PAGE = 2
WRITTEN = 5
FRAME = pd.DataFrame({"x": [1.0, 2.5, -3.0], "label": ["a", "b", "ü"]})


@pytest.fixture
def version(endpoint) -> Version:
    return Version(endpoint.mlflow_version)


@pytest.fixture
def experiment_id(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    yield experiment_id
    mlflow_client.delete_experiment(experiment_id)


def _dataset(name: str, frame: pd.DataFrame = FRAME):
    return mlflow.data.from_pandas(frame, source="s3://mm-bucket/data/train.csv", name=name,
                                   targets="label")


def _tags(dataset_input) -> dict[str, str]:
    return {t.key: t.value for t in dataset_input.tags}


def test_dataset_input_round_trip(mlflow_client, experiment_id, version):
    require_api("dataset_inputs", version)
    train, test = _dataset("train"), _dataset("test", FRAME.head(2))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_input(train, context="training")
        mlflow.log_input(test, context="evaluation")
    got = {i.dataset.name: i for i in mlflow_client.get_run(run.info.run_id).inputs.dataset_inputs}
    assert sorted(got) == ["test", "train"]
    for sent, context in ((train, "training"), (test, "evaluation")):
        expected = sent._to_mlflow_entity()
        have = got[sent.name].dataset
        assert (have.name, have.digest, have.source_type) == (
            expected.name, expected.digest, expected.source_type)
        assert json.loads(have.source) == json.loads(expected.source)
        assert json.loads(have.schema) == json.loads(expected.schema)
        assert json.loads(have.profile) == json.loads(expected.profile)
        assert _tags(got[sent.name])["mlflow.data.context"] == context
    assert train.digest != test.digest


def test_search_datasets_lists_what_runs_used(mlflow_client, endpoint, experiment_id, unique_name,
                                              version):
    """experiments/search-datasets (the UI's endpoint): one summary per (name, digest, context)
    the experiment's runs used, also for a dataset another experiment used first."""
    require_api("dataset_inputs", version)
    train, other = _dataset("train"), _dataset("other", FRAME.tail(1))
    elsewhere = mlflow_client.create_experiment(unique_name("elsewhere"))
    try:
        with mlflow.start_run(experiment_id=elsewhere):
            mlflow.log_input(train, context="training")
        for dataset, context in ((train, "training"), (train, "training"), (other, "evaluation")):
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.log_input(dataset, context=context)
        response = rest(endpoint, "POST", "/ajax-api/2.0/mlflow/experiments/search-datasets",
                        json={"experiment_ids": [experiment_id]})
    finally:
        mlflow_client.delete_experiment(elsewhere)
    assert response.status_code == 200, response.text[:300]
    summaries = response.json().get("dataset_summaries", [])
    got = sorted((s["experiment_id"], s["name"], s["digest"], s.get("context")) for s in summaries)
    expected = sorted([(experiment_id, "train", train.digest, "training"),
                       (experiment_id, "other", other.digest, "evaluation")])
    missing = sorted(set(expected) - set(got))
    assert not missing, (
        f"experiments/search-datasets misses datasets this experiment's runs logged: {missing}")
    assert got == expected


def test_evaluation_datasets_round_trip_search_and_pages(mlflow_client, experiment_id, unique_name,
                                                         version):
    require_api("evaluation_datasets", version)
    prefix = unique_name()
    wanted, created = [], []
    try:
        for i in range(WRITTEN + 1):
            name = f"{prefix}-{i}" if i < WRITTEN else unique_name("elsewhere")
            dataset = mlflow_client.create_dataset(name, experiment_id=[experiment_id],
                                                   tags={"i": str(i), "team": "matrix"})
            created.append(dataset.dataset_id)
            if i < WRITTEN:
                wanted.append(dataset.dataset_id)
        got = mlflow_client.get_dataset(wanted[0])
        assert (got.dataset_id, got.name) == (wanted[0], f"{prefix}-0")
        assert {k: v for k, v in got.tags.items() if not k.startswith("mlflow.")} == {
            "i": "0", "team": "matrix"}
        assert experiment_id in got.experiment_ids

        def fetch(max_results, token):
            return mlflow_client.search_datasets(
                experiment_ids=[experiment_id], filter_string=f"name LIKE '{prefix}-%'",
                max_results=max_results, order_by=["name ASC"], page_token=token)

        assert_walk(walk_pages(fetch, PAGE), wanted, lambda d: d.dataset_id,
                    what="search_datasets")
        expect_page_refusals(fetch, "max_results_search_evaluation_datasets", version)
        mlflow_client.delete_dataset(wanted[0])
        created.remove(wanted[0])
        expect_refusal(lambda: mlflow_client.get_dataset(wanted[0]), "RESOURCE_DOES_NOT_EXIST")
    finally:
        for dataset_id in created:
            mlflow_client.delete_dataset(dataset_id)
