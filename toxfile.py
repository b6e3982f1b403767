"""tox plugin (loaded by tox from the project root): one `tox -e matrix` install at a time.

tox 4 reinstalls the project into `.tox/<env>` on every start (`pip install --force-reinstall`
of the editable package), which for a moment removes the `mlflow-matrix` script and the package
a run already going in that env imports from. Each run therefore holds a shared lock on the env
while its commands run, and an install takes the lock exclusively: a second `tox -e matrix`
waits, saying so, until the first has finished, instead of reinstalling under it.
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path
from typing import Any

from tox.plugin import impl

LOCK_NAME = ".mlflow-matrix-run.lock"
_held: dict[str, Any] = {}


def _lock_file(tox_env: Any) -> Any:
    name = tox_env.conf.name
    handle = _held.get(name)
    if handle is None:
        path = Path(tox_env.env_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.parent / f"{path.name}{LOCK_NAME}", "a+")  # noqa: SIM115 (held)
        _held[name] = handle
    return handle


def _lock(tox_env: Any, mode: int, doing: str) -> None:
    handle = _lock_file(tox_env)
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{tox_env.conf.name}: another `tox -e {tox_env.conf.name}` uses "
              f"{tox_env.env_dir}; waiting for it to end before {doing} (it would remove "
              "the harness from under that run). Ctrl-C to stop waiting.",
              file=sys.stderr, flush=True)
        fcntl.flock(handle, mode)


@impl
def tox_on_install(tox_env: Any, arguments: Any, section: str, of_type: str) -> None:
    """Before tox installs into the env: exclusive, so no run is using it."""
    _lock(tox_env, fcntl.LOCK_EX, "reinstalling")


@impl
def tox_before_run_commands(tox_env: Any) -> None:
    """The env is ready: shared, so another run's install waits, but nothing else does."""
    _lock(tox_env, fcntl.LOCK_SH, "running")


@impl
def tox_env_teardown(tox_env: Any) -> None:
    handle = _held.pop(tox_env.conf.name, None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
