"""Model registry: register real models, version them, alias, tag, search, load, rename, delete.

Models are a scikit-learn LinearRegression fitted on y = 2x + 1 and a custom pyfunc returning
10·x + n (`_helpers.AddN`), so every load is checked against a known expected output. Logging goes
through `_helpers.log_model`, the one place that knows MLflow 3 renamed `artifact_path` to `name`.
"""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from _helpers import (
    MLFLOW_3,
    AddN,
    assert_in_bucket,
    bucket_listing,
    bucket_location,
    expect_refusal,
    log_model,
    model_storage_uri,
    tree_digest,
)
from _rules import not_applicable
from mlflow import MlflowClient

INPUT = pd.DataFrame({"x": [1.0, 2.5, -4.0]})
SKLEARN_EXPECTED = [3.0, 6.0, -7.0]          # 2x + 1


def addn_expected(n):
    return [10.0 * x + n for x in INPUT["x"]]


@pytest.fixture(scope="module")
def experiment_id(mlflow_client):
    return mlflow_client.create_experiment(f"mm-registry-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def model_name(unique_name):
    return unique_name("model")


def _sklearn_model():
    from sklearn.linear_model import LinearRegression

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LinearRegression().fit(x, 2 * x[:, 0] + 1)


def _register_addn(client, experiment_id, name, n, **kwargs):
    """Log AddN(n) in a new run and register it under `name`; returns the new ModelVersion."""
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_model(mlflow.pyfunc, "model", python_model=AddN(n),
                         registered_model_name=name, **kwargs)
    return client.get_model_version(name, str(info.registered_model_version))


def _predict(uri):
    return [float(v) for v in np.asarray(mlflow.pyfunc.load_model(uri).predict(INPUT)).ravel()]


def _not_found(call, *args):
    return expect_refusal(lambda: call(*args), "RESOURCE_DOES_NOT_EXIST")


def _version_view(mv):
    """Every field of a ModelVersion a user reads, in comparable form."""
    return {
        "name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "source": mv.source,
        "status": mv.status, "description": mv.description or "", "tags": dict(mv.tags),
        "aliases": sorted(mv.aliases), "current_stage": mv.current_stage,
        "creation_timestamp": mv.creation_timestamp,
        "last_updated_timestamp": mv.last_updated_timestamp,
    }


def _model_view(rm):
    return {
        "name": rm.name, "description": rm.description or "", "tags": dict(rm.tags),
        "aliases": dict(rm.aliases), "creation_timestamp": rm.creation_timestamp,
        "last_updated_timestamp": rm.last_updated_timestamp,
    }


# ---------------------------------------------------------------- register and load


def test_register_sklearn_model_and_load_it(endpoint, mlflow_client, experiment_id, model_name,
                                            s3):
    model = _sklearn_model()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(mlflow.sklearn, "model", sk_model=model, registered_model_name=model_name,
                         input_example=INPUT.iloc[:1])
    assert str(info.registered_model_version) == "1"
    mv = mlflow_client.get_model_version(model_name, "1")
    assert (mv.name, mv.version, mv.status, mv.run_id) == (model_name, "1", "READY",
                                                           run.info.run_id)
    assert _predict(f"models:/{model_name}/1") == pytest.approx(SKLEARN_EXPECTED)
    native = mlflow.sklearn.load_model(f"models:/{model_name}/1")
    assert native.predict(INPUT.to_numpy()) == pytest.approx(SKLEARN_EXPECTED)
    assert native.coef_ == pytest.approx([2.0]) and native.intercept_ == pytest.approx(1.0)

    # The version's files are in the deployment's bucket, byte for byte what MLflow serves.
    location = bucket_location(endpoint, model_storage_uri(mlflow_client, model_name, 1))
    in_bucket = bucket_listing(s3, location)
    assert "MLmodel" in in_bucket, f"no MLmodel under {location}: {sorted(in_bucket)}"
    served = tree_digest(mlflow.artifacts.download_artifacts(f"models:/{model_name}/1"))
    served.pop("registered_model_meta")    # written locally by the client after a models:/ download
    assert served.keys() <= in_bucket.keys(), (
        f"MLflow serves files the bucket does not hold: {sorted(served.keys() - in_bucket.keys())}")
    for path, (size, sha) in served.items():
        assert_in_bucket(s3, location.child(path), size, sha)


def test_register_custom_pyfunc_model_and_load_it(mlflow_client, experiment_id, model_name):
    mv = _register_addn(mlflow_client, experiment_id, model_name, 7)
    assert (mv.version, mv.status) == ("1", "READY")
    assert _predict(f"models:/{model_name}/1") == pytest.approx(addn_expected(7))
    assert mlflow.pyfunc.load_model(f"models:/{model_name}/1").metadata.flavors.keys() >= {
        "python_function"}


def test_register_model_from_a_run_uri(mlflow_client, experiment_id, model_name):
    """`mlflow.register_model` of a model logged earlier, without registered_model_name."""
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_model(mlflow.pyfunc, "model", python_model=AddN(3))
    mv = mlflow.register_model(info.model_uri, model_name)
    assert mv.version == "1"
    assert mlflow_client.get_model_version(model_name, "1").status == "READY"
    assert _predict(f"models:/{model_name}/1") == pytest.approx(addn_expected(3))


def test_several_versions_of_one_model(mlflow_client, experiment_id, model_name):
    versions = [_register_addn(mlflow_client, experiment_id, model_name, n) for n in (1, 2, 3)]
    assert [v.version for v in versions] == ["1", "2", "3"]
    assert len({v.run_id for v in versions}) == 3
    for n, version in zip((1, 2, 3), versions, strict=True):
        assert _predict(f"models:/{model_name}/{version.version}") == pytest.approx(
            addn_expected(n))
    found = mlflow_client.search_model_versions(f"name = '{model_name}'")
    assert sorted(int(v.version) for v in found) == [1, 2, 3]
    latest = mlflow_client.get_registered_model(model_name).latest_versions
    assert "3" in {v.version for v in latest}


# ---------------------------------------------------------------- aliases


def test_aliases_set_move_get_and_delete(mlflow_client, experiment_id, model_name):
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)

    mlflow_client.set_registered_model_alias(model_name, "champion", "1")
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").version == "1"
    assert mlflow_client.get_registered_model(model_name).aliases == {"champion": "1"}
    assert mlflow_client.get_model_version(model_name, "1").aliases == ["champion"]
    assert _predict(f"models:/{model_name}@champion") == pytest.approx(addn_expected(1))

    mlflow_client.set_registered_model_alias(model_name, "champion", "2")     # move
    mlflow_client.set_registered_model_alias(model_name, "challenger", "1")
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").version == "2"
    assert mlflow_client.get_registered_model(model_name).aliases == {"champion": "2",
                                                                      "challenger": "1"}
    assert mlflow_client.get_model_version(model_name, "1").aliases == ["challenger"]
    assert mlflow_client.get_model_version(model_name, "2").aliases == ["champion"]
    assert _predict(f"models:/{model_name}@champion") == pytest.approx(addn_expected(2))
    assert _predict(f"models:/{model_name}@challenger") == pytest.approx(addn_expected(1))

    mlflow_client.delete_registered_model_alias(model_name, "champion")
    assert mlflow_client.get_registered_model(model_name).aliases == {"challenger": "1"}
    assert mlflow_client.get_model_version(model_name, "2").aliases == []
    expect_refusal(lambda: mlflow_client.get_model_version_by_alias(model_name, "champion"),
                   "INVALID_PARAMETER_VALUE")
    expect_refusal(lambda: mlflow.pyfunc.load_model(f"models:/{model_name}@champion"),
                   "INVALID_PARAMETER_VALUE")


