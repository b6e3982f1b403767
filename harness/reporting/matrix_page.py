"""The platform × cell summary: reports/matrix.json and matrix.md (HTML comes with reports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.matrix import Matrix

ICONS = {"passed": "✅", "failed": "❌", "broken": "💥", "skipped": "⏭️", "interrupted": "⏹️"}


def collect_cells(reports: Path) -> list[dict[str, Any]]:
    cells = []
    for path in sorted(reports.glob("*/*/cell.json")):
        try:
            cells.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return cells


def write_matrix_page(reports: Path, matrix: Matrix | None = None) -> list[Path]:
    cells = collect_cells(reports)
    for cell in cells:
        cell.pop("tests", None)
    out_json = reports / "matrix.json"
    out_json.write_text(json.dumps({"cells": cells}, indent=1), encoding="utf-8")
    lines = ["| platform | cell | MLflow | status | tests | time |", "|---|---|---|---|---|---|"]
    for c in cells:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(c.get("counts", {}).items()))
        lines.append(f"| {c['platform']} | {c['channel']} | {c['mlflow_version']} | "
                     f"{ICONS.get(c['status'], '')} {c['status']} | {counts} | "
                     f"{c['duration_s']:.0f}s |")
    out_md = reports / "matrix.md"
    out_md.write_text("# Charmed MLflow matrix\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return [out_json, out_md]
