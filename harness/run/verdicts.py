"""Rules that turn what happened in a cell into its status: green only when every check ran.

Kept apart from the runner so the rules read in one place: a phase failing as its known defect
says, a server of another version than the channel promises, what a pytest exit code means, what
one pytest run executed (its JUnit file), and what a cell's results add up to: a skipped check
is never "passed", and a cell where no test ran is red.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.defects import Failure, Judgement, KnownDefect, judge
from harness.config.matrix import DETECT, Channel
from harness.config.statuses import (
    BROKEN,
    FAILED,
    KNOWN_DEFECT,
    NOT_APPLICABLE,
    PASSED,
    PASSED_WITH_SKIPS,
    SKIPPED,
    is_not_applicable,
    result_status,
    skip_reason,
)
from harness.system.endpoint import Endpoint
from harness.system.errors import InfrastructureError, MatrixError

OWN_SUITES = ("lifecycle", "harness")  # results the harness writes, not scenario tests
SHOWN = 3  # skips, failures and defects named in a one-line message
XFAIL = "pytest.xfail"


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
    judge another release under this one's name. An answer that is no version at all (an empty
    /version body) is never taken for one."""
    from packaging.version import InvalidVersion, Version

    try:
        Version(endpoint.mlflow_version)
    except InvalidVersion:
        shown = endpoint.mlflow_version[:60] or "an empty answer"
        raise InfrastructureError(
            f"{where}: the server's GET /version returned {shown!r}, which is not an MLflow "
            "version", hint="find why the server answers /version so (its log is in "
                            "diagnostics/)") from None
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


# ---------------------------------------------------------------- one pytest run


@dataclass(frozen=True)
class RunTally:
    """What one pytest child executed, from its JUnit file (written by the controller, also
    under pytest-xdist). pytest's exit code alone says 0 when every test was skipped."""

    tests: int
    executed: int  # bodies that ran: passed, failed, errored, xfailed (a known defect), xpassed
    skipped: int
    not_applicable: int

    @property
    def only_not_applicable(self) -> bool:
        return self.executed == 0 and self.not_applicable > 0 and \
            self.skipped == self.not_applicable


def read_junit(path: Path) -> RunTally | None:
    """None when the file is missing or unreadable (pytest died before writing it)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    tests = executed = skipped = not_applicable = 0
    for case in root.iter("testcase"):
        tests += 1
        skip = case.find("skipped")
        if skip is None or skip.get("type") == XFAIL:
            executed += 1
            continue
        skipped += 1
        if is_not_applicable(skip.get("message") or skip.text or ""):
            not_applicable += 1
    return RunTally(tests, executed, skipped, not_applicable)


def run_verdict(code: int, tally: RunTally | None, *, what: str, summary: str, log: str,
                selects: bool) -> PytestVerdict:
    """A pytest child's exit code and JUnit file → its verdict. Nothing executed is red (also
    with exit 0), unless every test was not applicable to the release, or the user's own
    selection (-k/-m) left this one of the cell's runs empty (the cell checks that something ran
    overall: `cell_verdict`)."""
    if code == 5 and selects:
        return PytestVerdict(PASSED, f"{what}: nothing selected here by the pytest arguments")
    if code == 0 and tally is not None and tally.executed == 0 and not tally.only_not_applicable:
        how = (f"all {tally.tests} test(s) skipped" if tally.tests else "nothing collected")
        return PytestVerdict(FAILED, f"{what}: no test ran ({how}); see {log}")
    return pytest_verdict(code, what, summary, log)


# ---------------------------------------------------------------- the whole cell


@dataclass
class CellVerdict:
    """A cell's results added up: what cell.json, the summary and the page show."""

    counts: dict[str, int] = field(default_factory=dict)
    executed: int = 0
    skips: list[dict[str, str]] = field(default_factory=list)            # unexpected
    not_applicable: list[dict[str, str]] = field(default_factory=list)
    failed_tests: list[dict[str, str]] = field(default_factory=list)
    known_defects: list[str] = field(default_factory=list)
    status: str | None = None      # worse than the cell's status so far, or None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"executed": self.executed, "skips": self.skips,
                "not_applicable": self.not_applicable, "failed_tests": self.failed_tests,
                "known_defects": self.known_defects}


