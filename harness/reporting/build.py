"""`mlflow-matrix report` / `tox -e report`: enrich every cell, build Allure 3, write the matrix.

Order matters: the matrix page is written after the Allure report so that it knows whether its
links lead somewhere; it is written even when Allure cannot be built (then the error is raised
afterwards, so the exit code still says the report is incomplete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.matrix import Matrix
from harness.reporting.allure_report import build_allure_report, iter_cells
from harness.reporting.enrich import enrich_cell
from harness.reporting.matrix_page import write_matrix_page
from harness.system.errors import ConfigError, MatrixError


@dataclass
class ReportOutcome:
    paths: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cells: int = 0
    error: MatrixError | None = None


def build_reports(reports: Path, matrix: Matrix | None = None, *, allure: bool = True,
                  progress: Callable[[str], None] | None = None,
                  previous: Mapping[str, Any] | None = None) -> ReportOutcome:
    """`previous`: the previous report's matrix.json, to call out regressions (history.py)."""
    say = progress or (lambda text: None)
    if not reports.is_dir():
        raise ConfigError(f"no reports at {reports}", hint="run `tox -e matrix` first")
    outcome = ReportOutcome()
    t0 = time.monotonic()
    cells = list(iter_cells(reports))
    outcome.cells = len(cells)
    for cell_dir, _ in cells:
        enrich_cell(cell_dir, keep_executor=True)
    outcome.timings["enrich"] = time.monotonic() - t0
    if allure:
        t1 = time.monotonic()
        try:
            outcome.paths.append(build_allure_report(reports, cells, progress=say))
        except MatrixError as exc:
            outcome.error = exc
        outcome.timings["allure"] = time.monotonic() - t1
    t2 = time.monotonic()
    outcome.paths += write_matrix_page(reports, matrix, previous=previous)
    outcome.timings["matrix"] = time.monotonic() - t2
    outcome.timings["total"] = time.monotonic() - t0
    return outcome
