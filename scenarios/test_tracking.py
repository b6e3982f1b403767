"""Tracking: experiments, runs, params, metrics, tags and search, as a user drives them.

Only MLflow's public client API is used (`MlflowClient` and the fluent `mlflow.*` calls), against a
real tracking server. Every test works in experiments it creates (named by `unique_name`) and scopes
its searches to them, so the suite runs in parallel (pytest-xdist) and repeatedly on one server.

Expected values come from what a test sent and from the rules of the server's own MLflow
release (scenarios/_rules.py, one table keyed by version with the upstream change linked), never
from what the server under test answers: every release is judged by its own rules.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import allure
import mlflow
import pytest
from _helpers import expect_refusal
from _rules import CLIENT_CONSTANTS, not_applicable, rule, source
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from packaging.version import Version

DBL_MAX = sys.float_info.max
# Run start/end times and metric timestamps are taken from the client's clock by the client
# library; the slack only absorbs clock steps (NTP) during a test, not client/server skew.
CLOCK_SLACK_MS = 2_000
INVALID = "INVALID_PARAMETER_VALUE"
T = TypeVar("T")

# ---------------------------------------------------------------- limits, per MLflow release


def param_value_limit(version: Version) -> int:
    return rule("param_value_limit", version)


def run_tag_value_limit(version: Version) -> int:
    return rule("run_tag_value_limit", version)


def server_truncates_long_values(version: Version) -> bool:
    return rule("server_truncates_long_values", version)


def test_release_rules_agree_with_the_client(version):
    """The rules table says what the installed client's own validation constants say."""
    import mlflow.utils.validation as validation

    assert str(version) == mlflow.__version__, (
        f"client MLflow {mlflow.__version__} against server {version}: the harness builds the "
        "client of the server's version")
    wrong = {}
    for name, constant in CLIENT_CONSTANTS.items():
        have = getattr(validation, constant, None)
        if have is not None and have != rule(name, version):
            wrong[name] = f"{constant} = {have} in MLflow {version}, table: {rule(name, version)}"
    assert not wrong, "scenarios/_rules.py is out of date: " + "; ".join(wrong.values())


# ---------------------------------------------------------------- helpers


@pytest.fixture
def version(endpoint) -> Version:
    return Version(endpoint.mlflow_version)


def now_ms() -> int:
    return int(time.time() * 1000)


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags a user set: MLflow adds its own under `mlflow.` (run name, source, user…)."""
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


def expect_error(action: Callable[[], object], code: str = INVALID) -> MlflowException:
    """Run `action`, which MLflow must refuse with `code` and a 4xx; return the exception."""
    return expect_refusal(action, code)


def must_succeed(action: Callable[[], T], what: str) -> T:
    """Run `action`, which must succeed; if MLflow refuses it, fail with the server's message
    (without the client-side traceback, which says nothing more)."""
    try:
        return action()
    except MlflowException as exc:
        message = exc.message
    pytest.fail(f"{what} was refused: {message[:600]}")


def search_all_runs(client, experiment_ids: list[str], filter_string: str = "",
                    view: int = ViewType.ACTIVE_ONLY, order_by: list[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, run_view_type=view,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def walk_pages(client, experiment_ids: list[str], page_size: int, **kwargs) -> list[list]:
    """Every page of a search, following page tokens until there is none."""
    pages, token = [], None
    while True:
        page = client.search_runs(experiment_ids, max_results=page_size, page_token=token, **kwargs)
        pages.append(list(page))
        token = page.token
        if not token:
            return pages
        assert len(pages) < 100, "search_runs kept returning page tokens"


def ids(runs: Iterable) -> list[str]:
    return [r.info.run_id for r in runs]


def check_filters(client, experiment_ids: list[str], runs: dict[str, str],
                  cases: list[tuple[str, set[str]]], view: int = ViewType.ACTIVE_ONLY) -> None:
    """Run every filter and report all that return the wrong runs (by label), not just the first."""
    label = {run_id: name for name, run_id in runs.items()}
    wrong = []
    for filter_string, expected in cases:
        with allure.step(f"search_runs({filter_string!r}) returns {sorted(expected)}"):
            try:
                found = search_all_runs(client, experiment_ids, filter_string, view)
            except MlflowException as exc:
                wrong.append(f"{filter_string!r}: refused: {exc.message.splitlines()[0]}")
                continue
            got = [label.get(i, f"foreign run {i}") for i in ids(found)]
            if sorted(got) != sorted(expected):
                wrong.append(f"{filter_string!r}: got {sorted(got)}, expected {sorted(expected)}")
    assert not wrong, "search_runs returned the wrong runs:\n  " + "\n  ".join(wrong)


def history(client, run_id: str, key: str) -> list[tuple[int, int, float]]:
    """A metric's full history as sorted (step, timestamp, value) tuples."""
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


# ================================================================ experiments


def test_create_experiment_with_tags_then_get_by_name_and_id(mlflow_client, unique_name):
    name = unique_name("实验-🧪")
    tags = {"team": "matrix", "purpose": "portability ✓"}
    with allure.step("create an experiment with a unicode name and two tags"):
        experiment_id = mlflow_client.create_experiment(name, tags=tags)
    with allure.step("read it back by name and by id"):
        by_name = mlflow_client.get_experiment_by_name(name)
        by_id = mlflow_client.get_experiment(experiment_id)
    for how, experiment in (("by name", by_name), ("by id", by_id)):
        assert experiment is not None, f"get {how} found nothing"
        assert experiment.experiment_id == experiment_id, how
        assert experiment.name == name, how
        assert user_tags(experiment.tags) == tags, how
        assert experiment.lifecycle_stage == "active", how
        assert experiment.artifact_location, how
        assert experiment.creation_time > 0, how
        assert experiment.last_update_time >= experiment.creation_time, how
    assert mlflow_client.get_experiment_by_name(unique_name("never-created")) is None


