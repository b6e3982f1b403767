"""Traces: spans logged to the server by the real client, read back, searched, paged and deleted.

MLflow Tracing (2.14+) records a tree of spans per call (`@mlflow.trace`, `mlflow.start_span`);
the server keeps the trace (info, tags, request metadata) and the client reads the spans back.
Each test works in its own experiment, so the suite runs in parallel and repeatedly on one
server. What a trace must hold is what the test did: span names, parents, attributes, inputs,
outputs, status, and timing inside the window the test measured around the call.
On releases without tracing every test is not applicable (scenarios/_rules.py).
"""

from __future__ import annotations

import time

import mlflow
import pytest
from _helpers import (
    assert_walk,
    expect_page_refusals,
    expect_refusal,
    require_api,
    traces_logged_synchronously,
    walk_pages,
)
from _rules import rule
from packaging.version import Version

traces_logged_synchronously()

PAGE = 3
WRITTEN = 7  # more than two pages of PAGE, not a multiple of it


@pytest.fixture
def version(endpoint) -> Version:
    version = Version(endpoint.mlflow_version)
    require_api("traces", version)
    return version


@pytest.fixture
def experiment_id(mlflow_client, unique_name, version):
    experiment_id = mlflow_client.create_experiment(unique_name())
    mlflow.set_experiment(experiment_id=experiment_id)
    yield experiment_id
    mlflow_client.delete_experiment(experiment_id)


def trace_id(trace_or_info, version) -> str:
    """A trace's id under the name its release gives it (request_id on 2.x, trace_id on 3.x)."""
    info = getattr(trace_or_info, "info", trace_or_info)  # a Trace, a TraceInfo or a span
    return getattr(info, rule("trace_id_name", version))


def _status(span) -> str:
    code = span.status.status_code
    return getattr(code, "value", str(code))


# ---------------------------------------------------------------- round trip


@mlflow.trace(name="child", span_type="TOOL", attributes={"tool": "adder"})
def _add(a: int, b: int) -> int:
    return a + b


@mlflow.trace(name="failing")
def _fail() -> None:
    raise ValueError("boom from the matrix")


def _write_nested_trace(version) -> tuple[str, int, int]:
    """root → (child, grandchild inside a manual span, failing span); (id, t0, t1) in ns."""
    t0 = time.time_ns()
    with mlflow.start_span(name="root", span_type="CHAIN", attributes={"matrix.k": "v ✓"}) as root:
        tid = trace_id(root, version)
        root.set_inputs({"question": "1+2?"})
        with mlflow.start_span(name="middle", attributes={"depth": 1}) as middle:
            middle.set_attribute("n", 3)
            _add(1, 2)
        with pytest.raises(ValueError):
            _fail()
        root.set_outputs({"answer": 3})
    t1 = time.time_ns()
    return tid, t0, t1


def test_nested_spans_round_trip(mlflow_client, experiment_id, version):
    """Names, parents, attributes, inputs/outputs, statuses and timing come back as written."""
    tid, t0, t1 = _write_nested_trace(version)
    trace = mlflow_client.get_trace(tid)
    assert trace_id(trace, version) == tid
    assert trace.info.experiment_id == experiment_id
    spans = {s.name: s for s in trace.data.spans}
    assert sorted(spans) == ["child", "failing", "middle", "root"], sorted(spans)
    root, middle, child, failing = (spans[n] for n in ("root", "middle", "child", "failing"))
    assert root.parent_id is None
    assert middle.parent_id == root.span_id and failing.parent_id == root.span_id
    assert child.parent_id == middle.span_id
    assert len({s.span_id for s in spans.values()}) == 4
    assert root.get_attribute("matrix.k") == "v ✓"
    assert middle.get_attribute("depth") == 1 and middle.get_attribute("n") == 3
    assert child.get_attribute("tool") == "adder"
    assert root.get_attribute("mlflow.spanType") == "CHAIN"
    assert child.get_attribute("mlflow.spanType") == "TOOL"
    assert root.inputs == {"question": "1+2?"} and root.outputs == {"answer": 3}
    assert child.inputs == {"a": 1, "b": 2} and child.outputs == 3
    assert [_status(s) for s in (root, middle, child)] == ["OK"] * 3
    assert _status(failing) == "ERROR"
    assert any(e.name == "exception" and "boom from the matrix" in str(e.attributes)
               for e in failing.events), failing.events
    for span in spans.values():
        assert t0 <= span.start_time_ns <= span.end_time_ns <= t1, (
            f"span {span.name} [{span.start_time_ns}, {span.end_time_ns}] is outside the "
            f"call's window [{t0}, {t1}]")
    for parent, kid in ((root, middle), (middle, child), (root, failing)):
        assert parent.start_time_ns <= kid.start_time_ns <= kid.end_time_ns <= parent.end_time_ns


