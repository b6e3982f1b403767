"""Fail-fast waits on `juju status`: a unit in error ends the wait at once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jubilant

from harness.system.errors import Interrupted
from harness.system.waits import CANCEL, Terminal

if TYPE_CHECKING:
    pass


class _UnitFailed(Terminal):
    def __init__(self, unit: str, message: str) -> None:
        super().__init__(message)
        self.unit = unit


class BundleWatch:
    """`ready` and `error` callables for `jubilant.Juju.wait`: fail fast, tolerate the transient.

    Transient states seen in real deployments (waiting for relation data, maintenance while
    the workload starts, `blocked` until a relation arrives) keep the wait going; a unit in
    `error`, or `blocked` for longer than the grace period, ends it at once.
    """

    def __init__(self, apps: tuple[str, ...], *, blocked_grace: float,
                 channels: Mapping[str, str] | None = None,
                 may_block: tuple[str, ...] = (),
                 clock: Any = time.monotonic) -> None:
        self.apps = apps
        # apps whose `blocked` is their settled state (a COS consumer with nowhere to forward)
        self.may_block = may_block
        self.blocked_grace = blocked_grace
        self.channels = dict(channels or {})
        self.clock = clock
        self.blocked_since: dict[str, float] = {}
        self.last: jubilant.Status | None = None

    def ready(self, status: jubilant.Status) -> bool:
        self.last = status
        for app in self.apps:
            info = status.apps.get(app)
            if info is None or not info.units:
                return False
            if app in self.channels and info.charm_channel != self.channels[app]:
                return False
            settled = ("active", "blocked") if app in self.may_block else ("active",)
            if info.app_status.current not in (*settled, ""):
                return False
            for unit in info.units.values():
                if unit.workload_status.current not in settled \
                        or unit.juju_status.current != "idle":
                    return False
        return True

    def error(self, status: jubilant.Status) -> bool:
        self.last = status
        if CANCEL.is_set():
            raise Interrupted()
        now = self.clock()
        seen = set()
        for app_name, app in sorted(status.apps.items()):
            if app.app_status.current == "error" and not app.units:
                raise _UnitFailed(app_name, f"application {app_name} is in error: "
                                  f"{app.app_status.message}")
            for name, unit in sorted(app.units.items()):
                workload, agent = unit.workload_status, unit.juju_status
                if workload.current == "error" or agent.current == "error":
                    message = workload.message or agent.message
                    raise _UnitFailed(name, f"unit {name} is in error: {message}")
                if workload.current == "blocked" and app_name not in self.may_block:
                    seen.add(name)
                    since = self.blocked_since.setdefault(name, now)
                    if now - since > self.blocked_grace:
                        raise _UnitFailed(name, f"unit {name} has been blocked for "
                                          f"{now - since:.0f}s (grace {self.blocked_grace:.0f}s):"
                                          f" {workload.message}")
        for name in list(self.blocked_since):
            if name not in seen:
                del self.blocked_since[name]
        return False

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
                parts.append(text)
        return "; ".join(parts)

