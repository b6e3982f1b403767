"""Deadline-bound waits (tenacity) that stop early on a terminal state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.system.errors import InfrastructureError, Interrupted

T = TypeVar("T")

# Set by the runner on Ctrl-C/SIGTERM: every wait ends at its next poll so teardown can start.
CANCEL = threading.Event()


class NotYet(Exception):
    """Raised by a probe to say 'keep waiting'; the message is shown if the deadline passes."""


class Terminal(InfrastructureError):
    """Raised by a probe to say 'this will never succeed': the wait ends at once."""


class DeadlineExceeded(InfrastructureError):
    pass


def wait_for(probe: Callable[[], T], *, what: str, timeout: float, interval: float = 0.5,
             hint: str | None = None) -> T:
    """Call `probe` until it returns; `NotYet` retries, anything else (incl. `Terminal`) ends."""
    started = time.monotonic()
    try:
        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_exception_type(NotYet),
            reraise=False,
        ):
            with attempt:
                if CANCEL.is_set():
                    raise Interrupted()
                return probe()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        elapsed = time.monotonic() - started
        raise DeadlineExceeded(
            f"timed out after {elapsed:.0f}s waiting for {what}: {last}",
            hint=hint or "see the logs under the cell's diagnostics/ folder",
        ) from None
    raise AssertionError("unreachable")