def test_alias_of_a_version_that_does_not_exist_is_refused(mlflow_client, experiment_id,
                                                           model_name):
    _register_addn(mlflow_client, experiment_id, model_name, 1)
    expect_refusal(lambda: mlflow_client.set_registered_model_alias(model_name, "ghost", "9"),
                   "RESOURCE_DOES_NOT_EXIST")
    assert mlflow_client.get_registered_model(model_name).aliases == {}


# ---------------------------------------------------------------- tags and descriptions


def test_tags_and_descriptions(mlflow_client, experiment_id, model_name):
    mlflow_client.create_registered_model(model_name, tags={"team": "matrix", "tier": "gold"},
                                          description="first description")
    _register_addn(mlflow_client, experiment_id, model_name, 1)
    mlflow_client.update_registered_model(model_name, description="second description ✓")
    mlflow_client.set_registered_model_tag(model_name, "tier", "platinum")
    mlflow_client.set_registered_model_tag(model_name, "unicode", "ünï ✓")
    mlflow_client.delete_registered_model_tag(model_name, "team")
    mlflow_client.update_model_version(model_name, "1", description="version one")
    mlflow_client.set_model_version_tag(model_name, "1", "validated", "true")
    mlflow_client.set_model_version_tag(model_name, "1", "drop-me", "x")
    mlflow_client.delete_model_version_tag(model_name, "1", "drop-me")

    rm = mlflow_client.get_registered_model(model_name)
    assert rm.description == "second description ✓"
    assert rm.tags == {"tier": "platinum", "unicode": "ünï ✓"}
    mv = mlflow_client.get_model_version(model_name, "1")
    assert mv.description == "version one"
    assert mv.tags == {"validated": "true"}