def test_trace_tags_set_and_delete(mlflow_client, experiment_id, version):
    tid, _, _ = _write_nested_trace(version)
    mlflow_client.set_trace_tag(tid, "reviewed", "yes ✓")
    mlflow_client.set_trace_tag(tid, "drop", "me")
    mlflow_client.delete_trace_tag(tid, "drop")
    tags = mlflow_client.get_trace(tid).info.tags
    assert tags.get("reviewed") == "yes ✓" and "drop" not in tags


def test_trace_links_to_its_run(mlflow_client, experiment_id, version):
    with mlflow.start_run(experiment_id=experiment_id) as run:
        inside, _, _ = _write_nested_trace(version)
    outside, _, _ = _write_nested_trace(version)
    info = mlflow_client.get_trace(inside).info
    assert info.request_metadata.get("mlflow.sourceRun") == run.info.run_id
    assert "mlflow.sourceRun" not in mlflow_client.get_trace(outside).info.request_metadata
    found = mlflow_client.search_traces([experiment_id],
                                        filter_string=f"attributes.run_id = '{run.info.run_id}'")
    assert [trace_id(t, version) for t in found] == [inside]


# ---------------------------------------------------------------- search and pages


def _write_traces(version, count: int, tag: str) -> list[str]:
    """`count` one-span traces tagged kind=<tag>, each a millisecond apart (distinct order)."""
    ids = []
    for i in range(count):
        with mlflow.start_span(name=f"t{i}", attributes={"i": i}) as span:
            tid = trace_id(span, version)
        mlflow.MlflowClient().set_trace_tag(tid, "kind", tag)
        ids.append(tid)
        time.sleep(0.003)
    return ids


def test_search_traces_filter_order_and_pages(mlflow_client, experiment_id, version):
    wanted = _write_traces(version, WRITTEN, "paged")
    _write_traces(version, 2, "other")

    def fetch(max_results, token, order="ASC"):
        return mlflow_client.search_traces([experiment_id], filter_string="tags.kind = 'paged'",
                                           max_results=max_results, page_token=token,
                                           order_by=[f"timestamp_ms {order}"])

    walk = walk_pages(fetch, PAGE)
    assert_walk(walk, wanted, lambda t: trace_id(t, version), what="search_traces ASC")
    walk = walk_pages(lambda n, t: fetch(n, t, "DESC"), PAGE)
    assert_walk(walk, wanted[::-1], lambda t: trace_id(t, version), what="search_traces DESC")
    expect_page_refusals(fetch, "max_results_search_traces", version)


def test_deleted_traces_are_gone(mlflow_client, experiment_id, version):
    kept = _write_traces(version, 2, "kept")
    doomed = _write_traces(version, 3, "doomed")
    deleted = mlflow_client.delete_traces(experiment_id, None, None, doomed)
    assert deleted == len(doomed), f"delete_traces deleted {deleted} of {len(doomed)}"
    found = mlflow_client.search_traces([experiment_id], max_results=50)
    assert sorted(trace_id(t, version) for t in found) == sorted(kept)
    expect_refusal(lambda: mlflow_client.get_trace(doomed[0]),
                   ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"))
