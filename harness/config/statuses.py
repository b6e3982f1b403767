"""The statuses a reviewer reads, named in one place for the verdicts, the summary and the page.

A *test* ends passed, failed, broken, known defect (its failure matched a matrix.yaml signature),
not applicable (the release lacks what it checks: `scenarios._rules.not_applicable`, a skip whose
reason starts "not applicable:"), or skipped (any other skip: a check that did not run). A *cell*
adds passed with skips (everything that ran held, but some checks did not run), skipped (the cell
could not run here) and interrupted.

Used inside the cells' virtualenvs too (standard library only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PASSED = "passed"
PASSED_WITH_SKIPS = "passed-with-skips"
NOT_APPLICABLE = "not-applicable"
KNOWN_DEFECT = "known-defect"
SKIPPED = "skipped"
FAILED = "failed"
BROKEN = "broken"
INTERRUPTED = "interrupted"
NOT_RUN = "not-run"

NOT_APPLICABLE_PREFIX = "not applicable:"
# how a cell's status only ever gets worse while it runs
CELL_ORDER = (PASSED, SKIPPED, PASSED_WITH_SKIPS, KNOWN_DEFECT, FAILED, BROKEN, INTERRUPTED)
LABELS = {PASSED: "passed", PASSED_WITH_SKIPS: "passed with skips",
          NOT_APPLICABLE: "not applicable", KNOWN_DEFECT: "known defect", SKIPPED: "skipped",
          FAILED: "failed", BROKEN: "broken", INTERRUPTED: "interrupted", NOT_RUN: "not run"}


def is_not_applicable(reason: str | None) -> bool:
    """A skip reason as pytest, JUnit or allure-pytest show it ("Skipped: not applicable: …",
    or with a file:line in front) that `not_applicable()` raised."""
    first = next((ln.strip() for ln in (reason or "").splitlines() if ln.strip()), "")
    first = first.removeprefix("Skipped:").strip()
    return first.startswith(NOT_APPLICABLE_PREFIX) or f": {NOT_APPLICABLE_PREFIX}" in first


def skip_reason(message: str | None) -> str:
    """The reason of a skip, without pytest's "Skipped: " and "not applicable: " prefixes."""
    first = next((ln.strip() for ln in (message or "").splitlines() if ln.strip()), "")
    first = first.removeprefix("Skipped:").strip()
    if NOT_APPLICABLE_PREFIX in first:
        first = first.split(NOT_APPLICABLE_PREFIX, 1)[1].strip()
    return first


def result_status(result: Mapping[str, Any]) -> str:
    """One Allure result (as `read_statuses` gives it) → the status a reviewer reads."""
    status = str(result.get("status", "unknown"))
    if result.get("known") and status in (SKIPPED, FAILED):
        return KNOWN_DEFECT
    if status == SKIPPED and is_not_applicable(str(result.get("message") or "")):
        return NOT_APPLICABLE
    return status


def partial_text(cell: Mapping[str, Any]) -> str:
    """"partial: N of M tests selected (-k x)" for a cell whose run selected a subset."""
    part = cell.get("partial") or {}
    if not part:
        return ""
    how = " ".join(part.get("by") or [])
    return (f"partial: {part.get('selected', '?')} of {part.get('total', '?')} "
            f"{part.get('unit') or 'tests'} selected"
            + (f" ({how})" if how else ""))


def worse(current: str, candidate: str) -> bool:
    return CELL_ORDER.index(candidate) > CELL_ORDER.index(current)