# ---------------------------------------------------------------- search


def test_search_registered_models(mlflow_client, experiment_id, unique_name):
    prefix = unique_name()
    names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    for i, name in enumerate(names):
        mlflow_client.create_registered_model(name, tags={"team": "red" if i < 2 else "blue"},
                                              description=f"model {i}")
    _register_addn(mlflow_client, experiment_id, names[0], 1)
    mlflow_client.set_registered_model_alias(names[0], "prod", "1")

    exact = mlflow_client.search_registered_models(filter_string=f"name = '{names[0]}'")
    assert [m.name for m in exact] == [names[0]]
    assert _model_view(exact[0]) == _model_view(mlflow_client.get_registered_model(names[0]))
    assert exact[0].aliases == {"prod": "1"}
    assert exact[0].description == "model 0" and exact[0].tags == {"team": "red"}
    assert [v.version for v in exact[0].latest_versions] == ["1"]

    like = mlflow_client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'",
                                                  order_by=["name DESC"])
    assert [m.name for m in like] == names[::-1]
    red = mlflow_client.search_registered_models(
        filter_string=f"name LIKE '{prefix}-%' AND tags.team = 'red'", order_by=["name ASC"])
    assert [m.name for m in red] == names[:2]
    paged = mlflow_client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'",
                                                   max_results=2, order_by=["name ASC"])
    assert [m.name for m in paged] == names[:2] and paged.token
    rest = mlflow_client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'",
                                                  max_results=2, order_by=["name ASC"],
                                                  page_token=paged.token)
    assert [m.name for m in rest] == names[2:]
    assert mlflow_client.search_registered_models(filter_string=f"name = '{prefix}-zzz'") == []


def test_search_model_versions(mlflow_client, experiment_id, model_name):
    versions = [_register_addn(mlflow_client, experiment_id, model_name, n) for n in (1, 2, 3)]
    mlflow_client.set_registered_model_alias(model_name, "prod", "2")
    mlflow_client.set_registered_model_alias(model_name, "canary", "2")
    mlflow_client.set_model_version_tag(model_name, "3", "stage", "qa")
    mlflow_client.update_model_version(model_name, "3", description="release candidate")

    found = mlflow_client.search_model_versions(f"name = '{model_name}'")
    by_version = {v.version: v for v in found}
    assert sorted(by_version) == ["1", "2", "3"]
    for version in ("1", "2", "3"):    # aliases: see test_search_model_versions_returns_aliases
        got = {**_version_view(by_version[version]), "aliases": None}
        want = {**_version_view(mlflow_client.get_model_version(model_name, version)),
                "aliases": None}
        assert got == want, f"version {version}"
    assert by_version["3"].tags == {"stage": "qa"}
    assert by_version["3"].description == "release candidate"
    assert {v.status for v in found} == {"READY"}
    assert [by_version[str(i + 1)].run_id for i in range(3)] == [v.run_id for v in versions]
    assert _version_view(mlflow_client.get_model_version_by_alias(model_name, "prod")) == \
        _version_view(mlflow_client.get_model_version(model_name, "2"))

    by_run = mlflow_client.search_model_versions(f"run_id = '{versions[0].run_id}'")
    assert [(v.name, v.version) for v in by_run] == [(model_name, "1")]
    tagged = mlflow_client.search_model_versions(f"name = '{model_name}' AND tag.stage = 'qa'")
    assert [v.version for v in tagged] == ["3"]
    assert mlflow_client.search_model_versions(f"name = '{model_name}-nope'") == []


