"""Errors a user can act on. The CLI maps each class to an exit code and prints `render()`."""

from __future__ import annotations

EXIT_OK = 0
EXIT_SCENARIO_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3
EXIT_INTERRUPTED = 130

# One screen: an error is read, not scrolled. A value a user (or an attacker) passed may be
# 100 kB long; it is shown clipped, never echoed in full.
SCREEN_LINES = 30
LINE_CHARS = 300


def clip(text: str, limit: int = LINE_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 30]}… ({len(text):,} characters)"


def one_screen(text: str) -> str:
    """At most SCREEN_LINES lines of at most LINE_CHARS characters each."""
    lines = [clip(line) for line in text.splitlines()]
    if len(lines) > SCREEN_LINES:
        lines = [*lines[:SCREEN_LINES - 1], f"… ({len(lines) - SCREEN_LINES + 1} more lines)"]
    return "\n".join(lines)


class MatrixError(Exception):
    """Base for every error the harness reports to a user instead of a traceback."""

    exit_code = EXIT_INFRASTRUCTURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return one_screen(text)


class ConfigError(MatrixError):
    """Bad input: matrix.yaml, command-line flags, credentials."""

    exit_code = EXIT_BAD_INPUT


class MatrixFileError(ConfigError):
    """A problem at one key of matrix.yaml; the message names the file and the key path."""

    def __init__(self, path: object, key: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {key}: {problem}", hint=hint)
        self.path = path
        self.key = key
        self.problem = problem


class InfrastructureError(MatrixError):
    """Provision, deploy, upgrade or teardown failed: the platform, not MLflow's behaviour."""

    exit_code = EXIT_INFRASTRUCTURE


class CommandError(InfrastructureError):
    """An external command failed. Output is redacted before it is stored here."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        from harness.system.redact import redact

        self.argv = [redact(a) for a in argv]
        self.returncode = returncode
        self.stdout = redact(stdout)
        self.stderr = redact(stderr)
        tail = (self.stderr or self.stdout).strip().splitlines()[-5:]
        message = f"command failed (exit {returncode}): {' '.join(self.argv)}"
        if tail:
            message += "\n  " + "\n  ".join(tail)
        super().__init__(message)


class CellSkipped(MatrixError):
    """A cell cannot run on this machine (e.g. no MariaDB). Reported as skipped, never passed."""

    exit_code = EXIT_OK


class Interrupted(MatrixError):
    """Ctrl-C or SIGTERM: tear down what was created, then exit 130."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(f"interrupted by {signal_name}; tore down what this run created")


class ComponentDied(InfrastructureError):
    """A deployed part (server, store, pod) died while scenarios ran: the cell is broken, and
    the message names the part and ends with its last log lines."""

    def __init__(self, component: str, reason: str, log_tail: str = "",
                 seconds: float = 0.0) -> None:
        message = f"{component} died while scenarios ran ({reason})"
        if log_tail.strip():
            message += "\n  its last log lines:\n    " + "\n    ".join(
                log_tail.strip().splitlines()[-12:])
        super().__init__(message, hint="the scenarios were stopped; the component's full log "
                                       "is in the cell's diagnostics/")
        self.component = component
        self.reason = reason
        self.seconds = seconds  # from the first failed check to the verdict
