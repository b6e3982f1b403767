"""What a cell's phases share with the steps that run them (harness/run/guided.py)."""

from __future__ import annotations

from pathlib import Path

from provisioners.api import Deployment


class PhaseFailed(Exception):
    """A lifecycle phase failed and was recorded; the cell stops here (unless a guide's remedy
    answers it)."""


def collect_to(deployment: Deployment, cell_dir: Path) -> list[Path]:
    """The deployment's diagnostics now, for the result of the phase that failed."""
    target = cell_dir / "diagnostics"
    try:
        deployment.collect(target)
    except Exception:
        return []
    return sorted(p for p in target.rglob("*") if p.is_file())
