"""Last night against tonight: what the previous published report said, and what got worse.

The previous report is a folder (a download of the published site, or any earlier `reports/`)
holding `matrix.json` and `allure-history.jsonl`. Its Allure history is carried over so that
Allure's trends and per-test history span nights; its matrix.json is compared with tonight's
model to find regressions, which the matrix page calls out at the top.

A regression is something that held before and does not now: a cell, lifecycle phase or test
that was green (passed, or failed only as its recorded known defect) and is now failed, broken
or interrupted. A cell that was green and is missing tonight is listed too (its job may have
died before uploading anything); skipped and not-run are neither green nor red.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.reporting.allure_report import HISTORY_FILE
from harness.system.errors import ConfigError

MATRIX_JSON = "matrix.json"
GREEN = frozenset({"passed", "passed-with-skips", "not-applicable", "known-defect"})
RED = frozenset({"failed", "broken", "interrupted"})
TESTS_SHOWN = 20  # per cell on the page; the rest are counted


@dataclass(frozen=True)
class PreviousReport:
    folder: Path
    model: Mapping[str, Any] | None   # its matrix.json, when it has one
    history_lines: int                # Allure history entries carried over


def import_previous(previous: Path, reports: Path) -> PreviousReport:
    """Read the previous report and carry its Allure history into `reports`."""
    if not previous.is_dir():
        raise ConfigError(f"--previous {previous}: no such folder",
                          hint="pass the folder of the previous report (its matrix.json and "
                               f"{HISTORY_FILE}), e.g. a download of the published site")
    model = None
    matrix_json = previous / MATRIX_JSON
    if matrix_json.is_file():
        try:
            loaded = json.loads(matrix_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{matrix_json} is not readable JSON: {exc}",
                              hint="download the previous report again, or leave out --previous"
                              ) from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("cells"), list):
            raise ConfigError(f"{matrix_json} is not a matrix page's matrix.json",
                              hint="point --previous at a folder `mlflow-matrix report` wrote")
        model = loaded
    lines = 0
    history = previous / HISTORY_FILE
    if history.is_file():
        target = reports / HISTORY_FILE
        if history.resolve() != target.resolve():
            shutil.copyfile(history, target)
        lines = sum(1 for ln in target.read_text(encoding="utf-8").splitlines() if ln.strip())
    if model is None and not lines:
        raise ConfigError(f"{previous} holds neither {MATRIX_JSON} nor {HISTORY_FILE}",
                          hint="point --previous at the folder of a published report")
    return PreviousReport(previous, model, lines)


def _tests(column: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """A cell's results keyed by (fullName, name): parametrized cases share a fullName."""
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for suite, entry in (column.get("suites") or {}).items():
        for test in entry.get("tests", []):
            if test.get("informational"):
                continue
            key = (str(test.get("fullName") or suite), str(test.get("name", "")))
            out[key] = test
    return out


def find_regressions(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Cells (and within them tests) green in `previous` and red or missing in `current`."""
    now = {c["column"]: c for c in current.get("cells", [])}
    regressed: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for before in previous.get("cells", []):
        column = str(before.get("column", ""))
        was = str(before.get("display_status", ""))
        after = now.get(column)
        if after is None:
            if was in GREEN:
                missing.append({"column": column, "platform": before.get("platform", ""),
                                "channel": before.get("channel", ""), "was": was})
            continue
        is_ = str(after.get("display_status", ""))
        old_tests, new_tests = _tests(before), _tests(after)
        tests = []
        for key, old in old_tests.items():
            new = new_tests.get(key)
            if new is None or old.get("display_status") not in GREEN \
                    or new.get("display_status") not in RED:
                continue
            tests.append({"name": str(new.get("name") or key[1]), "fullName": key[0],
                          "was": old.get("display_status"), "now": new.get("display_status"),
                          "message": new.get("message", ""), "link": new.get("link")})
        if (was in GREEN and is_ in RED) or tests:
            regressed.append({
                "column": column, "platform": after.get("platform", ""),
                "channel": after.get("channel", ""), "was": was, "now": is_,
                "message": after.get("message", ""), "link": after.get("link"),
                "tests": tests[:TESTS_SHOWN], "tests_total": len(tests),
            })
    return {
        "previous_generated": previous.get("generated", ""),
        "previous_run_ids": list(previous.get("run_ids", [])),
        "cells": regressed,
        "missing": missing,
    }


def _label(status: str) -> str:
    return status.replace("-", " ")  # as the page's labels: "known defect", "not run"


def regression_lines(regressions: Mapping[str, Any] | None) -> Sequence[str]:
    """One line per regressed or missing cell, for the Markdown summary and the console."""
    if not regressions:
        return []
    lines = []
    for cell in regressions.get("cells", []):
        tests = ", ".join(t["name"] for t in cell["tests"][:5])
        more = cell["tests_total"] - min(5, len(cell["tests"]))
        lines.append(f"{cell['platform']} · {cell['channel']}: {_label(cell['was'])} → "
                     f"{_label(cell['now'])}"
                     + (f" ({cell['tests_total']} test(s): {tests}" + (f", +{more} more" if more > 0
                                                                       else "") + ")"
                        if cell["tests_total"] else ""))
    for cell in regressions.get("missing", []):
        lines.append(f"{cell['platform']} · {cell['channel']}: {_label(cell['was'])} → missing "
                     "(no result tonight)")
    return lines
