"""Waits on `juju status` that tolerate what Juju retries and stop on what it never will.

A unit in `error` or `blocked` keeps the wait going for a grace period (Juju retries a failed
hook with a backoff of up to five minutes, a charm leaves `blocked` at the next event), and
fails it after that; a message in `terminal_messages` fails it at once. After a refresh the
wait also needs the new charm revision and no unit still `upgrading-from` the old charm: the
channel in `juju status` changes the moment `juju refresh` returns, long before the pod runs it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import jubilant

from harness.system.errors import Interrupted
from harness.system.waits import CANCEL, Terminal


class _UnitFailed(Terminal):
    def __init__(self, unit: str, message: str) -> None:
        super().__init__(message)
        self.unit = unit


class BundleWatch:
    """`ready` and `error` callables for `jubilant.Juju.wait`."""

    def __init__(self, apps: tuple[str, ...], *, blocked_grace: float, error_grace: float = 0,
                 terminal: tuple[str, ...] = (), channels: Mapping[str, str] | None = None,
                 revisions: Mapping[str, int] | None = None, may_block: tuple[str, ...] = (),
                 clock: Any = time.monotonic) -> None:
        self.apps = apps
        # apps whose `blocked` is their settled state (a COS consumer with nowhere to forward)
        self.may_block = may_block
        self.grace = {"blocked": blocked_grace, "error": error_grace}
        self.terminal = tuple(re.compile(pattern) for pattern in terminal)
        self.channels = dict(channels or {})
        self.revisions = dict(revisions or {})   # app → the revision it ran before a refresh
        self.clock = clock
        self.since: dict[tuple[str, str], float] = {}   # (unit, state) → first seen
        self.last: jubilant.Status | None = None

    def ready(self, status: jubilant.Status) -> bool:
        self.last = status
        return all(self._app_ready(status, app) for app in self.apps)

    def _app_ready(self, status: jubilant.Status, app: str) -> bool:
        info = status.apps.get(app)
        if info is None or not info.units:
            return False
        if app in self.channels and info.charm_channel != self.channels[app]:
            return False
        if app in self.revisions and info.charm_rev == self.revisions[app]:
            return False
        settled = ("active", "blocked") if app in self.may_block else ("active",)
        if info.app_status.current not in (*settled, ""):
            return False
        return all(unit.workload_status.current in settled and unit.juju_status.current == "idle"
                   and not unit.upgrading_from for unit in info.units.values())

    def error(self, status: jubilant.Status) -> bool:
        self.last = status
        if CANCEL.is_set():
            raise Interrupted()
        now = self.clock()
        seen: set[tuple[str, str]] = set()
        for app_name, app in sorted(status.apps.items()):
            if app.app_status.current == "error" and not app.units:
                self._judge(app_name, "error", app.app_status.message, now, seen,
                            f"application {app_name}")
            for name, unit in sorted(app.units.items()):
                workload, agent = unit.workload_status, unit.juju_status
                if "error" in (workload.current, agent.current):
                    self._judge(name, "error", workload.message or agent.message, now, seen)
                elif workload.current == "blocked" and app_name not in self.may_block:
                    self._judge(name, "blocked", workload.message, now, seen)
        for key in list(self.since):
            if key not in seen:
                del self.since[key]
        return False

    def _judge(self, unit: str, state: str, message: str, now: float,
               seen: set[tuple[str, str]], what: str = "") -> None:
        """Fail on a terminal message at once, else once the state outlived its grace."""
        what = what or f"unit {unit}"
        if any(pattern.search(message or "") for pattern in self.terminal):
            raise _UnitFailed(unit, f"{what} is {state}, which it does not leave by itself: "
                                    f"{message}")
        seen.add((unit, state))
        since = self.since.setdefault((unit, state), now)
        grace = self.grace[state]
        if now - since >= grace:
            if grace <= 0:
                raise _UnitFailed(unit, f"{what} is in {state}: {message}")
            been = "has been blocked" if state == "blocked" else "has been in error"
            raise _UnitFailed(unit, f"{what} {been} for {now - since:.0f}s "
                                    f"(grace {grace:.0f}s): {message}")

    def summary(self) -> str:
        if self.last is None:
            return "no status yet"
        parts = []
        for app in self.apps:
            info = self.last.apps.get(app)
            if info is None:
                parts.append(f"{app}: not deployed")
                continue
            for name, unit in sorted(info.units.items()) or [(app, None)]:
                if unit is None:
                    parts.append(f"{app}: no units ({info.app_status.current})")
                    continue
                text = f"{name}: {unit.workload_status.current}/{unit.juju_status.current}"
                if unit.workload_status.message:
                    text += f" ({unit.workload_status.message})"
                if unit.upgrading_from:
                    text += f" upgrading from {unit.upgrading_from}"
                parts.append(text)
        return "; ".join(parts)