def cell_verdict(results: Iterable[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]],
                 status: str, *, strict: bool, ran_scenarios: bool) -> CellVerdict:
    """`results`: the cell's Allure results (read_statuses); `phases`: its lifecycle phases
    (name, status, message, known); `status`: the cell's status so far.

    - a known defect that reproduced makes a green cell *known defect*;
    - a scenario skipped for another reason than "not applicable", or a phase skipped (a check
      the platform cannot run), makes a green cell *passed with skips*, or *failed* in strict
      mode; the skips are listed with their reasons;
    - a cell whose scenarios ran but executed no test at all is *failed*.
    """
    verdict = CellVerdict()
    counts: Counter[str] = Counter()
    for result in results:
        shown = result_status(result)
        if result.get("suite") in OWN_SUITES:
            continue
        counts[f"informational-{shown}" if result.get("informational") else shown] += 1
        if result.get("informational"):
            continue
        name = str(result.get("name", ""))
        if shown == SKIPPED:
            verdict.skips.append({"test": name, "reason": skip_reason(result.get("message"))})
        elif shown == NOT_APPLICABLE:
            verdict.not_applicable.append({"test": name,
                                           "reason": skip_reason(result.get("message"))})
        elif shown in (FAILED, BROKEN):
            verdict.failed_tests.append({"test": name, "status": shown,
                                         "message": _first(result.get("message"))})
        if shown in (PASSED, FAILED, BROKEN, KNOWN_DEFECT):
            verdict.executed += 1
        if shown == KNOWN_DEFECT and result.get("defect"):
            verdict.known_defects.append(str(result["defect"]))
    for phase in phases:
        if phase.get("known"):
            verdict.known_defects.append(str(phase["known"]))
        elif phase.get("status") == SKIPPED and status in (PASSED, KNOWN_DEFECT):
            verdict.skips.append({"test": f"{phase.get('name')} phase",
                                  "reason": _first(phase.get("message"))})
    verdict.counts = dict(counts)
    verdict.known_defects = sorted(set(verdict.known_defects))
    if status not in (PASSED, KNOWN_DEFECT):
        return verdict
    if ran_scenarios and verdict.executed == 0:
        none = sum(v for k, v in counts.items() if not k.startswith("informational-"))
        verdict.status = FAILED
        verdict.message = (f"no test ran ({none} result(s), none executed: "
                           f"{_tally_text(counts)})" if none else "no test ran")
        return verdict
    if verdict.skips and strict:
        verdict.status = FAILED
        verdict.message = (f"{len(verdict.skips)} check(s) skipped, which --strict (CI) does "
                           f"not allow: {_skips_text(verdict.skips)}")
    elif verdict.known_defects and status == PASSED:
        verdict.status = KNOWN_DEFECT
        verdict.message = "known defects reproduced: " + ", ".join(verdict.known_defects)
    elif verdict.skips and status == PASSED:
        verdict.status = PASSED_WITH_SKIPS
        verdict.message = f"{len(verdict.skips)} skipped: {_skips_text(verdict.skips)}"
    return verdict


def _first(text: Any) -> str:
    return next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")[:300]


def _skips_text(skips: Sequence[Mapping[str, str]]) -> str:
    shown = "; ".join(f"{s['test']} ({s['reason'] or 'no reason given'})" for s in skips[:SHOWN])
    return shown + (f"; +{len(skips) - SHOWN} more" if len(skips) > SHOWN else "")


def _tally_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {k.replace('-', ' ')}" for k, n in sorted(counts.items()))