def test_search_experiments_filters_on_name_and_tags(mlflow_client, unique_name):
    prefix = unique_name()
    names = {label: unique_name(label) for label in ("alpha", "beta", "gamma")}
    tags = {"alpha": {"team": "vision", "tier": "gold"}, "beta": {"team": "nlp", "tier": "gold"},
            "gamma": {"team": "vision", "tier": "silver"}}
    with allure.step("create three experiments with tags"):
        created = {label: mlflow_client.create_experiment(names[label], tags=tags[label])
                   for label in names}
    label_of = {v: k for k, v in created.items()}
    scope = f"name LIKE '{prefix}-%'"
    cases = [
        (f"name = '{names['alpha']}'", {"alpha"}),
        (scope, {"alpha", "beta", "gamma"}),
        (f"name LIKE '{prefix}-%ta'", {"beta"}),
        (f"name LIKE '{prefix}-GAMMA'", set()),
        (f"name ILIKE '{prefix}-GAMMA'", {"gamma"}),
        (f"{scope} AND tags.team = 'vision'", {"alpha", "gamma"}),
        (f"{scope} AND tags.team = 'VISION'", set()),
        (f"{scope} AND tags.team != 'vision'", {"beta"}),
        (f"{scope} AND tags.tier LIKE 'gol%'", {"alpha", "beta"}),
        (f"{scope} AND tags.tier ILIKE 'SILVER'", {"gamma"}),
        (f"{scope} AND tags.team = 'vision' AND tags.tier = 'gold'", {"alpha"}),
    ]
    wrong = []
    for filter_string, expected in cases:
        with allure.step(f"search_experiments({filter_string!r})"):
            got = {label_of.get(e.experiment_id, e.name)
                   for e in mlflow_client.search_experiments(filter_string=filter_string)}
            if got != expected:
                wrong.append(f"{filter_string!r}: got {sorted(got)}, expected {sorted(expected)}")
    assert not wrong, "search_experiments returned the wrong experiments:\n  " + "\n  ".join(wrong)

    with allure.step("order by name, descending, two per page"):
        pages, token = [], None
        while True:
            page = mlflow_client.search_experiments(filter_string=scope, order_by=["name DESC"],
                                                    max_results=2, page_token=token)
            pages.append([label_of[e.experiment_id] for e in page])
            token = page.token
            if not token:
                break
            assert len(pages) < 10, "search_experiments kept returning page tokens"
    assert pages == [["gamma", "beta"], ["alpha"]]


def test_rename_experiment(mlflow_client, unique_name):
    old, new = unique_name("before"), unique_name("after-改名")
    experiment_id = mlflow_client.create_experiment(old)
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    with allure.step("rename the experiment"):
        mlflow_client.rename_experiment(experiment_id, new)
    assert mlflow_client.get_experiment(experiment_id).name == new
    assert mlflow_client.get_experiment_by_name(old) is None
    renamed = mlflow_client.get_experiment_by_name(new)
    assert renamed is not None and renamed.experiment_id == experiment_id
    assert [e.experiment_id for e in mlflow_client.search_experiments(
        filter_string=f"name = '{new}'")] == [experiment_id]
    assert ids(mlflow_client.search_runs([experiment_id])) == [run_id], "runs must follow the rename"


def test_experiment_tags_set_and_overwrite(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name(), tags={"stage": "draft"})
    with allure.step("add a tag, overwrite the existing one"):
        mlflow_client.set_experiment_tag(experiment_id, "owner", "数据团队 🧑‍🔬")
        mlflow_client.set_experiment_tag(experiment_id, "stage", "final")
    assert user_tags(mlflow_client.get_experiment(experiment_id).tags) == {
        "stage": "final", "owner": "数据团队 🧑‍🔬"}


def test_experiment_tag_value_limit(mlflow_client, unique_name, version):
    """Experiment tags are never truncated: a value over the release's limit is refused."""
    limit = rule("experiment_tag_value_limit", version)
    allure.dynamic.link(source("experiment_tag_value_limit", version),
                        name=f"MLflow {version}: experiment tag values up to {limit} characters")
    experiment_id = mlflow_client.create_experiment(unique_name())
    at_limit = "🧪" * (limit - 1) + "!"  # 4-byte characters: the limit counts characters
    with allure.step(f"a {limit}-character value is stored whole"):
        mlflow_client.set_experiment_tag(experiment_id, "at_limit", at_limit)
    with allure.step("one character more is refused"):
        expect_error(lambda: mlflow_client.set_experiment_tag(
            experiment_id, "over_limit", "x" * (limit + 1)))
    tags = mlflow_client.get_experiment(experiment_id).tags
    assert tags.get("at_limit") == at_limit
    assert "over_limit" not in tags


def test_delete_experiment_tag(mlflow_client, unique_name, version):
    if version < Version("3.2"):
        not_applicable("MlflowClient.delete_experiment_tag does not exist before MLflow 3.2 "
                       "(added by mlflow/mlflow#16610); 2.x has no public way to delete one")
    experiment_id = mlflow_client.create_experiment(unique_name(), tags={"keep": "1", "drop": "2"})
    with allure.step("delete one of two tags"):
        mlflow_client.delete_experiment_tag(experiment_id, "drop")
    assert user_tags(mlflow_client.get_experiment(experiment_id).tags) == {"keep": "1"}


