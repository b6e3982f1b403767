"""`run --last-failed`: run again only the cells the previous run did not pass.

The previous run is the one `--reports-dir` shows (its run.json, read before this run archives
it). It recorded its selection (`selection` in run.json), so `run --last-failed` alone selects
what that run selected; flags given now replace the recorded ones. Of those cells, only the
ones that ended failed, broken or interrupted run again (whole cells: each is a fresh
deployment, so a failed test's neighbours run again with it).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.matrix import Cell
from harness.system.errors import ConfigError

# the flags a selection is made of, as argparse names them; recorded in run.json
SELECTION = ("matrix", "platform", "channel", "upgrade", "scenario", "mlflow_version",
             "tracking_uri", "s3_endpoint_url", "artifact_bucket", "artifact_mode",
             "kubeconfig", "controller")
NOT_PASSED = ("failed", "broken", "interrupted")


def selection_record(args: argparse.Namespace) -> dict[str, Any]:
    """The selection flags of this run, JSON-ready (paths as strings, unset ones left out)."""
    record: dict[str, Any] = {}
    for name in SELECTION:
        value = getattr(args, name, None)
        if value in (None, [], ()):
            continue
        record[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return record


@dataclass(frozen=True)
class LastFailed:
    run_id: str
    cells: frozenset[tuple[str, str]]  # (platform, cell id)

    def keep(self, cells: list[Cell]) -> list[Cell]:
        return [c for c in cells if (c.platform.name, c.id) in self.cells]


def last_failed(args: argparse.Namespace, read_run: Any) -> LastFailed:
    """The previous run's cells that did not pass; its selection fills the flags not given."""
    reports = Path(args.reports_dir).expanduser().resolve()
    previous = read_run(reports)
    if not previous or not previous.get("run_id"):
        raise ConfigError(f"--last-failed: {reports} holds no earlier run",
                          hint="pass the --reports-dir that run used")
    if previous.get("status") == "running":
        raise ConfigError(f"--last-failed: run {previous['run_id']} in {reports} has not ended",
                          hint="wait for it to end, then re-run what failed")
    _fill_selection(args, previous.get("selection") or {})
    failed = frozenset((str(c.get("platform")), str(c.get("cell")))
                       for c in previous.get("cells") or [] if c.get("status") in NOT_PASSED)
    return LastFailed(str(previous["run_id"]), failed)


def _fill_selection(args: argparse.Namespace, recorded: Mapping[str, Any]) -> None:
    if any(getattr(args, name, None) not in (None, [], ()) for name in SELECTION):
        return  # the user chose: their flags, not the recorded ones
    for name, value in recorded.items():
        if name not in SELECTION:
            continue
        if name in ("matrix", "kubeconfig"):
            value = Path(value)
        setattr(args, name, value)
