"""The jubilant seam: every Juju command runs through `harness.system.procs.run`.

`_Juju` only routes jubilant's single subprocess seam through `harness.system.procs.run`: a deadline on
every command, its own session so Ctrl-C reaches the harness first, redacted errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import jubilant

from deployments.juju.settings import LOCK_BACKOFF, LOCK_ERROR, LOCK_RETRIES
from harness.system.errors import CommandError, InfrastructureError
from harness.system.procs import run
from harness.system.redact import redact
from harness.system.waits import CANCEL

if TYPE_CHECKING:
    pass


class _Juju(jubilant.Juju):
    """jubilant.Juju whose one subprocess call runs through `harness.system.procs.run`.

    jubilant funnels every command through `Juju._cli` (same signature in jubilant 1.x and on
    main); overriding it adds a deadline to every command and a session of its own, and keeps
    jubilant's contract: `CLIError` on a non-zero exit, `(stdout, stderr)` otherwise.
    """

    def __init__(self, *, model: str | None = None, command_timeout: float = 600,
                 cli_binary: str | None = None) -> None:
        super().__init__(model=model, cli_binary=cli_binary)
        self.command_timeout = command_timeout

    def _cli(self, *args: str, include_model: bool = True, stdin: str | None = None,
             log: bool = True, timeout: float | None = None) -> tuple[str, str]:
        if include_model and self.model is not None:
            args = (args[0], "--model", self.model, *args[1:])
        argv = [self.cli_binary, *args]
        for attempt in range(LOCK_RETRIES + 1):
            proc = run(argv, timeout=timeout or self.command_timeout, check=False, input=stdin)
            if proc.returncode == 0 or LOCK_ERROR not in proc.stderr or attempt == LOCK_RETRIES:
                break
            # another juju process holds the client store lock (parallel cells, jubilant#192):
            # the command did nothing; try again shortly
            if CANCEL.wait(LOCK_BACKOFF * (attempt + 1)):
                break
        if proc.returncode != 0:
            raise jubilant.CLIError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc.stdout, proc.stderr

    def run_cli(self, *args: str, include_model: bool = True, stdin: str | None = None,
                timeout: float | None = None) -> tuple[str, str]:
        """Any Juju command jubilant has no method for, with its own deadline."""
        return self._cli(*args, include_model=include_model, stdin=stdin, timeout=timeout)


@contextlib.contextmanager
def juju_errors(what: str, hint: str | None = None) -> Iterator[None]:
    """Turn jubilant's errors into the harness's (redacted, with the command and its output)."""
    try:
        yield
    except jubilant.CLIError as exc:
        argv = [str(a) for a in (exc.cmd if isinstance(exc.cmd, list) else [exc.cmd])]
        error = CommandError(argv, exc.returncode, exc.stdout or "", exc.stderr or "")
        raise InfrastructureError(f"{what} failed: {error.message}", hint=hint) from None
    except jubilant.TaskError as exc:
        raise InfrastructureError(f"{what} failed: action {exc.task.status}: "
                                  f"{redact(exc.task.message or exc.task.stderr)}", hint=hint) from None


def _not_found(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'stderr', '')} {exc}".lower()
    return "not found" in text or "no such" in text or "not exist" in text