def test_delete_and_restore_experiment_by_view_type(mlflow_client, unique_name):
    prefix = unique_name()
    kept = mlflow_client.create_experiment(unique_name("kept"))
    name = unique_name("deleted")
    gone = mlflow_client.create_experiment(name)
    run_id = mlflow_client.create_run(gone).info.run_id
    scope = f"name LIKE '{prefix}-%'"

    def visible() -> dict[str, set[str]]:
        return {view: {e.experiment_id for e in mlflow_client.search_experiments(
            view_type=getattr(ViewType, view), filter_string=scope)}
            for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")}

    with allure.step("delete one of two experiments"):
        mlflow_client.delete_experiment(gone)
    assert mlflow_client.get_experiment(gone).lifecycle_stage == "deleted"
    assert mlflow_client.get_experiment_by_name(name).lifecycle_stage == "deleted"
    assert visible() == {"ACTIVE_ONLY": {kept}, "DELETED_ONLY": {gone}, "ALL": {kept, gone}}
    assert mlflow_client.get_run(run_id).info.lifecycle_stage == "deleted", \
        "a deleted experiment's runs are deleted with it"
    with allure.step("a deleted experiment takes no runs and keeps its name reserved"):
        expect_error(lambda: mlflow_client.create_run(gone))
        expect_error(lambda: mlflow_client.create_experiment(name), "RESOURCE_ALREADY_EXISTS")

    with allure.step("restore it"):
        mlflow_client.restore_experiment(gone)
    assert mlflow_client.get_experiment(gone).lifecycle_stage == "active"
    assert visible() == {"ACTIVE_ONLY": {kept, gone}, "DELETED_ONLY": set(), "ALL": {kept, gone}}
    assert mlflow_client.get_run(run_id).info.lifecycle_stage == "active"
    assert mlflow_client.create_run(gone).info.experiment_id == gone


def test_experiment_names_are_case_sensitive(mlflow_client, unique_name):
    """Names are compared exactly (as on SQLite and in MLflow's own search), not by a DB collation."""
    name = unique_name("CaseSensitive")
    experiment_id = mlflow_client.create_experiment(name)
    assert mlflow_client.get_experiment_by_name(name.lower()) is None, (
        f"looking up {name.lower()!r} found the experiment named {name!r}")
    other = must_succeed(lambda: mlflow_client.create_experiment(name.lower()),
                         f"creating {name.lower()!r} next to {name!r}")
    assert other != experiment_id
    assert mlflow_client.get_experiment_by_name(name).experiment_id == experiment_id
    assert mlflow_client.get_experiment_by_name(name.lower()).experiment_id == other


# ================================================================ runs


def test_fluent_run_lifecycle_name_and_times(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_name = "训练 run 🚀"
    before = now_ms()
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        run_id = run.info.run_id
        with allure.step("while the run is active"):
            active = mlflow_client.get_run(run_id)
            assert active.info.status == "RUNNING"
            assert active.info.end_time is None
            assert active.info.run_name == run_name
            assert active.data.tags["mlflow.runName"] == run_name
            assert mlflow.active_run().info.run_id == run_id
    after = now_ms()
    assert mlflow.active_run() is None
    with allure.step("after the `with` block ends"):
        info = mlflow_client.get_run(run_id).info
    assert info.status == "FINISHED"
    assert info.experiment_id == experiment_id
    assert info.lifecycle_stage == "active"
    assert info.run_name == run_name
    assert before - CLOCK_SLACK_MS <= info.start_time <= info.end_time <= after + CLOCK_SLACK_MS, (
        f"start {info.start_time}, end {info.end_time} outside [{before}, {after}]")
    assert ids(mlflow_client.search_runs([experiment_id], f"attributes.run_name = '{run_name}'")) \
        == [run_id]


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_run_terminal_status(mlflow_client, unique_name, status):
    experiment_id = mlflow_client.create_experiment(unique_name())
    other = mlflow_client.create_run(experiment_id).info.run_id  # stays RUNNING
    run = mlflow_client.create_run(experiment_id)
    with allure.step(f"end the run as {status}"):
        mlflow_client.set_terminated(run.info.run_id, status=status)
    info = mlflow_client.get_run(run.info.run_id).info
    assert info.status == status
    assert info.start_time == run.info.start_time
    assert info.end_time is not None and info.end_time >= info.start_time
    assert ids(mlflow_client.search_runs([experiment_id], f"attributes.status = '{status}'")) \
        == [run.info.run_id]
    assert ids(mlflow_client.search_runs([experiment_id], "attributes.status = 'RUNNING'")) \
        == [other]


def test_run_that_raises_ends_failed(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    with pytest.raises(RuntimeError, match="training diverged"), \
            mlflow.start_run(experiment_id=experiment_id) as run:
        raise RuntimeError("training diverged")
    assert mlflow.active_run() is None
    assert mlflow_client.get_run(run.info.run_id).info.status == "FAILED"


def test_nested_runs_record_their_parent(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    with allure.step("a parent with two children, the first with a child of its own"), \
            mlflow.start_run(experiment_id=experiment_id, run_name="parent") as parent:
        # Without experiment_id a nested run goes to the active (default) experiment, not to
        # its parent's: pass it, as a user must.
        with mlflow.start_run(experiment_id=experiment_id, run_name="child-1", nested=True) as child1, \
                mlflow.start_run(experiment_id=experiment_id, run_name="grandchild",
                                 nested=True) as grandchild:
            assert mlflow.active_run().info.run_id == grandchild.info.run_id
        with mlflow.start_run(experiment_id=experiment_id, run_name="child-2", nested=True) as child2:
            assert mlflow.active_run().info.run_id == child2.info.run_id
    expected_parent = {parent.info.run_id: None, child1.info.run_id: parent.info.run_id,
                       child2.info.run_id: parent.info.run_id,
                       grandchild.info.run_id: child1.info.run_id}
    for run_id, parent_id in expected_parent.items():
        run = mlflow_client.get_run(run_id)
        assert run.data.tags.get("mlflow.parentRunId") == parent_id, run.info.run_name
        assert run.info.status == "FINISHED", run.info.run_name
        assert run.info.experiment_id == experiment_id, run.info.run_name
    children = mlflow_client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(ids(children)) == sorted([child1.info.run_id, child2.info.run_id])


# ================================================================ params


def test_params_are_stored_as_strings(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("lr", 0.001)
        mlflow.log_params({"epochs": 10, "shuffle": True, "dropout": None, "layers": [64, 32],
                           "optimizer": "adam", "empty": ""})
    mlflow_client.log_param(run.info.run_id, "seed", 42)
    assert mlflow_client.get_run(run.info.run_id).data.params == {
        "lr": "0.001", "epochs": "10", "shuffle": "True", "dropout": "None",
        "layers": "[64, 32]", "optimizer": "adam", "empty": "", "seed": "42"}


UNICODE_PARAMS = {
    "cjk": "学习率调度器：余弦退火",
    "japanese": "確率的勾配降下法",
    "korean": "학습률",
    "emoji": "🚀🔥✨",
    "zwj_family": "👩‍👩‍👧‍👦",
    "precomposed": "caf\u00e9",
    "decomposed": "cafe\u0301",  # e + combining acute: must not be normalised to the above
    "rtl": "مرحبا بالعالم",
    "cyrillic": "Привет, мир",
    "math": "∑ᵢ xᵢ² ≤ ∞",
    "quotes": "it's \"quoted\" and \\back\\slashed",
    "whitespace": "  tab\tnewline\nend  ",
    "学习率": "key in CJK",
    "größe": "key with umlaut",
}


def test_unicode_params_roundtrip_exactly(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    other = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_batch(other, params=[Param("emoji", "🚀🔥🎉")])
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    with allure.step("log unicode params, some one by one, the rest in a batch"):
        items = list(UNICODE_PARAMS.items())
        for key, value in items[:3] + items[-2:]:  # includes both non-ASCII keys
            mlflow_client.log_param(run_id, key, value)
        mlflow_client.log_batch(run_id, params=[Param(k, v) for k, v in items[3:-2]])
    params = mlflow_client.get_run(run_id).data.params
    wrong = [f"{k}: sent {v!a}, read {params.get(k)!a}"
             for k, v in UNICODE_PARAMS.items() if params.get(k) != v]
    assert not wrong, "params read back differently:\n  " + "\n  ".join(wrong)
    assert params["precomposed"] != params["decomposed"]
    check_filters(mlflow_client, [experiment_id], {"unicode": run_id, "other": other}, [
        ("params.emoji = '🚀🔥✨'", {"unicode"}),
        ("params.emoji = '🚀🔥🎉'", {"other"}),
        ("params.emoji LIKE '%🔥%'", {"unicode", "other"}),
        ("params.cjk = '学习率调度器：余弦退火'", {"unicode"}),
        ("params.cjk LIKE '%余弦%'", {"unicode"}),
        ("params.precomposed = 'caf\u00e9'", {"unicode"}),
        ("params.precomposed = 'cafe\u0301'", set()),
        ("params.decomposed = 'cafe\u0301'", {"unicode"}),
    ])


@pytest.mark.parametrize("alphabet", ["ascii", "cjk", "emoji"])
def test_param_value_at_limit_roundtrips(mlflow_client, unique_name, version, alphabet):
    """The documented limit is in characters; 4-byte emoji are 4x that in UTF-8 bytes."""
    limit = param_value_limit(version)
    char = {"ascii": "x", "cjk": "数", "emoji": "🚀"}[alphabet]
    value = char * (limit - 1) + "!"  # the last character shows the tail was kept
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    with allure.step(f"log a {limit}-character value with log_param and with log_batch"):
        mlflow_client.log_param(run_id, "single", value)
        mlflow_client.log_batch(run_id, params=[Param("batch", value)])
    params = mlflow_client.get_run(run_id).data.params
    for key in ("single", "batch"):
        assert len(params[key]) == limit, key
        assert params[key] == value, key


def test_param_value_over_limit(mlflow_client, unique_name, version):
    limit = param_value_limit(version)
    value = "".join(chr(0x4E00 + i % 2000) for i in range(limit + 1))  # CJK: counts characters
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    if not server_truncates_long_values(version):
        with allure.step(f"a {limit + 1}-character value is refused"):
            expect_error(lambda: mlflow_client.log_param(run_id, "single", value))
            expect_error(lambda: mlflow_client.log_batch(run_id, params=[Param("batch", value)]))
        assert mlflow_client.get_run(run_id).data.params == {}
        return
    with allure.step(f"a {limit + 1}-character value is stored truncated to {limit} characters"):
        mlflow_client.log_param(run_id, "single", value)
        mlflow_client.log_batch(run_id, params=[Param("batch", value)])
        with mlflow.start_run(run_id=run_id):
            mlflow.log_params({"fluent": value})
    params = mlflow_client.get_run(run_id).data.params
    for key in ("single", "batch", "fluent"):
        assert params[key] == value[:limit], (
            f"{key}: expected the first {limit} characters, got {len(params[key])} characters")


def test_param_key_over_limit_is_rejected(mlflow_client, unique_name, version):
    limit = rule("entity_key_limit", version)
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    longest = "k" * limit
    mlflow_client.log_param(run_id, longest, "fits")
    with allure.step(f"a {limit + 1}-character key is refused, keys are never truncated"):
        error = expect_error(lambda: mlflow_client.log_param(run_id, longest + "k", "too long"))
    assert str(limit) in error.message
    assert mlflow_client.get_run(run_id).data.params == {longest: "fits"}


def test_relogging_param_with_different_value_is_rejected(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_param(run_id, "depth", "3")
    with allure.step("logging the same value again is accepted"):
        mlflow_client.log_param(run_id, "depth", "3")
        mlflow_client.log_batch(run_id, params=[Param("depth", "3")])
    with allure.step("a different value is refused, with log_param and with log_batch"):
        error = expect_error(lambda: mlflow_client.log_param(run_id, "depth", "5"))
        assert "Changing param values is not allowed" in error.message
        expect_error(lambda: mlflow_client.log_batch(run_id, params=[Param("depth", "7")]))
    assert mlflow_client.get_run(run_id).data.params == {"depth": "3"}


# ================================================================ metrics


def test_single_metric_values_and_latest_value(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    before = now_ms()
    with allure.step("log metrics one at a time"):
        mlflow_client.log_metric(run_id, "accuracy", 0.5)  # step 0, client-side timestamp
        mlflow_client.log_metric(run_id, "loss", 5.0, timestamp=1_000, step=5)
        mlflow_client.log_metric(run_id, "loss", 3.0, timestamp=2_000, step=3)  # later, lower step
        mlflow_client.log_metric(run_id, "loss", 4.0, timestamp=1_500, step=5)  # same step, earlier
    after = now_ms()
    [accuracy] = mlflow_client.get_metric_history(run_id, "accuracy")
    assert (accuracy.value, accuracy.step) == (0.5, 0)
    assert before - CLOCK_SLACK_MS <= accuracy.timestamp <= after + CLOCK_SLACK_MS
    assert history(mlflow_client, run_id, "loss") == [(3, 2_000, 3.0), (5, 1_000, 5.0),
                                                      (5, 1_500, 4.0)]
    # The latest value is the one at the highest step, then the latest timestamp at that step.
    assert mlflow_client.get_run(run_id).data.metrics == {"accuracy": 0.5, "loss": 4.0}


def test_log_batch_of_1500_points_keeps_full_history(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    t0 = 1_700_000_000_000
    loss = [(step * 2, t0 + step * 37, 1.0 / (step + 1)) for step in range(1500)]
    accuracy = [(step, t0 + step, step / 300.0) for step in range(300)]
    with allure.step("log 1800 points of two metrics in one log_batch call"):
        mlflow_client.log_batch(run_id, metrics=[Metric("loss", v, ts, s) for s, ts, v in loss]
                                + [Metric("accuracy", v, ts, s) for s, ts, v in accuracy])
    with allure.step("read both histories back"):
        got_loss = history(mlflow_client, run_id, "loss")
        got_accuracy = history(mlflow_client, run_id, "accuracy")
    assert len(got_loss) == 1500
    assert got_loss == sorted(loss), "loss history differs in step, timestamp or value"
    assert got_accuracy == sorted(accuracy), "accuracy history differs in step, timestamp or value"
    assert mlflow_client.get_run(run_id).data.metrics == {"loss": loss[-1][2],
                                                         "accuracy": accuracy[-1][2]}


FLOATS = {
    "zero": 0.0,
    "negative": -2.5,
    "tiny": 1e-300,
    "negative-tiny": -1e-300,
    "subnormal": 5e-324,
    "smallest-normal": 2.2250738585072014e-308,
    "huge": 1e300,
    "negative-huge": -1e300,
    "dbl-max": DBL_MAX,
    "tenth": 0.1,
    "third": 1 / 3,
    "seventeen-digits": 123456789.12345679,
}


def test_metric_float_values_roundtrip_exactly(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    names = list(FLOATS)
    with allure.step("log each value as its own metric and all of them as one series"):
        mlflow_client.log_batch(run_id, metrics=[Metric(n, FLOATS[n], 1_000, 0) for n in names]
                                + [Metric("series", FLOATS[n], 1_000 + i, i)
                                   for i, n in enumerate(names)])
    latest = mlflow_client.get_run(run_id).data.metrics
    series = {m.step: m.value for m in mlflow_client.get_metric_history(run_id, "series")}
    wrong = [f"{n}: sent {FLOATS[n]!r}, latest {latest.get(n)!r}, history {series.get(i)!r}"
             for i, n in enumerate(names) if not latest.get(n) == series.get(i) == FLOATS[n]]
    assert not wrong, "values changed on the way through the store:\n  " + "\n  ".join(wrong)
    with allure.step("a filter on an exact double finds it"):
        for name in ("tiny", "third"):
            assert ids(mlflow_client.search_runs(
                [experiment_id], f"metrics.{name} = {FLOATS[name]!r}")) == [run_id], name


def test_nan_metric_roundtrips(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_batch(run_id, metrics=[Metric("m", 1.0, 1_000, 0),
                                             Metric("m", math.nan, 2_000, 1)])
    points = history(mlflow_client, run_id, "m")
    assert [(s, ts) for s, ts, _ in points] == [(0, 1_000), (1, 2_000)]
    assert points[0][2] == 1.0
    assert math.isnan(points[1][2]), f"NaN read back as {points[1][2]!r}"
    assert math.isnan(mlflow_client.get_run(run_id).data.metrics["m"])


def test_infinite_metric_values_are_stored_as_dbl_max(mlflow_client, unique_name):
    """SQL stores cannot hold inf: MLflow's SqlAlchemyStore.sanitize_metric_value stores +/-inf as
    +/-1.7976931348623157e308 (same in 2.15.1, 2.22.0, 3.14.0). Pinned so a store that keeps inf,
    or loses the sign, shows up."""
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_metric(run_id, "up", math.inf, timestamp=1_000, step=0)
    mlflow_client.log_metric(run_id, "down", -math.inf, timestamp=1_000, step=0)
    assert history(mlflow_client, run_id, "up") == [(0, 1_000, DBL_MAX)]
    assert history(mlflow_client, run_id, "down") == [(0, 1_000, -DBL_MAX)]
    assert mlflow_client.get_run(run_id).data.metrics == {"up": DBL_MAX, "down": -DBL_MAX}


# ================================================================ tags


def test_run_tags_set_overwrite_and_delete(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id, tags={"stage": "dev"}).info.run_id
    neighbour = mlflow_client.create_run(experiment_id, tags={"stage": "dev"}).info.run_id
    with allure.step("set tags one by one, in a batch and with the fluent API"):
        mlflow_client.set_tag(run_id, "owner", "数据团队 🧑‍🔬")
        mlflow_client.log_batch(run_id, tags=[RunTag("dataset", "v1"), RunTag("temp", "x")])
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags({"framework": "sklearn"})
    with allure.step("overwrite one tag, delete another"):
        mlflow_client.set_tag(run_id, "stage", "prod")
        mlflow_client.set_tag(run_id, "dataset", "v2")
        mlflow_client.delete_tag(run_id, "temp")
    assert user_tags(mlflow_client.get_run(run_id).data.tags) == {
        "stage": "prod", "owner": "数据团队 🧑‍🔬", "dataset": "v2", "framework": "sklearn"}
    assert user_tags(mlflow_client.get_run(neighbour).data.tags) == {"stage": "dev"}, \
        "changing one run's tags touched another run"
    with allure.step("deleting a tag that does not exist is refused"):
        expect_error(lambda: mlflow_client.delete_tag(run_id, "temp"), "RESOURCE_DOES_NOT_EXIST")


def test_run_tag_value_limit(mlflow_client, unique_name, version):
    limit = run_tag_value_limit(version)
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    at_limit = "🏷" * (limit - 1) + "!"
    over_limit = "t" * (limit + 1)
    mlflow_client.set_tag(run_id, "at_limit", at_limit)
    if server_truncates_long_values(version):
        with allure.step(f"a {limit + 1}-character value is stored truncated to {limit}"):
            mlflow_client.set_tag(run_id, "over_limit", over_limit)
        expected = {"at_limit": at_limit, "over_limit": over_limit[:limit]}
    else:
        expect_error(lambda: mlflow_client.set_tag(run_id, "over_limit", over_limit))
        expected = {"at_limit": at_limit}
    tags = user_tags(mlflow_client.get_run(run_id).data.tags)
    assert {k: len(v) for k, v in tags.items()} == {k: len(v) for k, v in expected.items()}
    assert tags == expected


# ---------------------------------------------------------------- keys are compared exactly
# MLflow treats param, metric and tag keys as exact strings (SQLite does; so does MLflow's
# search, which adds BINARY comparisons on MySQL). A store whose key columns use a case- or
# accent-insensitive collation merges or refuses keys a user sees as distinct.
KEY_PAIRS = {"case": ("alpha", "Alpha"), "accent": ("cafe", "caf\u00e9")}


def _log_two_keys(client, kind: str, experiment_id: str, run_id: str, first: str,
                  second: str) -> dict[str, object]:
    """Log `first` then `second` as `kind`; return what the server holds for both."""
    if kind == "param":
        client.log_param(run_id, first, "1")
        client.log_param(run_id, second, "2")
        return client.get_run(run_id).data.params
    if kind == "metric":
        client.log_metric(run_id, first, 1.0, timestamp=1_000, step=0)
        client.log_metric(run_id, second, 2.0, timestamp=1_000, step=0)
        histories = {k: [m.value for m in client.get_metric_history(run_id, k)]
                     for k in (first, second)}
        assert histories == {first: [1.0], second: [2.0]}, f"metric histories: {histories}"
        return client.get_run(run_id).data.metrics
    if kind == "run_tag":
        client.set_tag(run_id, first, "1")
        client.set_tag(run_id, second, "2")
        return user_tags(client.get_run(run_id).data.tags)
    client.set_experiment_tag(experiment_id, first, "1")
    client.set_experiment_tag(experiment_id, second, "2")
    return user_tags(client.get_experiment(experiment_id).tags)


@pytest.mark.parametrize("variant", list(KEY_PAIRS))
@pytest.mark.parametrize("kind", ["param", "metric", "run_tag", "experiment_tag"])
def test_keys_differing_only_in_case_or_accent_are_distinct(mlflow_client, unique_name, kind,
                                                            variant):
    first, second = KEY_PAIRS[variant]
    experiment_id = mlflow_client.create_experiment(unique_name())
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    with allure.step(f"{kind} {first!r} then {kind} {second!r}"):
        stored = must_succeed(
            lambda: _log_two_keys(mlflow_client, kind, experiment_id, run_id, first, second),
            f"{kind} {second!r} after {first!r}")
    expected = {first: 1.0, second: 2.0} if kind == "metric" else {first: "1", second: "2"}
    # the collation's face (mlflow/mlflow#7857): one key left, holding the second value, said
    # apart from any other mismatch (both lost, a wrong value)
    merged = len(stored) == 1 and set(stored) <= {first, second} \
        and list(stored.values()) == [expected[second]]
    assert not merged, (f"{kind}s {first!r} and {second!r} were merged: {second!r} replaced "
                        f"{first!r}; the server holds {stored}")
    assert stored == expected, (
        f"{kind}s {first!r} and {second!r}: the server holds {stored}, expected {expected}")


# ================================================================ search_runs


def _search_dataset(client, experiment_id: str) -> dict[str, str]:
    """Six runs with known params, metrics and tags; returns run ids by label."""
    rows = {
        "r1": ({"model": "cnn", "opt": "adam"}, {"acc": 0.91, "loss": 0.30},
               {"stage": "prod", "owner": "ana"}),
        "r2": ({"model": "CNN", "opt": "sgd"}, {"acc": 0.75, "loss": 0.55},
               {"stage": "dev", "owner": "bob"}),
        "r3": ({"model": "rnn", "opt": "adam"}, {"acc": 0.50, "loss": 0.80},
               {"stage": "prod", "owner": "ana"}),
        "r4": ({"model": "transformer", "opt": "adamw"}, {"acc": 0.99, "loss": 0.05},
               {"stage": "staging"}),
        "r5": ({"model": "rnn_v2", "opt": "sgd"}, {"acc": -1.0}, {}),
        "r6": ({}, {}, {}),
    }
    runs = {}
    for label, (params, metrics, tags) in rows.items():
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, 1_000, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        runs[label] = run_id
    return runs


def test_search_runs_filters_on_params(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    runs = _search_dataset(mlflow_client, experiment_id)
    check_filters(mlflow_client, [experiment_id], runs, [
        ("params.model = 'cnn'", {"r1"}),
        ("params.model = 'CNN'", {"r2"}),
        ("params.model != 'cnn'", {"r2", "r3", "r4", "r5"}),  # runs without the param never match
        ("params.model LIKE 'cn%'", {"r1"}),
        ("params.model LIKE '%nn%'", {"r1", "r3", "r5"}),
        ("params.model LIKE 'rnn'", {"r3"}),
        ("params.model ILIKE 'cn%'", {"r1", "r2"}),
        ("params.opt = 'adam' AND params.model = 'rnn'", {"r3"}),
        ("params.missing = 'x'", set()),
    ])
    with allure.step("order comparisons on params are refused (params are strings)"):
        expect_error(lambda: mlflow_client.search_runs([experiment_id], "params.model > 'a'"))


def test_search_runs_filters_on_metrics(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    runs = _search_dataset(mlflow_client, experiment_id)
    check_filters(mlflow_client, [experiment_id], runs, [
        ("metrics.acc > 0.9", {"r1", "r4"}),
        ("metrics.acc >= 0.91", {"r1", "r4"}),
        ("metrics.acc < 0.75", {"r3", "r5"}),
        ("metrics.acc <= 0.75", {"r2", "r3", "r5"}),
        ("metrics.acc = 0.5", {"r3"}),
        ("metrics.acc != 0.5", {"r1", "r2", "r4", "r5"}),
        ("metrics.acc < 0", {"r5"}),
        ("metrics.loss < 0.5 AND metrics.acc > 0.95", {"r4"}),
    ])


def test_search_runs_filters_on_tags(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    runs = _search_dataset(mlflow_client, experiment_id)
    check_filters(mlflow_client, [experiment_id], runs, [
        ("tags.stage = 'prod'", {"r1", "r3"}),
        ("tags.stage = 'PROD'", set()),
        ("tags.stage != 'prod'", {"r2", "r4"}),
        ("tags.stage LIKE 'st%'", {"r4"}),
        ("tags.stage ILIKE 'PROD'", {"r1", "r3"}),
        ("tags.owner = 'ana' AND tags.stage = 'prod'", {"r1", "r3"}),
    ])


def test_search_runs_combined_filters_and_experiment_scope(mlflow_client, unique_name):
    first = mlflow_client.create_experiment(unique_name("first"))
    second = mlflow_client.create_experiment(unique_name("second"))
    runs = _search_dataset(mlflow_client, first)
    foreign = mlflow_client.create_run(second).info.run_id
    mlflow_client.log_batch(foreign, params=[Param("model", "cnn")])
    check_filters(mlflow_client, [first], runs, [
        ("params.opt = 'sgd' AND metrics.acc > 0", {"r2"}),
        ("tags.stage = 'prod' AND metrics.loss > 0.5", {"r3"}),
        ("params.model LIKE '%nn' AND tags.owner = 'ana' AND metrics.acc >= 0.5", {"r1", "r3"}),
        ("", {"r1", "r2", "r3", "r4", "r5", "r6"}),
    ])
    with allure.step("a search over both experiments also finds the other experiment's run"):
        found = search_all_runs(mlflow_client, [first, second], "params.model = 'cnn'")
        assert sorted(ids(found)) == sorted([runs["r1"], foreign])


def _runs_with(client, experiment_id: str, key: str, values: dict[str, object],
               kind: str) -> dict[str, str]:
    runs = {}
    for label, value in values.items():
        run_id = client.create_run(experiment_id).info.run_id
        if value is not None:
            if kind == "metric":
                client.log_metric(run_id, key, value, timestamp=1_000, step=0)
            else:
                client.log_param(run_id, key, value)
        runs[label] = run_id
    return runs


def assert_order(client, experiment_id: str, order_by: str, runs: dict[str, str],
                 expected: list[str]) -> None:
    label = {run_id: name for name, run_id in runs.items()}
    with allure.step(f"order_by {order_by!r} gives {expected}"):
        got = [label[i] for i in ids(search_all_runs(client, [experiment_id], order_by=[order_by]))]
    assert got == expected, f"order_by {order_by!r}: got {got}, expected {expected}"


def test_search_runs_order_by_metric(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    values = {"a": 0.3, "b": 0.9, "c": -0.1, "d": 0.5, "nan": math.nan, "none": None}
    runs = _runs_with(mlflow_client, experiment_id, "acc", values, "metric")
    # NaN, then runs without the metric, come last in both directions: the store sorts by
    # presence and is_nan before the value (SqlAlchemyStore._get_orderby_clauses).
    assert_order(mlflow_client, experiment_id, "metrics.acc ASC", runs,
                 ["c", "a", "d", "b", "nan", "none"])
    assert_order(mlflow_client, experiment_id, "metrics.acc DESC", runs,
                 ["b", "d", "a", "c", "nan", "none"])


def test_search_runs_order_by_param(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    values = {"b": "beta", "a": "alpha", "d": "delta", "c": "gamma", "ten": "10", "nine": "9",
              "none": None}
    runs = _runs_with(mlflow_client, experiment_id, "name", values, "param")
    # Params are strings: "10" < "9". Runs without the param come last in both directions.
    assert_order(mlflow_client, experiment_id, "params.name ASC", runs,
                 ["ten", "nine", "a", "b", "d", "c", "none"])
    assert_order(mlflow_client, experiment_id, "params.name DESC", runs,
                 ["c", "d", "b", "a", "nine", "ten", "none"])


def test_search_runs_order_by_param_with_mixed_case(mlflow_client, unique_name):
    """Mixed-case values sort by code point ("B" < "a"), as SQLite does; a store that sorts by
    a case-insensitive collation orders them differently, so the same query pages differently."""
    experiment_id = mlflow_client.create_experiment(unique_name())
    values = {"lower-a": "a", "upper-b": "B", "lower-c": "c", "upper-a": "A"}
    runs = _runs_with(mlflow_client, experiment_id, "name", values, "param")
    label = {run_id: name for name, run_id in runs.items()}
    for order_by, expected in (("params.name ASC", ["upper-a", "upper-b", "lower-a", "lower-c"]),
                               ("params.name DESC", ["lower-c", "lower-a", "upper-b", "upper-a"])):
        with allure.step(f"order_by {order_by!r} gives {expected}"):
            got = [label[i] for i in ids(search_all_runs(mlflow_client, [experiment_id],
                                                         order_by=[order_by]))]
        folded = [values[name].lower() for name in got]
        collated = folded == sorted(folded, reverse=order_by.endswith("DESC"))
        assert got == expected, (
            f"order_by {order_by!r}: got {got}, expected {expected} (code point order)"
            + ("; sorted by a case-insensitive collation" if collated else ""))


def test_search_runs_pages_cover_every_run_once(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    with allure.step("create 11 runs, each with metric idx"):
        created = []
        for idx in range(11):
            run_id = mlflow_client.create_run(experiment_id).info.run_id
            mlflow_client.log_metric(run_id, "idx", idx, timestamp=1_000, step=0)
            created.append(run_id)
    with allure.step("walk pages of 4 in the default order"):
        pages = walk_pages(mlflow_client, [experiment_id], 4)
    walked = [run_id for page in pages for run_id in ids(page)]
    assert [len(p) for p in pages] == [4, 4, 3]
    assert len(walked) == len(set(walked)), "a run came back on two pages"
    assert set(walked) == set(created)
    with allure.step("walk pages of 4 ordered by metric, descending"):
        pages = walk_pages(mlflow_client, [experiment_id], 4, order_by=["metrics.idx DESC"])
    assert [run_id for page in pages for run_id in ids(page)] == created[::-1]


def test_search_runs_last_page_when_results_fill_it_exactly(mlflow_client, unique_name, version):
    exact = rule("run_search_has_exact_last_page", version)
    experiment_id = mlflow_client.create_experiment(unique_name())
    created = {mlflow_client.create_run(experiment_id).info.run_id for _ in range(6)}
    pages = walk_pages(mlflow_client, [experiment_id], 3)
    assert {run_id for page in pages for run_id in ids(page)} == created
    expected = [3, 3] if exact else [3, 3, 0]
    assert [len(p) for p in pages] == expected, (
        f"MLflow {version} returns no token after the last full page" if exact else
        f"MLflow {version} returns a token after a full last page, to an empty page")


def test_deleted_and_restored_runs_by_view_type(mlflow_client, unique_name):
    experiment_id = mlflow_client.create_experiment(unique_name())
    runs = {}
    for label in ("a", "b", "c", "d"):
        run_id = mlflow_client.create_run(experiment_id).info.run_id
        mlflow_client.log_batch(run_id, params=[Param("group", "x" if label in "ac" else "y")],
                                metrics=[Metric("score", ord(label), 1_000, 0)])
        runs[label] = run_id

    def views(filter_string: str = "") -> dict[str, set[str]]:
        label = {run_id: name for name, run_id in runs.items()}
        return {view: {label[i] for i in ids(search_all_runs(
            mlflow_client, [experiment_id], filter_string, getattr(ViewType, view)))}
            for view in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")}

    with allure.step("delete runs c and d"):
        mlflow_client.delete_run(runs["c"])
        mlflow_client.delete_run(runs["d"])
    assert mlflow_client.get_run(runs["c"]).info.lifecycle_stage == "deleted"
    assert views() == {"ACTIVE_ONLY": {"a", "b"}, "DELETED_ONLY": {"c", "d"},
                       "ALL": {"a", "b", "c", "d"}}
    assert views("params.group = 'x'") == {"ACTIVE_ONLY": {"a"}, "DELETED_ONLY": {"c"},
                                           "ALL": {"a", "c"}}
    with allure.step("a deleted run takes no more data"):
        expect_error(lambda: mlflow_client.log_param(runs["c"], "late", "1"))

    with allure.step("restore run c"):
        mlflow_client.restore_run(runs["c"])
    restored = mlflow_client.get_run(runs["c"])
    assert restored.info.lifecycle_stage == "active"
    assert restored.data.params == {"group": "x"}
    assert restored.data.metrics == {"score": float(ord("c"))}
    assert views() == {"ACTIVE_ONLY": {"a", "b", "c"}, "DELETED_ONLY": {"d"},
                       "ALL": {"a", "b", "c", "d"}}
    assert views("metrics.score >= 99") == {"ACTIVE_ONLY": {"c"}, "DELETED_ONLY": {"d"},
                                            "ALL": {"c", "d"}}
