"""The bundle's pods as watchdog components (provisioners.api `Component`), read through the
Kubernetes API: a pod that is gone, or a container that has not been running and ready for
POD_GRACE seconds (CrashLoopBackOff, OOMKilled, a node lost), is a dead part of the deployment.

The grace covers a container kubelet restarts at once after a crash: the watchdog calls a pod
dead only when it stays down, so a cell ends within ~30 s of the death, not at its deadline.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.system.redact import redact
from provisioners.api import Component

POD_GRACE = 15.0
SNAPSHOT_AGE = 1.0  # one pod listing serves every app's check within this many seconds


class PodSnapshot:
    """`Kube.unhealthy_containers()` and the pod names, listed at most once per SNAPSHOT_AGE."""

    def __init__(self, kube: Callable[[], Any]) -> None:
        self.kube = kube
        self._lock = threading.Lock()
        self._at = 0.0
        self._pods: list[str] = []
        self._unhealthy: list[tuple[str, str, str]] = []

    def read(self) -> tuple[list[str], list[tuple[str, str, str]]]:
        with self._lock:
            if time.monotonic() - self._at > SNAPSHOT_AGE:
                kube = self.kube()
                self._pods = [p.metadata.name for p in kube.pods()]
                self._unhealthy = kube.unhealthy_containers()
                self._at = time.monotonic()
            return self._pods, self._unhealthy


def pod_components(kube: Callable[[], Any], apps: Sequence[str]) -> tuple[Component, ...]:
    snapshot = PodSnapshot(kube)
    return tuple(Component(f"{app} pod", _check(snapshot, app), _tail(kube, snapshot, app),
                           grace=POD_GRACE) for app in apps)


def _ours(app: str, pod: str) -> bool:
    return re.fullmatch(rf"{re.escape(app)}-\d+", pod) is not None


def _check(snapshot: PodSnapshot, app: str) -> Callable[[], str | None]:
    def check() -> str | None:
        pods, unhealthy = snapshot.read()
        if not any(_ours(app, pod) for pod in pods):
            return f"no {app} pod in the model's namespace"
        bad = [f"{pod}/{container}: {why}" for pod, container, why in unhealthy
               if _ours(app, pod)]
        return "; ".join(bad) or None
    return check


def _tail(kube: Callable[[], Any], snapshot: PodSnapshot, app: str) -> Callable[[], str]:
    def tail() -> str:
        _, unhealthy = snapshot.read()
        for pod, container, _ in unhealthy:
            if _ours(app, pod):
                return redact(kube().container_log(pod, container, tail_lines=12))
        return ""
    return tail