def test_search_model_versions_returns_aliases(mlflow_client, experiment_id, model_name):
    """search_model_versions shows the same aliases as get_model_version does."""
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.set_registered_model_alias(model_name, "prod", "2")
    mlflow_client.set_registered_model_alias(model_name, "canary", "2")
    assert sorted(mlflow_client.get_model_version(model_name, "2").aliases) == ["canary", "prod"]
    found = {v.version: sorted(v.aliases)
             for v in mlflow_client.search_model_versions(f"name = '{model_name}'")}
    assert found == {"1": [], "2": ["canary", "prod"]}, (
        "search_model_versions lists version 2 without its aliases"
        if found == {"1": [], "2": []} else f"search_model_versions: {found}")


# ---------------------------------------------------------------- delete and rename


def test_delete_a_version(mlflow_client, experiment_id, model_name):
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.set_registered_model_alias(model_name, "keep", "1")
    mlflow_client.delete_model_version(model_name, "2")

    _not_found(mlflow_client.get_model_version, model_name, "2")
    assert [v.version for v in mlflow_client.search_model_versions(f"name = '{model_name}'")] \
        == ["1"]
    assert mlflow_client.get_registered_model(model_name).aliases.get("keep") == "1"
    assert _predict(f"models:/{model_name}@keep") == pytest.approx(addn_expected(1))
    expect_refusal(lambda: mlflow.pyfunc.load_model(f"models:/{model_name}/2"),
                   "RESOURCE_DOES_NOT_EXIST")
    # Version numbers are never reused.
    assert _register_addn(mlflow_client, experiment_id, model_name, 3).version == "3"


def test_deleting_a_version_removes_its_aliases(mlflow_client, experiment_id, model_name):
    """MLflow deletes a version's aliases with it (mlflow/mlflow#8459): none may dangle."""
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.set_registered_model_alias(model_name, "keep", "1")
    mlflow_client.set_registered_model_alias(model_name, "doomed", "2")
    mlflow_client.delete_model_version(model_name, "2")
    aliases = mlflow_client.get_registered_model(model_name).aliases
    assert aliases == {"keep": "1"}, (
        "the deleted version's alias still points at it" if aliases == {"keep": "1", "doomed": "2"}
        else f"aliases after deleting version 2: {aliases}")


def test_alias_of_a_deleted_version_does_not_resolve(mlflow_client, experiment_id, model_name):
    """Whatever happens to the alias itself, it never leads to the deleted version."""
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.set_registered_model_alias(model_name, "doomed", "2")
    mlflow_client.delete_model_version(model_name, "2")
    # the alias is gone (INVALID_PARAMETER_VALUE) or dangles to a version that is gone
    # (RESOURCE_DOES_NOT_EXIST, the known defect's other face): never a 5xx, never version 2
    gone = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
    expect_refusal(lambda: mlflow_client.get_model_version_by_alias(model_name, "doomed"), gone)
    expect_refusal(lambda: mlflow.pyfunc.load_model(f"models:/{model_name}@doomed"), gone)
    assert _predict(f"models:/{model_name}/1") == pytest.approx(addn_expected(1))


