"""Tracking: experiments, runs, params, metrics, tags and search, as a user drives them."""

from __future__ import annotations


def test_experiment_roundtrip(mlflow_client, unique_name):
    name = unique_name()
    experiment_id = mlflow_client.create_experiment(name, tags={"team": "matrix"})
    experiment = mlflow_client.get_experiment_by_name(name)
    assert experiment.experiment_id == experiment_id
    assert experiment.tags["team"] == "matrix"
