"""One user Ctrl-C means one graceful teardown, however the interrupt is relayed.

Under `tox -e matrix` a single Ctrl-C reaches the harness up to three times within a second:
from the terminal (same process group), then from tox twice (its main thread and its run thread
each call `interrupt()`, which sends SIGINT and, after tox.ini's `interrupt_timeout`, SIGTERM).
Counting those as the user's second and third Ctrl-C abandoned the teardown. Here a signal within
`RELAY_WINDOW_S` of the first is the same interrupt; only one after it, once the user has seen
"tearing down… (Ctrl-C again to abandon)", abandons the teardown (and tox's SIGTERM after its
`interrupt_timeout`, i.e. a teardown that outlived what tox.ini allows, does too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.system.errors import EXIT_INTERRUPTED, Interrupted
from harness.system.waits import CANCEL

# tox relays a Ctrl-C twice: at once and when its run thread next polls (every 1 s); a loaded
# machine delays that poll, a person reading the message takes longer than this.
RELAY_WINDOW_S = 3.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """SIGINT/SIGTERM handling for one run, installed in the main thread.

    The first signal raises `Interrupted` in the main thread while `armed` (the runner's wait for
    its cells, which then cancels them); later (the cells already ending) it cancels what still
    runs itself. `abandon(signal name)` gives the last words. A handler runs between two
    bytecodes of the main thread, which may hold a lock or be half-way through a write, so it
    writes with os.write and takes no lock."""

    def __init__(self, abandon: Callable[[str], str], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.abandon_message = abandon
        self.clock = clock
        self.first: float | None = None
        self.name = ""
        self.armed = True
        self._previous: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.first is not None

    def install(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        now = self.clock()
        name = signal.Signals(signum).name
        if self.first is None:
            self.first, self.name = now, name
            if self.armed:
                raise Interrupted(name)
            CANCEL.set()
            _say(f"{name} received: tearing down what this run created… (Ctrl-C again to "
                 "abandon)")
            return
        if now - self.first < RELAY_WINDOW_S:
            return  # the same interrupt, relayed (tox) or repeated at once
        _say(f"{name} again: {self.abandon_message(name)}")
        os._exit(EXIT_INTERRUPTED)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"\n{text}\n".encode())