def test_rename_a_registered_model(mlflow_client, experiment_id, model_name):
    for n in (1, 2):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.set_registered_model_alias(model_name, "champion", "2")
    mlflow_client.set_registered_model_tag(model_name, "team", "matrix")
    new_name = f"{model_name}-renamed"
    mlflow_client.rename_registered_model(model_name, new_name)

    _not_found(mlflow_client.get_registered_model, model_name)
    rm = mlflow_client.get_registered_model(new_name)
    assert rm.aliases == {"champion": "2"} and rm.tags == {"team": "matrix"}
    found = mlflow_client.search_model_versions(f"name = '{new_name}'")
    assert sorted((v.name, v.version) for v in found) == [(new_name, "1"), (new_name, "2")]
    assert mlflow_client.search_model_versions(f"name = '{model_name}'") == []
    assert mlflow_client.get_model_version_by_alias(new_name, "champion").version == "2"
    assert _predict(f"models:/{new_name}@champion") == pytest.approx(addn_expected(2))
    assert _predict(f"models:/{new_name}/1") == pytest.approx(addn_expected(1))
    expect_refusal(lambda: mlflow.pyfunc.load_model(f"models:/{model_name}/1"),
                   "RESOURCE_DOES_NOT_EXIST")


def test_delete_a_registered_model(mlflow_client, experiment_id, model_name):
    _register_addn(mlflow_client, experiment_id, model_name, 1)
    mlflow_client.set_registered_model_alias(model_name, "a", "1")
    mlflow_client.delete_registered_model(model_name)
    _not_found(mlflow_client.get_registered_model, model_name)
    assert mlflow_client.search_model_versions(f"name = '{model_name}'") == []
    assert mlflow_client.search_registered_models(filter_string=f"name = '{model_name}'") == []


# ---------------------------------------------------------------- stages (deprecated in 2.9)


def test_stage_transitions(mlflow_client, experiment_id, model_name):
    if not hasattr(MlflowClient, "transition_model_version_stage"):
        not_applicable(f"MLflow {mlflow.__version__} removed model version stages "
                       "(transition_model_version_stage); aliases replace them")
    for n in (1, 2, 3):
        _register_addn(mlflow_client, experiment_id, model_name, n)
    mlflow_client.transition_model_version_stage(model_name, "1", "Staging")
    mlflow_client.transition_model_version_stage(model_name, "2", "Production")
    assert mlflow_client.get_model_version(model_name, "1").current_stage == "Staging"
    assert _predict(f"models:/{model_name}/Production") == pytest.approx(addn_expected(2))

    moved = mlflow_client.transition_model_version_stage(model_name, "3", "Production",
                                                         archive_existing_versions=True)
    assert moved.current_stage == "Production"
    stages = {v.version: v.current_stage
              for v in mlflow_client.search_model_versions(f"name = '{model_name}'")}
    assert stages == {"1": "Staging", "2": "Archived", "3": "Production"}
    latest = mlflow_client.get_latest_versions(model_name, stages=["Production"])
    assert [v.version for v in latest] == ["3"]
    assert _predict(f"models:/{model_name}/Production") == pytest.approx(addn_expected(3))
    assert _predict(f"models:/{model_name}/Staging") == pytest.approx(addn_expected(1))
    expect_refusal(lambda: mlflow_client.transition_model_version_stage(model_name, "1",
                                                                         "NotAStage"),
                   "INVALID_PARAMETER_VALUE")


def test_model_version_source_points_at_the_logged_model(mlflow_client, experiment_id,
                                                         model_name):
    """2.x: the version's source is the run's artifact URI; 3.x: the LoggedModel (models:/m-…)."""
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = log_model(mlflow.pyfunc, "model", python_model=AddN(1),
                         registered_model_name=model_name)
    mv = mlflow_client.get_model_version(model_name, "1")
    if MLFLOW_3:
        assert mv.source == f"models:/{info.model_id}"
        assert mlflow_client.get_logged_model(info.model_id).source_run_id == run.info.run_id
    else:
        assert mv.source == f"{run.info.artifact_uri}/model"
    assert mv.run_id == run.info.run_id
