"""reports/ shows one run: the latest. Earlier runs move to reports/runs/<run-id>/ whole.

A run starts by moving what the previous run wrote (cell folders, matrix page, Allure report,
run.json) into reports/runs/<its run id>/, so nothing of an earlier run is mixed into the new
page and nothing is lost. Only what the harness wrote moves: a folder is a platform folder when
it holds cell folders (`<cell>/cell.json` or `<cell>/allure-results/`). reports/state/ stays
where `down` and `janitor` look for it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.system.errors import ConfigError

RUN_FILE = "run.json"
RUNS_DIR = "runs"
INDEX = "index.md"
KEEP = {RUNS_DIR, "state", "README.md"}
RUN_FILES = ("matrix.json", "matrix.md", "matrix.html", "allure-report", RUN_FILE,
             "harness-error.log")


def read_run(reports: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((reports / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _platform_dirs(reports: Path) -> list[Path]:
    dirs = []
    for path in sorted(reports.iterdir()) if reports.is_dir() else []:
        if path.name in KEEP or path.name.startswith(".") or not path.is_dir():
            continue
        if any((c / "cell.json").is_file() or (c / "allure-results").is_dir()
               for c in path.iterdir() if c.is_dir()):
            dirs.append(path)
    return dirs


def _previous_id(reports: Path, platform_dirs: Iterable[Path]) -> str:
    run = read_run(reports)
    if run and run.get("run_id"):
        return str(run["run_id"])
    newest: tuple[float, str] = (0.0, "")
    for platform in platform_dirs:
        for cell in platform.glob("*/cell.json"):
            try:
                data = json.loads(cell.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            started = float(data.get("started") or 0)
            if data.get("run_id") and started >= newest[0]:
                newest = (started, str(data["run_id"]))
    if newest[1]:
        return newest[1]
    return "before-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def start_run(reports: Path, run_id: str,
              progress: Callable[[str], None] | None = None) -> Path | None:
    """Archive the previous run, then mark reports/ as this run's. Returns the archive folder."""
    say = progress or (lambda text: None)
    previous = read_run(reports)
    if previous and previous.get("status") == "running" and previous.get("pid") \
            and int(previous["pid"]) != os.getpid() and _alive(int(previous["pid"])):
        raise ConfigError(f"run {previous.get('run_id')} (pid {previous['pid']}) is still writing "
                          f"to {reports}",
                          hint="wait for it, or give this run its own --reports-dir DIR")
    platform_dirs = _platform_dirs(reports)
    moving = platform_dirs + [reports / n for n in RUN_FILES if (reports / n).exists()]
    archive = None
    if moving:
        base = reports / RUNS_DIR / _previous_id(reports, platform_dirs)
        archive, n = base, 1
        while archive.exists():
            n += 1
            archive = base.with_name(f"{base.name}-{n}")
        archive.mkdir(parents=True)
        for path in moving:
            shutil.move(str(path), str(archive / path.name))
        say(f"previous run moved to {archive}")
    _write_run(reports, {"run_id": run_id, "status": "running", "pid": os.getpid(),
                         "started": time.time(), "cells": []})
    write_index(reports)
    return archive


def finish_run(reports: Path, run_id: str, *, interrupted: bool,
               cells: Iterable[Mapping[str, Any]]) -> None:
    body = read_run(reports) or {}
    if body.get("run_id") not in (None, run_id):
        body = {}
    body.update({"run_id": run_id, "status": "interrupted" if interrupted else "finished",
                 "interrupted": interrupted, "finished": time.time(), "cells": list(cells)})
    body.setdefault("pid", os.getpid())
    _write_run(reports, body)


def _write_run(reports: Path, body: Mapping[str, Any]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    tmp = reports / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    os.replace(tmp, reports / RUN_FILE)


def earlier_runs(reports: Path) -> list[dict[str, Any]]:
    """Archived runs, newest first: id, status, cell statuses and the page to open."""
    runs = []
    root = reports / RUNS_DIR
    for folder in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        run = read_run(folder) or {}
        statuses: dict[str, int] = {}
        for cell in run.get("cells") or []:
            status = str(cell.get("status", "?"))
            statuses[status] = statuses.get(status, 0) + 1
        page = next((f"{RUNS_DIR}/{folder.name}/matrix.{ext}" for ext in ("html", "md")
                     if (folder / f"matrix.{ext}").is_file()), None)
        runs.append({"run_id": folder.name, "status": run.get("status", "unknown"),
                     "cells": statuses, "page": page,
                     "finished": run.get("finished") or run.get("started")})
    return runs


def write_index(reports: Path) -> Path | None:
    """reports/runs/index.md: every earlier run with its page."""
    runs = earlier_runs(reports)
    if not runs:
        return None
    lines = ["# Earlier runs", "", "Newest first. The latest run is `../matrix.html`.", "",
             "| run | status | cells | page |", "|---|---|---|---|"]
    for run in runs:
        cells = ", ".join(f"{n} {s}" for s, n in sorted(run["cells"].items())) or "—"
        page = f"[{run['page'].split('/')[-1]}]({run['page'].split('/', 1)[1]})" \
            if run["page"] else "—"
        lines.append(f"| {run['run_id']} | {run['status']} | {cells} | {page} |")
    path = reports / RUNS_DIR / INDEX
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
