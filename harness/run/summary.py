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

ORDER = ("interrupted", "broken", "failed", "known-defect", "skipped", "passed")
LABELS = {"known-defect": "KNOWN DEFECT"}
REASON_CHARS = 160


@dataclass(frozen=True)
class CellLine:
    title: str
    status: str
    reason: str
    log: Path | None


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
        if cell.status == "passed":
            continue
        label = LABELS.get(cell.status, cell.status.upper())
        lines.append(f"  {label:<{width}}  {cell.title}: {one_line(cell.reason) or cell.status}")
        if cell.log is not None:
            lines.append(f"  {'':<{width}}  log: {shown(cell.log)}")
    if matrix_page is not None:
        lines.append(f"matrix: {shown(matrix_page)}")
    return lines
