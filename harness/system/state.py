"""What a run created, on disk, so that `down`/`janitor` can release it after a crash or SIGKILL.

Every resource is recorded *before* it is created where possible (a process right after spawn,
a cloud resource before the API call) and removed from the file once released.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.system.redact import redact


@dataclass(frozen=True)
class Resource:
    id: str
    type: str  # process | dir | juju-model | cluster | cloud
    data: dict[str, Any]


class RunState:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._lock = threading.Lock()
        self._resources: dict[str, Resource] = {}
        self._status = "running"
        self._created = time.time()
        self._write()

    def add(self, type_: str, **data: Any) -> str:
        rid = uuid.uuid4().hex[:12]
        with self._lock:
            self._resources[rid] = Resource(rid, type_, data)
            self._write_locked()
        return rid

    def update(self, rid: str, **data: Any) -> None:
        with self._lock:
            old = self._resources[rid]
            self._resources[rid] = Resource(rid, old.type, {**old.data, **data})
            self._write_locked()

    def release(self, rid: str) -> None:
        with self._lock:
            self._resources.pop(rid, None)
            self._write_locked()

    def resources(self) -> list[Resource]:
        with self._lock:
            return list(self._resources.values())

    def finish(self, status: str) -> None:
        with self._lock:
            self._status = status
            self._write_locked()

    def _write(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "created": self._created,
            "status": self._status,
            "resources": [
                {"id": r.id, "type": r.type, **r.data} for r in self._resources.values()
            ],
        }
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(redact(json.dumps(body, indent=2)), encoding="utf-8")
        os.replace(tmp, self.path)


def read_state(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return body


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
