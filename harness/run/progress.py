"""Progress lines on stderr: one per phase start/end, with the run's elapsed time and, once the
runner has an estimate (harness.run.eta), the time it expects is left."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.system.redact import redact


class Progress:
    """One line per phase start/end with elapsed run time; safe from several threads."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.left: Callable[[], float] | None = None  # seconds expected to be left (the runner's)

    def __call__(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.t0)
        stamp = f"{elapsed // 60:02d}:{elapsed % 60:02d}"
        if self.left is not None:
            stamp += f" ~{_minutes(self.left())} left"
        with self.lock, contextlib.suppress(OSError, ValueError):  # a closed terminal: run on
            print(f"[{stamp}] {redact(text)}", file=self.stream, flush=True)


def _minutes(seconds: float) -> str:
    """Coarse on purpose: an estimate shown to the second would claim a precision it lacks."""
    if seconds < 60:
        return "<1m"
    return f"{round(seconds / 60)}m"

