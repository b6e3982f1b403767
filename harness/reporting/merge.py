"""`mlflow-matrix report --merge DIR… [--previous DIR]`: one report from many jobs or machines.

Each input is a reports directory a run left (`<platform>/<cell>/cell.json` + allure-results,
diagnostics and logs). Their cell folders are copied side by side into --reports-dir, which then
gets the ordinary report: Allure 3 with one environment per platform, and one matrix page with
every cell. With --previous, the previous published report's Allure history is carried over
(trends span nights) and its matrix.json is compared with tonight's (regressions on top).

The output holds only what was merged: cell folders from an earlier merge are replaced, and a
directory holding a run's own results is never written over (pass it as an input instead).
Inputs are read, never changed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.matrix import Matrix
from harness.reporting.allure_report import iter_cells
from harness.reporting.build import ReportOutcome, build_reports
from harness.reporting.history import import_previous, regression_lines
from harness.system.errors import ConfigError

MARKER = "merged.json"      # written into the output: what was merged from where
COPIED_RUN_DIRS = ("runs",)  # run summaries; state files stay with the machine that owns them


@dataclass(frozen=True)
class MergedCell:
    platform: str
    cell: str
    source: Path
    finished: float


def _finished(cell: dict[str, Any]) -> float:
    return float(cell.get("started") or 0) + float(cell.get("duration_s") or 0)


def _inputs(inputs: Sequence[Path], out: Path,
            ) -> list[tuple[Path, list[tuple[Path, dict[str, Any]]]]]:
    found = []
    for folder in inputs:
        folder = folder.resolve()
        if not folder.is_dir():
            raise ConfigError(f"--merge {folder}: no such folder",
                              hint="pass reports directories, e.g. the downloaded artifacts of "
                                   "each job (reports-<platform>/)")
        if folder == out:
            raise ConfigError(f"--merge {folder} is also the output (--reports-dir)",
                              hint="write the merged report to a folder of its own, e.g. "
                                   "--reports-dir merged")
        cells = list(iter_cells(folder))
        if not cells:
            raise ConfigError(f"--merge {folder}: no cell results (<platform>/<cell>/cell.json)",
                              hint="pass the folder a run wrote with --reports-dir; a job that "
                                   "died before any cell finished leaves none")
        found.append((folder, cells))
    return found


def _check_output(out: Path) -> None:
    """Refuse to write over a run's own results: only an empty folder or an earlier merge."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--reports-dir {out} is a file", hint="name a folder for the merge")
    if (out / MARKER).is_file():
        return
    if any(True for _ in iter_cells(out)):
        raise ConfigError(f"--reports-dir {out} holds a run's own results",
                          hint="merge into an empty folder (e.g. --reports-dir merged) and pass "
                               f"{out} as one of the --merge inputs")


def _clear_cells(out: Path) -> None:
    for cell_dir, _ in list(iter_cells(out)):
        shutil.rmtree(cell_dir)
        if cell_dir.parent.is_dir() and not any(cell_dir.parent.iterdir()):
            cell_dir.parent.rmdir()
    for name in ("allure-report", ".allure", *COPIED_RUN_DIRS):
        shutil.rmtree(out / name, ignore_errors=True)


def merge_reports(out: Path, inputs: Sequence[Path],
                  say: Callable[[str], None] = print) -> list[MergedCell]:
    """Copy every input's cells into `out`; a cell in two inputs: the one that finished last."""
    out = out.resolve()
    found = _inputs(inputs, out)
    _check_output(out)
    chosen: dict[tuple[str, str], MergedCell] = {}
    for folder, cells in found:
        for cell_dir, cell in cells:
            key = (cell_dir.parent.name, cell_dir.name)
            candidate = MergedCell(key[0], key[1], cell_dir, _finished(cell))
            earlier = chosen.get(key)
            if earlier is not None:
                keep = max(earlier, candidate, key=lambda c: c.finished)
                say(f"merge: {key[0]}/{key[1]} is in {earlier.source.parent.parent} and "
                    f"{folder}; keeping the one that finished last ({keep.source})")
                candidate = keep
            chosen[key] = candidate
    out.mkdir(parents=True, exist_ok=True)
    _clear_cells(out)
    for merged in chosen.values():
        shutil.copytree(merged.source, out / merged.platform / merged.cell, symlinks=True)
    for folder, _ in found:  # run summaries only: never whole earlier runs kept beside them
        for name in COPIED_RUN_DIRS:
            for summary in sorted((folder / name).glob("*.json")):
                (out / name).mkdir(exist_ok=True)
                shutil.copyfile(summary, out / name / summary.name)
    (out / MARKER).write_text(json.dumps({
        "merged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": [str(folder) for folder, _ in found],
        "cells": [{"platform": m.platform, "cell": m.cell, "from": str(m.source)}
                  for m in chosen.values()],
    }, indent=1), encoding="utf-8")
    say(f"merge: {len(chosen)} cell(s) from {len(found)} folder(s) → {out}")
    return list(chosen.values())


def merge_and_build(out: Path, inputs: Iterable[Path], *, previous: Path | None = None,
                    matrix: Matrix | None = None,
                    progress: Callable[[str], None] | None = None) -> ReportOutcome:
    """Merge (when inputs are given), carry the previous report over, build every report."""
    say = progress or (lambda text: None)
    out = out.resolve()
    inputs = list(inputs)
    t0 = time.monotonic()
    if inputs:
        merge_reports(out, inputs, say)
    elif not out.is_dir():
        raise ConfigError(f"no reports at {out}", hint="run `tox -e matrix` first, or pass --merge")
    merged_s = time.monotonic() - t0
    before = None
    if previous is not None:
        carried = import_previous(previous.resolve(), out)
        before = carried.model
        say(f"previous report {previous}: {carried.history_lines} Allure history entr"
            f"{'y' if carried.history_lines == 1 else 'ies'} carried over"
            + ("" if before else "; no matrix.json, so no regression check"))
    outcome = build_reports(out, matrix, progress=say, previous=before)
    outcome.timings = {"merge": merged_s, **outcome.timings,
                       "total": time.monotonic() - t0}
    if before is not None:
        regressions = json.loads((out / "matrix.json").read_text(encoding="utf-8")).get(
            "regressions") or {}
        lines = regression_lines(regressions)
        say(f"regressions since the previous report: {len(lines) or 'none'}")
        for line in lines:
            say(f"  {line}")
    return outcome
