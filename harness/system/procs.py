"""Every external command and long-running process goes through here.

Short commands: `run()` raises `CommandError` carrying argv, exit code and redacted output.
Long-running servers: `Service` starts them in their own process group (so Ctrl-C reaches the
harness first and teardown order stays ours), records them in the run state, and stops the
whole group with a deadline, escalating to SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.system.errors import CommandError, InfrastructureError, Interrupted
from harness.system.owned import describe, identity
from harness.system.redact import redact
from harness.system.state import RunState

# What a long-running component inherits from the harness's environment: enough to run, nothing
# the user holds (cloud keys, tokens, MLflow credentials, the AWS pair SeaweedFS would make an
# admin). Everything else a component needs is passed to it by name.
SERVICE_ENV_ALLOW = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
                     "SYSTEMROOT")
STOP_AFTER_CANCEL = 3.0  # seconds a short command gets once the run is cancelled


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, check: bool = True, input: str | None = None,
        state: RunState | None = None, cancel: threading.Event | None = None,
        clean_env: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; raise `CommandError` on failure or timeout.

    With `state`, the process is recorded while it runs (a SIGKILLed harness leaves it to the
    janitor); with `cancel`, setting that event stops its process group within
    STOP_AFTER_CANCEL seconds and raises `Interrupted` (Ctrl-C during a long `uv pip install`).
    """
    argv = [str(a) for a in argv]
    # a component's helper (`mlflow db upgrade`) gets the allow-listed env, as a Service does
    full_env = service_env(env) if clean_env else _env(env)
    if state is not None or cancel is not None:
        return _run_watched(argv, timeout=timeout, env=full_env, cwd=cwd, check=check,
                            input=input, state=state, cancel=cancel)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd,
            input=input, start_new_session=True,
        )
    except FileNotFoundError:
        raise InfrastructureError(f"command not found: {argv[0]}",
                                  hint=f"install {argv[0]} or put it on PATH") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, -1, _text(exc.stdout),
                           _text(exc.stderr) + f"\n(timed out after {timeout:.0f}s)") from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _run_watched(argv: list[str], *, timeout: float, env: dict[str, str] | None,
                 cwd: Path | None, check: bool, input: str | None, state: RunState | None,
                 cancel: threading.Event | None) -> subprocess.CompletedProcess[str]:
    if cancel is not None and cancel.is_set():  # interrupted already: start nothing
        raise Interrupted()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    except FileNotFoundError:
        raise InfrastructureError(f"command not found: {argv[0]}",
                                  hint=f"install {argv[0]} or put it on PATH") from None
    rid = state.add("process", name=Path(argv[0]).name, argv=describe(argv),
                    **identity(proc.pid)) if state is not None else None
    deadline = time.monotonic() + timeout
    out: list[str] = []
    err: list[str] = []
    feed = input
    try:
        while True:
            try:
                stdout, stderr = proc.communicate(feed, timeout=0.2)
                out.append(stdout or "")
                err.append(stderr or "")
                break
            except subprocess.TimeoutExpired:
                feed = None  # communicate() keeps feeding what it started with
                if cancel is not None and cancel.is_set():
                    stop_group(proc.pid, timeout=STOP_AFTER_CANCEL, proc=proc)
                    raise Interrupted() from None
                if time.monotonic() > deadline:
                    stop_group(proc.pid, timeout=STOP_AFTER_CANCEL, proc=proc)
                    stdout, stderr = proc.communicate()
                    raise CommandError(argv, -1, stdout or "", (stderr or "")
                                       + f"\n(timed out after {timeout:.0f}s)") from None
    finally:
        if proc.poll() is None:
            stop_group(proc.pid, timeout=STOP_AFTER_CANCEL, proc=proc)
        if rid is not None and state is not None:
            state.release(rid)
    done = subprocess.CompletedProcess(argv, proc.returncode, "".join(out), "".join(err))
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done


def service_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """A component's environment: the allow-listed part of ours, plus what it is given."""
    base = {k: v for k, v in os.environ.items() if k in SERVICE_ENV_ALLOW}
    return {**base, **(extra or {})}


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _env(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    if extra is None:
        return None
    return {**os.environ, **extra}


def free_ports(count: int) -> list[int]:
    """Ports the kernel considers free right now, all distinct.

    Bound simultaneously so they cannot repeat; a server that still loses a race fails to bind,
    and callers retry the start with fresh ports.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Service:
    """A long-running process owned by one run, logged to a file, recorded in the run state."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path, state: RunState,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 isolated: bool = False) -> None:
        """`isolated`: a component the harness deploys (a server, a store) starts with the
        allow-listed environment plus `env`; a tool run on the user's behalf (`juju
        bootstrap`) inherits the user's environment, which is how it finds its credentials."""
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.state = state
        self.env = env
        self.cwd = cwd
        self.isolated = isolated
        self.proc: subprocess.Popen[bytes] | None = None
        self._rid: str | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=service_env(self.env) if self.isolated else _env(self.env),
                    cwd=self.cwd, start_new_session=True,
                )
            except FileNotFoundError:
                raise InfrastructureError(f"{self.name}: command not found: {self.argv[0]}") \
                    from None
        self._rid = self.state.add("process", name=self.name, argv=describe(self.argv),
                                   **identity(self.proc.pid))
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        """Exit code if the process has ended, else None."""
        return self.proc.poll() if self.proc else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL. Idempotent."""
        if self.proc is None:
            return
        stop_group(self.proc.pid, timeout=timeout, proc=self.proc)
        if self._rid:
            self.state.release(self._rid)
            self._rid = None
        self.proc = None


def stop_group(pgid: int, *, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Terminate a whole process group (server + its workers) within `timeout` seconds."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            if not group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _group_has_live_members(pgid)


def _group_has_live_members(pgid: int) -> bool:
    """Zombies still count for killpg(0); look in /proc for a member that is not a zombie."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return True
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
