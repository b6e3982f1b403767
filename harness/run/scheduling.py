"""How a run uses the machine: which cell starts first, how many at once, how many pytest-xdist
workers each cell's client gets, and MLflow envs built ahead of the cells that need them.

Cells are independent, so the matrix ends when its longest cell ends: starting the longest first
(an estimate from the previous run's cell.json, or from the cell's shape) keeps a long cell from
starting last. Parallelism and workers are derived from cores and memory so a 2-core laptop and a
16-core CI runner both get a sensible default without flags.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.config.matrix import DETECT, Cell, Channel

GIB = 1024 ** 3
# Resident memory of one cell (server tree + S3 + SQL store + pytest workers), measured on the
# local platforms: an MLflow 3 server starts uvicorn workers and a job runner (~2 GiB with its
# client workers); a 2.x gunicorn tree about half that.
CELL_MEMORY = {2: 1 * GIB, 3: 2 * GIB}
MEMORY_RESERVE = 2 * GIB
# Workers `mlflow server` starts when the charm passes no --workers (2.x gunicorn, 3.x uvicorn).
SERVER_WORKERS = 4
MAX_WORKERS = 4
# MLflow serves with uvicorn from 3.3.0 and, with more than one worker, uvicorn leaves Nagle's
# algorithm on (its listener is bound with proto 0, so asyncio never sets TCP_NODELAY:
# https://github.com/Kludex/uvicorn/issues/3149). Every keep-alive request then waits ~40 ms
# for the client's delayed ACK: such a cell's client mostly waits, so it gets more workers.
UVICORN_SINCE = "3.3.0"
# Relative cost of a cell when no earlier run measured it (seconds on a quiet 2-core machine).
SUITE_SECONDS = {"tracking": 25.0, "artifacts": 15.0, "registry": 20.0, "persistence": 25.0,
                 "upgrade": 30.0}
DEPLOY_SECONDS = 15.0
MLFLOW3_FACTOR = 1.5
MYSQL_FACTOR = 1.2


@dataclass(frozen=True)
class Machine:
    cores: int
    memory: int  # bytes available to new processes

    @classmethod
    def here(cls) -> Machine:
        return cls(cores=_cores(), memory=_available_memory())


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * GIB


def major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 3


def cell_memory(cell: Cell) -> int:
    versions = [cell.channel.mlflow_version] + (
        [cell.upgrade_to.mlflow_version] if cell.upgrade_to else [])
    return max(CELL_MEMORY.get(major(v), CELL_MEMORY[3]) for v in versions)


def default_parallel(cells: Sequence[Cell], machine: Machine) -> int:
    """Cells at once: one per core (a cell's client and server share it), capped by memory."""
    if not cells:
        return 1
    per_cell = max(cell_memory(c) for c in cells)
    by_memory = max(1, (machine.memory - MEMORY_RESERVE) // per_cell)
    return int(max(1, min(len(cells), machine.cores, by_memory)))


def default_workers(parallel: int, machine: Machine) -> int:
    """pytest-xdist workers per cell: the cores left to each cell, at least 2 (a client waits on
    the server most of the time), never more than the server's own workers."""
    per_cell = math.ceil(2 * machine.cores / max(1, parallel))
    return max(2, min(MAX_WORKERS, SERVER_WORKERS, per_cell))


def answers_late(cell: Cell) -> bool:
    """True when the server of the cell's main run is multi-worker uvicorn (UVICORN_SINCE)."""
    from packaging.version import InvalidVersion, Version

    version = cell.channel.mlflow_version
    if cell.upgrade_to or version == DETECT:
        return False
    try:
        return Version(version) >= Version(UVICORN_SINCE)
    except InvalidVersion:
        return False


@dataclass(frozen=True)
class Sizing:
    """Cells at once and pytest-xdist workers per cell; `late_workers` for cells whose server
    answers late (answers_late), where the client waits rather than computes."""

    parallel: int
    workers: int
    late_workers: int

    def workers_for(self, cell: Cell) -> int:
        return self.late_workers if answers_late(cell) else self.workers

    def describe(self) -> str:
        if self.late_workers == self.workers:
            return f"{self.workers} pytest-xdist worker(s) per cell"
        return (f"{self.workers} pytest-xdist worker(s) per cell, {self.late_workers} against "
                f"MLflow >= {UVICORN_SINCE} (multi-worker uvicorn answers keep-alive requests "
                "~40 ms late)")


# ---------------------------------------------------------------- longest first


def previous_durations(reports_dir: Path) -> dict[tuple[str, str], float]:
    """(platform, cell id) → seconds, from the cell.json files an earlier run left behind."""
    found: dict[tuple[str, str], float] = {}
    if not reports_dir.is_dir():
        return found
    for path in reports_dir.glob("*/*/cell.json"):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            seconds = float(body.get("duration_s") or 0)
            if seconds > 0 and body.get("status") not in ("skipped", "interrupted"):
                found[(str(body["platform"]), str(body["cell"]))] = seconds
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def estimate(cell: Cell) -> float:
    """Seconds a cell takes, from its shape: suites, MLflow major, database, upgrade."""
    seconds = DEPLOY_SECONDS + sum(SUITE_SECONDS.get(s, 20.0) for s in cell.scenarios)
    versions = [cell.channel] + ([cell.upgrade_to] if cell.upgrade_to else [])
    if any(v.mlflow_version != DETECT and major(v.mlflow_version) >= 3 for v in versions):
        seconds *= MLFLOW3_FACTOR
    if cell.upgrade_to:
        seconds += DEPLOY_SECONDS
    if cell.platform.database == "mysql":
        seconds *= MYSQL_FACTOR
    return seconds


def longest_first(cells: Iterable[Cell],
                  history: Mapping[tuple[str, str], float] | None = None) -> list[Cell]:
    """Cells ordered by expected duration, longest first; measured durations win over guesses.

    Guesses are scaled to the measured cells so one run's figures and the formula mix sensibly.
    """
    cells = list(cells)
    history = history or {}
    measured = {id(c): history[(c.platform.name, c.id)] for c in cells
                if (c.platform.name, c.id) in history}
    guessed = {id(c): estimate(c) for c in cells}
    scale = 1.0
    if measured:
        scale = (sum(measured.values())
                 / sum(guessed[k] for k in measured)) if any(guessed[k] for k in measured) else 1
    expected = {id(c): measured.get(id(c), guessed[id(c)] * scale) for c in cells}
    return sorted(cells, key=lambda c: -expected[id(c)])


# ---------------------------------------------------------------- envs ahead of cells


def channels_of(cells: Iterable[Cell]) -> list[Channel]:
    """Every channel whose env a cell will need, once each, in the order cells start."""
    seen: dict[str, Channel] = {}
    for cell in cells:
        for channel in (cell.channel, cell.upgrade_to):
            if channel is not None and channel.mlflow_version != DETECT:
                seen.setdefault(channel.mlflow_version, channel)
    return list(seen.values())


class EnvPrebuilder:
    """Builds every selected release's env at once, in the background, as the run starts.

    `env_for` is the runner's own (cached, locked per version), so a cell that reaches its
    environment phase first simply waits for the build already under way; a build that fails
    here fails again, with its message, in the cell that needs it.
    """

    def __init__(self, env_for: Callable[[Channel], object], channels: Sequence[Channel],
                 concurrency: int) -> None:
        self.env_for = env_for
        self.channels = list(channels)
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency),
                                       thread_name_prefix="env-build")
        self.errors: dict[str, BaseException] = {}
        self._lock = threading.Lock()

    def start(self) -> EnvPrebuilder:
        for channel in self.channels:
            self.pool.submit(self._build, channel)
        return self

    def _build(self, channel: Channel) -> None:
        try:
            self.env_for(channel)
        except BaseException as exc:  # reported by the cell that needs it
            with self._lock:
                self.errors[channel.mlflow_version] = exc

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def sized(cells: Sequence[Cell], machine: Machine, *, parallel: int = 0,
          workers: int = 0) -> Sizing:
    """What was asked for, else sized to the machine; workers asked for apply to every cell."""
    parallel = parallel or default_parallel(cells, machine)
    if workers:
        return Sizing(parallel, workers, workers)
    return Sizing(parallel, default_workers(parallel, machine), min(MAX_WORKERS, SERVER_WORKERS))


def xdist_args(workers: int, *, phased: bool) -> list[str]:
    """pytest arguments for a cell's client run.

    A phased run (before/after a restart or an upgrade) stays serial: its few tests share one
    manifest and some write what others verify, in file order. `worksteal` evens out the long
    tests (large artifacts, model logging) of the main run.
    """
    if phased or workers <= 1:
        return []
    return ["-n", str(workers), "--dist", "worksteal"]
