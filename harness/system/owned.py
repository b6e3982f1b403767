"""What the harness may remove or kill after a crash: only what it can prove is its own.

A state file is a plain JSON file in the reports dir: anyone who can write there can write
an entry. So `janitor` and `down --run-id` trust an entry only as far as the thing it names
proves it:

- a directory is removed only if it sits directly in the temp root this process uses, is not
  a symlink, is named `mlflow-matrix-<run id>-…` and holds the marker file with that run id;
- a process group is killed only if its leader's kernel start time and command line are those
  recorded when the harness started it (a reused pid has another start time; a crafted entry
  names a group the harness never started).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.system.errors import ConfigError

MARKER = ".mlflow-matrix-run"
PREFIX = "mlflow-matrix-"


def make_owned_dir(run_id: str, label: str = "") -> Path:
    """A private temp dir (0700) named after the run, carrying the run id in its marker."""
    prefix = f"{PREFIX}{run_id}-" + (f"{label}-" if label else "")
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / MARKER).write_text(run_id, encoding="utf-8")
    return path


def temp_root() -> Path:
    return Path(tempfile.gettempdir()).resolve()


def check_owned_dir(path: str | Path, run_id: str) -> Path:
    """The directory, if the harness may delete it for `run_id`; else a refusal (ConfigError)."""
    target = Path(path)
    if not target.is_absolute() or ".." in target.parts:
        raise ConfigError(f"refusing to delete {target}: not an absolute temp path")
    if target.is_symlink():
        raise ConfigError(f"refusing to delete {target}: it is a symlink")
    if target.parent.resolve() != temp_root():
        raise ConfigError(f"refusing to delete {target}: not directly in the temp root "
                          f"{temp_root()}")
    if not target.name.startswith(f"{PREFIX}{run_id}-"):
        raise ConfigError(f"refusing to delete {target}: not named after run {run_id}")
    if not target.exists():
        return target
    try:
        marker = (target / MARKER).read_text(encoding="utf-8")
    except OSError:
        marker = None
    if marker != run_id:
        raise ConfigError(f"refusing to delete {target}: it carries no marker of run {run_id}")
    return target


def remove_owned_dir(path: str | Path, run_id: str) -> None:
    """Delete a run's temp dir after `check_owned_dir`; gone already is fine."""
    shutil.rmtree(check_owned_dir(path, run_id), ignore_errors=True)


# ---------------------------------------------------------------- processes


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, …]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> str | None:
    """Kernel start time of a pid (clock ticks since boot): a reused pid has another one."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def cmdline_digest(pid: int) -> str | None:
    """SHA-256 of the process's command line as the kernel holds it (never the text: it may
    carry secrets, and a state file is not a secret store)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return hashlib.sha256(raw).hexdigest() if raw else None


def identity(pid: int) -> dict[str, Any]:
    """What to record of a process the harness just started (after exec: Popen has returned).

    Right after exec the kernel can still show an empty command line for a moment (seen under
    load): read again, briefly, rather than record an entry the janitor must refuse."""
    started, digest = start_time(pid), cmdline_digest(pid)
    for _ in range(40):
        if started and digest:
            break
        time.sleep(0.025)
        started, digest = started or start_time(pid), digest or cmdline_digest(pid)
    return {"pid": pid, "pgid": pid, "started": started, "cmdline": digest}


def recorded_group(resource: Mapping[str, Any]) -> int | None:
    """The process group to kill for a recorded process, or None when the group is gone or not
    provably ours (raises ConfigError for an entry that cannot be ours at all)."""
    pid, pgid = resource.get("pid"), resource.get("pgid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pgid != pid:
        raise ConfigError(f"refusing to kill process group {pgid!r}: the harness starts every "
                          "process as the leader of its own group")
    started, digest = resource.get("started"), resource.get("cmdline")
    if not started or not digest:
        raise ConfigError(f"refusing to kill pid {pid}: its start time and command line were "
                          "not recorded", hint="check it by hand (`ps -o pid,lstart,args`)")
    fields = _stat_fields(pid)
    if fields is None or start_time(pid) != started:
        return None  # gone, or the pid now belongs to another process
    if fields[2] != str(pid) or cmdline_digest(pid) != digest:
        raise ConfigError(f"refusing to kill pid {pid}: its command line or group differ from "
                          "what was recorded")
    return pid


def describe(argv: Sequence[str]) -> list[str]:
    """The first words of a command line, for humans reading the state file."""
    return [str(a) for a in argv[:3]]
