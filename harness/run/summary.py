"""The closing summary of a run: what a user reads after a red run, as pytest's short summary.

Every cell that is not plain passed gets one line with its status and the reason, and one with
the file to open next (the log of the step that failed, else the cell's diagnostics).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.statuses import partial_text

ORDER = ("interrupted", "broken", "failed", "known-defect", "passed-with-skips", "skipped",
         "passed")
LABELS = {"known-defect": "KNOWN DEFECT", "passed-with-skips": "PASSED WITH SKIPS"}
REASON_CHARS = 160
NAMED = 3  # failed tests, defects and skips named per cell; the rest are counted


@dataclass(frozen=True)
class CellLine:
    title: str
    status: str
    reason: str
    log: Path | None
    details: tuple[str, ...] = ()  # what failed, which defects, which skips (cell_details)
    partial: str = ""              # "partial: N of M tests selected (-k x)"


def cell_details(cell: dict[str, Any]) -> tuple[str, ...]:
    """From a cell.json: the tests that failed, the known defects that reproduced and the
    checks that were skipped, named, so a red or partial verdict needs no second click."""
    lines = []
    failed = cell.get("failed_tests") or []
    for test in failed[:NAMED]:
        lines.append(f"failed: {test.get('test')}"
                     + (f" — {one_line(str(test.get('message') or ''))}" if test.get("message")
                        else ""))
    if len(failed) > NAMED:
        lines.append(f"failed: +{len(failed) - NAMED} more")
    defects = cell.get("known_defects") or []
    if defects:
        lines.append("known defects: " + ", ".join(defects))
    skips = cell.get("skips") or []
    for skip in skips[:NAMED]:
        lines.append(f"skipped: {skip.get('test')} — {one_line(str(skip.get('reason') or ''))}")
    if len(skips) > NAMED:
        lines.append(f"skipped: +{len(skips) - NAMED} more (cell.json, matrix page)")
    return tuple(lines)


def shown(path: Path) -> str:
    """Relative to the current directory when inside it: short and clickable in a terminal."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def one_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.removeprefix("error: ")
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 1] + "…"


def log_for(cell_dir: Path, given: Path | None) -> Path | None:
    for candidate in (given, cell_dir / "diagnostics", cell_dir / "cell.json"):
        if candidate is not None and candidate.exists():
            return candidate
    return None


def cell_line(title: str, status: str, reason: str, cell_dir: Path,
              log: Path | None) -> CellLine:
    """A cell's summary line, with the details its cell.json holds (when it was written)."""
    import json

    try:
        cell = json.loads((cell_dir / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cell = {}
    cell = cell if isinstance(cell, dict) else {}
    return CellLine(title, status, reason, log_for(cell_dir, log), cell_details(cell),
                    partial_text(cell))


def render(cells: Iterable[CellLine], *, run_id: str, duration_s: float,
           matrix_page: Path | None) -> list[str]:
    cells = sorted(cells, key=lambda c: (ORDER.index(c.status) if c.status in ORDER
                                         else 0, c.title))
    tally = Counter(c.status for c in cells)
    counts = ", ".join(f"{tally[s]} {s.replace('-', ' ')}" for s in ORDER if tally[s])
    minutes, seconds = divmod(round(duration_s), 60)
    lines = [f"summary of run {run_id}: {counts or 'no cells'} "
             f"({len(cells)} cell(s) in {minutes}m {seconds:02d}s)"]
    width = max((len(LABELS.get(c.status, c.status.upper())) for c in cells), default=6)
    for cell in cells:
        if cell.status == "passed" and not cell.partial:
            continue
        label = LABELS.get(cell.status, cell.status.upper())
        reason = one_line(cell.reason) or cell.status.replace("-", " ")
        if cell.partial:
            reason = f"{cell.partial}; {reason}" if cell.status != "passed" else cell.partial
        lines.append(f"  {label:<{width}}  {cell.title}: {reason}")
        for detail in cell.details:
            lines.append(f"  {'':<{width}}  {detail}")
        if cell.log is not None and cell.status != "passed":
            lines.append(f"  {'':<{width}}  log: {shown(cell.log)}")
    if matrix_page is not None:
        lines.append(f"matrix: {shown(matrix_page)}")
    return lines
