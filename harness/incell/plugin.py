"""The pytest plugin loaded inside every cell (`pytest -p harness.incell.plugin`).

It runs in the cell's MLflow virtualenv, so it may import only pytest, allure, mlflow, boto3
and the standard library. Scenarios get everything through its fixtures: they never learn
which platform they run on except through `cell` (for labels and skip reasons).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import allure
import pytest

from harness.config.defects import Failure, KnownDefect, judge, matches_test
from harness.system.endpoint import (
    CELL_ENV,
    COLLECT_ALL_ENV,
    DEFECTS_ENV,
    MANIFEST_ENV,
    PHASE_ENV,
    SERVER_LOG_ENV,
    WITH_PHASE_ENV,
    CellInfo,
    Endpoint,
)

FEATURES = {
    "tracking": "Tracking",
    "artifacts": "Artifacts",
    "registry": "Model registry",
    "persistence": "Persistence",
    "upgrade": "Upgrades",
    "security": "Security advisories",
    "observability": "Observability",
}


DEFECTS_KEY = pytest.StashKey[list[KnownDefect]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "phase(name): runs only in that phase of a phased suite")
    config.addinivalue_line("markers", "large: moves large payloads; deselect with -m 'not large'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    phase = os.environ.get(PHASE_ENV)
    if os.environ.get(COLLECT_ALL_ENV):
        return  # counting a cell's tests before deploy (harness.commands.collection)
    if phase:
        # `data-check@<step>`: one run of the `data-check` tests after a guide step
        kept = [i for i in items if _phase_of(i) == phase.split("@", 1)[0]]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept  # a phased run is serial (scheduling.xdist_args): file order holds
    else:
        also = os.environ.get(WITH_PHASE_ENV) or None
        dropped = [i for i in items if _phase_of(i) not in (None, also)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if _phase_of(i) in (None, also)]
    defects = [KnownDefect.from_dict(d) for d in json.loads(os.environ.get(DEFECTS_ENV) or "[]")]
    for item in items:
        marked = [d for d in defects if any(_matches(item, p) for p in d.tests)]
        if marked:
            _expect_defects(item, marked)


def _expect_defects(item: pytest.Item, defects: list[KnownDefect]) -> None:
    for defect in defects:
        item.user_properties.append(("known_defect", defect.to_dict()))
    item.stash[DEFECTS_KEY] = defects


@pytest.hookimpl(wrapper=True, trylast=True)  # inside allure-pytest: it sees the xfail
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Accept the test's failure only if it looks like one of its defects (the signature).

    Not a plain strict xfail, which would accept any failure: a connection error or a KeyError in
    a test marked for a defect would pass as "defect reproduced". A failure that matches becomes
    an xfail; any other failure, and a pass (XPASS), fail the test with both texts side by side.
    """
    defects = item.stash.get(DEFECTS_KEY, None)
    if not defects:
        return (yield)
    what = item.nodeid.split("::", 1)[-1]
    try:
        yield
    except (pytest.skip.Exception, pytest.xfail.Exception, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        judgement = judge(defects, Failure.of(exc), what)
        if judgement.status != "known-defect":
            raise DefectSignatureMismatch(judgement.message) from exc
        allure.dynamic.tag("known-defect")
        pytest.xfail(judgement.message)
    pytest.fail(judge(defects, None, what).message, pytrace=False)


class DefectSignatureMismatch(AssertionError):
    """A test marked for a known defect failed in another way: a real failure."""


def _phase_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("phase")
    return marker.args[0] if marker else None


def _matches(item: pytest.Item, pattern: str) -> bool:
    nodeid = item.nodeid.split("::", 1)
    short = f"{Path(nodeid[0]).name}::{nodeid[1]}" if len(nodeid) == 2 else item.nodeid
    return matches_test(pattern, short, item.nodeid)


def suite_of(item: pytest.Item) -> str:
    name = Path(str(item.fspath)).stem
    return name[len("test_"):] if name.startswith("test_") else name


@pytest.fixture(scope="session")
def endpoint() -> Endpoint:
    """The deployment under test: tracking URI, MLflow version, S3 endpoint, bucket, keys."""
    return Endpoint.from_env()


@pytest.fixture(scope="session")
def cell() -> CellInfo:
    return CellInfo.from_env()


@pytest.fixture(scope="session")
def mlflow_client(endpoint: Endpoint) -> Any:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(endpoint.tracking_uri)
    return MlflowClient(tracking_uri=endpoint.tracking_uri)


@pytest.fixture(scope="session")
def s3(endpoint: Endpoint) -> Any:
    """A boto3 client for the deployment's bucket store, to check artifacts where they land."""
    if not endpoint.s3_endpoint_url or not endpoint.s3_credentials:
        pytest.skip("this platform exposes no S3 endpoint to the harness")
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint.s3_endpoint_url,
        aws_access_key_id=endpoint.s3_credentials.access_key,
        aws_secret_access_key=endpoint.s3_credentials.secret_key,
        region_name="us-east-1",
    )


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names that never collide across tests, parallel workers and repeated runs on one server."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40].strip("-")
    token = uuid.uuid4().hex[:8]

    def make(suffix: str = "") -> str:
        return f"mm-{base}-{token}" + (f"-{suffix}" if suffix else "")

    return make


@pytest.fixture(scope="session")
def manifest_path() -> Path:
    """Where a phased suite writes what it created, for the next phase to verify."""
    path = os.environ.get(MANIFEST_ENV)
    if not path:
        pytest.skip("not running as a phased suite (no manifest)")
    return Path(path)


@pytest.fixture(autouse=True)
def _allure_labels(request: pytest.FixtureRequest) -> None:
    """Labels that keep the same test on two platforms apart and group it by platform/suite."""
    if os.environ.get(CELL_ENV) is None:
        return
    info = CellInfo.from_env()
    suite = suite_of(request.node)
    allure.dynamic.label("platform", info.platform)
    allure.dynamic.label("channel", info.channel)
    allure.dynamic.label("mlflow_version", info.mlflow_version)
    allure.dynamic.label("scenario", suite)
    allure.dynamic.parent_suite(info.platform)
    allure.dynamic.suite(suite)
    allure.dynamic.sub_suite(info.channel)
    allure.dynamic.epic("Charmed MLflow")
    allure.dynamic.feature(FEATURES.get(suite, suite))
    allure.dynamic.parameter("platform", info.platform)
    allure.dynamic.parameter("channel", info.channel)
    if os.environ.get("MLFLOW_MATRIX_INFORMATIONAL"):
        client = os.environ.get("MLFLOW_MATRIX_CLIENT_VERSION", "?")
        allure.dynamic.label("informational", "true")
        allure.dynamic.tag(f"old client {client} (informational)")
        allure.dynamic.sub_suite(f"{info.channel} · old client {client} (informational)")
    for name, defect in request.node.user_properties:
        if name == "known_defect":
            allure.dynamic.link(defect["link"], name=f"known defect {defect['id']}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failure, attach the tail of the MLflow server's log: the other half of the story."""
    outcome = yield
    report = outcome.get_result()
    log = os.environ.get(SERVER_LOG_ENV)
    if report.failed and report.when == "call" and log and Path(log).is_file():
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-300:]
        allure.attach("\n".join(lines), name="mlflow server log (last 300 lines)",
                      attachment_type=allure.attachment_type.TEXT)
