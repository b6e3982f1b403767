"""What each MLflow release promises, where releases differ: one table keyed by version.

A scenario judges a server by the rules of the release it runs, never by what that server
answers and never by "the three channels": `--mlflow-version` qualifies any release. Each row
names the first release with a value and where that is defined upstream. Values that are module
constants in `mlflow.utils.validation` are cross-checked against the installed client by
tracking's `test_release_rules_agree_with_the_client`, so a release that moves a limit shows
red until this table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pytest
from packaging.version import Version

VALIDATION = "https://github.com/mlflow/mlflow/blob/v{v}/mlflow/utils/validation.py"
PROMETHEUS_EXPORTER = ("https://github.com/mlflow/mlflow/blob/v2.15.1/mlflow/server/"
                       "prometheus_exporter.py")


@dataclass(frozen=True)
class Change:
    since: str          # first release with `value` (inclusive)
    value: Any
    link: str


RULES: dict[str, tuple[Change, ...]] = {
    # MAX_ENTITY_KEY_LENGTH: param, metric and run-tag keys
    "entity_key_limit": (Change("0", 250, VALIDATION.format(v="2.0.1")),),
    # MAX_PARAM_VAL_LENGTH
    "param_value_limit": (Change("0", 500, VALIDATION.format(v="2.7.1")),
                          Change("2.8", 6000, "https://github.com/mlflow/mlflow/pull/9709")),
    # MAX_TAG_VAL_LENGTH (run tags)
    "run_tag_value_limit": (Change("0", 5000, VALIDATION.format(v="2.16.2")),
                            Change("2.17", 8000, "https://github.com/mlflow/mlflow/pull/13176")),
    # MAX_EXPERIMENT_TAG_VAL_LENGTH; measured here: 5000 in 3.15.2, 20000 in 3.16.0
    "experiment_tag_value_limit": (Change("0", 5000, VALIDATION.format(v="3.15.2")),
                                   Change("3.16", 20000, VALIDATION.format(v="3.16.0"))),
    # a param or run-tag value over its limit is truncated by the server (with a warning in the
    # server log) instead of refused, unless MLFLOW_TRUNCATE_LONG_VALUES=false (the charm does
    # not set it); SqlAlchemyStore -> _validate_length_limit(truncate=True)
    "server_truncates_long_values": (
        Change("0", False, VALIDATION.format(v="2.10.2")),
        Change("2.11", True, "https://github.com/mlflow/mlflow/pull/11208")),
    # search_runs omits the next-page token when the last page is exactly full:
    # SqlAlchemyStore._search_runs fetches max_results + 1 rows since 3.10 (read in 3.9.0 and
    # 3.10.0); before, a full last page carries a token to an empty page (mlflow/mlflow#20546)
    # the tracking server's Host-header and CORS validation (security_utils), mlflow/mlflow#17910
    "server_security_middleware": (
        Change("0", False, "https://github.com/mlflow/mlflow/pull/17910"),
        Change("3.5", True, "https://github.com/mlflow/mlflow/pull/17910")),
    "run_search_has_exact_last_page": (
        Change("0", False, "https://github.com/mlflow/mlflow/issues/20546"),
        Change("3.10", True, "https://github.com/mlflow/mlflow/blob/v3.10.0/mlflow/store/"
                             "tracking/sqlalchemy_store.py")),
    # The server's Prometheus metrics (`--expose-prometheus`): prometheus_flask_exporter with
    # defaults_prefix="mlflow" and group_by=mlflow_version (mlflow/server/prometheus_exporter.py),
    # the names the charm's dashboard and alert rules query. Read the same in the 2.15.1, 2.22.0
    # and 3.14.0 wheels; a release that renames one gets a row here, and the dashboard panel
    # that still uses the old name turns red (scenarios/test_observability.py).
    "metric_requests_total": (Change("0", "mlflow_http_request_total", PROMETHEUS_EXPORTER),),
    "metric_request_duration": (
        Change("0", "mlflow_http_request_duration_seconds", PROMETHEUS_EXPORTER),),
    "metric_version_label": (Change("0", "mlflow_version", PROMETHEUS_EXPORTER),),
}

# rule -> the constant in mlflow.utils.validation that states it in the installed client
CLIENT_CONSTANTS = {
    "entity_key_limit": "MAX_ENTITY_KEY_LENGTH",
    "param_value_limit": "MAX_PARAM_VAL_LENGTH",
    "run_tag_value_limit": "MAX_TAG_VAL_LENGTH",
    "experiment_tag_value_limit": "MAX_EXPERIMENT_TAG_VAL_LENGTH",
}


def rule(name: str, version: Version | str) -> Any:
    """The value of a rule for an MLflow release."""
    version = Version(str(version))
    chosen = None
    for change in RULES[name]:
        if version >= Version(change.since):
            chosen = change
    assert chosen is not None, f"no rule {name!r} for MLflow {version}"
    return chosen.value


def source(name: str, version: Version | str) -> str:
    """The upstream link behind a rule's value for a release (for messages and Allure)."""
    version = Version(str(version))
    link = RULES[name][0].link
    for change in RULES[name]:
        if version >= Version(change.since):
            link = change.link
    return link


def not_applicable(reason: str) -> NoReturn:
    """End a test that the release under test does not have the feature for. The verdict counts
    it as *not applicable*, its own status, never as passed (the `not applicable:` prefix)."""
    pytest.skip(f"not applicable: {reason}")
