"""Polls a deployment's components while a cell's scenarios run.

A dead MLflow server otherwise costs every remaining test its client's retries, and a dead
store surfaces as forty product failures: the watchdog notices the death within a poll or two,
stops the scenario process, and the cell ends *broken*, naming the part and its last log lines.
What a component is and how it is checked is the deployment's business (provisioners.api
`Component`); the watchdog knows no kind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from harness.system.errors import ComponentDied
from provisioners.api import Component

POLL_INTERVAL = 1.0


class Watchdog:
    """`with Watchdog(components, on_dead):` — `died` holds the first death, if any."""

    def __init__(self, components: Sequence[Component], on_dead: Callable[[], None],
                 interval: float = POLL_INTERVAL) -> None:
        self.components = tuple(components)
        self.on_dead = on_dead
        self.interval = interval
        self.died: ComponentDied | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if self.components:
            self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        failing_since: dict[str, float] = {}
        while not self._stop.wait(self.interval):
            for component in self.components:
                try:
                    reason = component.check()
                except Exception as exc:  # a broken probe says so; it does not kill the watch
                    reason = f"its health check raised {type(exc).__name__}: {exc}"
                now = time.monotonic()
                if reason is None:
                    failing_since.pop(component.name, None)
                    continue
                first = failing_since.setdefault(component.name, now)
                if now - first >= component.grace and not self._stop.is_set():
                    self._die(component, reason, now - first)
                    return

    def _die(self, component: Component, reason: str, seconds: float) -> None:
        try:
            tail = component.log_tail()
        except Exception:
            tail = ""
        self.died = ComponentDied(component.name, reason, tail, seconds)
        self.on_dead()
