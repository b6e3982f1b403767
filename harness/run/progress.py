"""Progress lines on stderr: one per phase start/end, with the run's elapsed time."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any

from harness.system.redact import redact


class Progress:
    """One line per phase start/end with elapsed run time; safe from several threads."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.t0)
        with self.lock, contextlib.suppress(OSError, ValueError):  # a closed terminal: run on
            print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {redact(text)}", file=self.stream,
                  flush=True)

