"""How long a run has left: cell durations measured by earlier runs, laid out on the run's slots.

Every finished run records how long each of its cells took in the cache dir (durations.json,
next to the MLflow envs: it outlives `reports/`, which is archived run by run). A new run
expects each cell to take what it took last time (a cell never measured: its shape's guess,
scaled to the measured ones, scheduling.expected_durations), places the cells on `parallel`
slots longest first as the runner does, and re-plans whenever a cell starts or ends: the
estimate is the time until the last slot is free.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.system.cache import cache_root

DURATIONS_FILE = "durations.json"
Key = tuple[str, str]  # (platform, cell id)


def durations_file() -> Path:
    return cache_root() / DURATIONS_FILE


def load_durations(path: Path) -> dict[Key, float]:
    """(platform, cell) → seconds from the cache file; a missing or broken file is no history."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {tuple(k.split("/", 1)): float(v) for k, v in data.items()
                if "/" in k and float(v) > 0}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def record_durations(path: Path, measured: Mapping[Key, float]) -> None:
    """Merge this run's cell durations into the cache file (atomic replace; last run wins)."""
    if not measured:
        return
    known = load_durations(path)
    known.update({k: round(v, 1) for k, v in measured.items() if v > 0})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".durations-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({f"{p}/{c}": s for (p, c), s in sorted(known.items())}, out, indent=1)
    os.replace(tmp, path)


def clock_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s"


class Eta:
    """Expected time left; cells are keyed (platform, cell id); safe from several threads."""

    def __init__(self, expected: Mapping[Key, float], parallel: int, *, measured: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.expected = dict(expected)
        self.parallel = max(1, parallel)
        self.measured = measured
        self.clock = clock
        self.pending = sorted(self.expected, key=lambda k: -self.expected[k])
        self.running: dict[Key, float] = {}
        self.lock = threading.Lock()

    def started(self, key: Key) -> None:
        with self.lock:
            if key in self.pending:
                self.pending.remove(key)
            self.running[key] = self.clock()

    def finished(self, key: Key) -> None:
        with self.lock:
            self.running.pop(key, None)
            if key in self.pending:
                self.pending.remove(key)

    def left(self) -> float:
        """Seconds until the last cell should end: running cells finish their expected time (a
        cell past it is given a tenth more), pending ones take the earliest free slot."""
        with self.lock:
            now = self.clock()
            slots = [max(self.expected.get(k, 0.0) - (now - t0), 0.1 * self.expected.get(k, 0.0))
                     for k, t0 in self.running.items()]
            slots += [0.0] * max(0, self.parallel - len(slots))
            heapq.heapify(slots)
            for key in self.pending:
                heapq.heappush(slots, heapq.heappop(slots) + self.expected[key])
            return max(slots, default=0.0)

    def describe(self) -> str:
        """The first line's estimate, with where it comes from."""
        total = len(self.expected)
        source = (f"{self.measured} of {total} cell(s) measured by earlier runs"
                  if self.measured else "no earlier run measured these cells: a guess")
        return f"expected to take about {clock_text(self.left())} ({source})"
