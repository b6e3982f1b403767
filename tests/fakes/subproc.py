"""`FakeRun`: subprocess.run faked at the boundary, jubilant's unit-test style.

Every expected command is registered with its exact argv and the output to return; an
unexpected command fails the test with its argv. The keyword arguments `harness.system.procs.run`
must always pass (capture, text, a timeout, its own session) are asserted on every call.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    timeout: bool = False          # raise TimeoutExpired, as a command past its deadline
    check: Callable[[dict[str, Any]], None] | None = None


@dataclass
class Seen:
    argv: list[str]
    input: str | None
    timeout: float | None
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeRun:
    def __init__(self) -> None:
        self._replies: dict[tuple[str, ...], list[Reply]] = {}
        self.calls: list[Seen] = []

    def handle(self, argv: Sequence[str], *replies: Reply | str, **kwargs: Any) -> None:
        """Answer `argv` with `replies` in turn (the last one repeats); str = stdout."""
        built = [r if isinstance(r, Reply) else Reply(stdout=r) for r in replies] or \
            [Reply(**kwargs)]
        self._replies[tuple(argv)] = built

    def __call__(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in argv]
        assert kwargs.get("capture_output") is True, kwargs
        assert kwargs.get("text") is True, kwargs
        assert kwargs.get("start_new_session") is True, "commands run in their own session"
        assert kwargs.get("timeout") and kwargs["timeout"] > 0, "every command has a deadline"
        key = tuple(argv)
        assert key in self._replies, f"unexpected command: {argv}"
        queue = self._replies[key]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        self.calls.append(Seen(argv, kwargs.get("input"), kwargs.get("timeout"), kwargs))
        if reply.check:
            reply.check(kwargs)
        if reply.timeout:
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"], output=reply.stdout,
                                            stderr=reply.stderr)
        return subprocess.CompletedProcess(argv, reply.returncode, reply.stdout, reply.stderr)

    def argvs(self) -> list[list[str]]:
        return [c.argv for c in self.calls]
