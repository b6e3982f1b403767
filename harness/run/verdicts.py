"""Rules that turn what happened in a cell into its status: green only when every check ran.

Kept apart from the runner so the rules read in one place: a phase failing as its known defect
says, a server of another version than the channel promises, what a pytest exit code means.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.defects import Failure, Judgement, KnownDefect, judge
from harness.config.matrix import DETECT, Channel
from harness.system.endpoint import Endpoint
from harness.system.errors import InfrastructureError, MatrixError

KNOWN_DEFECT = "known-defect"


@dataclass(frozen=True)
class PytestVerdict:
    status: str    # passed | failed | broken
    message: str


def judge_phase(defects: list[KnownDefect], phase: str, exc: MatrixError | None) -> Judgement:
    """A phase some known defect says fails ended with `exc` (None: it passed)."""
    failure = None if exc is None else Failure.of(exc, exc.render())
    return judge(defects, failure, f"the {phase} phase")


def check_server_version(endpoint: Endpoint, channel: Channel, where: str) -> Endpoint:
    """The deployed server must run the MLflow the channel ships; otherwise the cell would
    judge another release under this one's name."""
    expected = channel.mlflow_version
    if expected != DETECT and endpoint.mlflow_version != expected:
        raise InfrastructureError(
            f"{where}: the server reports MLflow {endpoint.mlflow_version}, but {channel.name} "
            f"ships MLflow {expected} (matrix.yaml channels.{channel.name}.mlflow)",
            hint="fix the channel's `mlflow:` in matrix.yaml, or find why the deployment runs "
                 "another release")
    return endpoint


def pytest_verdict(code: int, what: str, summary: str, log: str) -> PytestVerdict:
    """pytest's exit code: 0 all ran and held; 5 nothing ran, which is never green."""
    if code == 0:
        return PytestVerdict("passed", "")
    if code == 1:
        return PytestVerdict("failed", f"{what}: {summary}")
    if code == 5:
        return PytestVerdict("failed", f"{what}: no test ran (pytest exit 5); see {log}")
    return PytestVerdict("broken", f"{what}: pytest exited {code}; see {log}")
