"""Commands the harness tells a user to run, written so that pasted as printed they work.

A hint carries the options the run used (`--reports-dir` when it is not the default), and names
a command the user's shell has: `mlflow-matrix` when it is on the user's PATH; after a tox-only
quick start it is not (tox puts `.tox/<env>/bin` first on PATH only for the command it runs),
so the hint is the tox env that runs the same subcommand (`tox -e janitor -- …`), and failing
that the script's absolute path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

SCRIPT = "mlflow-matrix"
DEFAULT_REPORTS = Path("reports")
# subcommand → the tox env in tox.ini whose commands are `mlflow-matrix <subcommand> {posargs}`
TOX_ENVS = {"run": "matrix", "janitor": "janitor", "down": "down", "report": "report"}


def command(subcommand: str, *args: str, reports_dir: Path | None = None) -> str:
    """`mlflow-matrix SUBCOMMAND ARGS [--reports-dir DIR]` as the user's shell can run it."""
    words = [*args]
    if reports_dir is not None and not _is_default(reports_dir):
        words += ["--reports-dir", shown(reports_dir)]
    tail = " ".join(shlex.quote(w) for w in words)
    if _on_user_path():
        return " ".join(filter(None, (SCRIPT, subcommand, tail)))
    tox = _tox_prefix(subcommand)
    if tox:
        return f"{tox} -- {tail}" if tail else tox
    script = Path(sys.prefix) / "bin" / SCRIPT
    head = (shlex.quote(str(script)) if script.is_file()
            else f"{shlex.quote(sys.executable)} -m harness")
    return " ".join(filter(None, (head, subcommand, tail)))


def _is_default(reports_dir: Path) -> bool:
    try:
        return reports_dir.expanduser().resolve() == DEFAULT_REPORTS.resolve()
    except OSError:
        return False


def shown(path: Path) -> str:
    """Relative to the current directory when inside it (short), else absolute."""
    target = path.expanduser().resolve()
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


def _user_path() -> str:
    """PATH as the user's shell has it: without the bin dir tox put first for its command."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    tox_env = os.environ.get("TOX_ENV_DIR")
    if tox_env:
        own = str(Path(tox_env) / "bin")
        entries = [e for e in entries if e.rstrip("/") != own]
    return os.pathsep.join(entries)


def _on_user_path() -> bool:
    return shutil.which(SCRIPT, path=_user_path()) is not None


def _tox_prefix(subcommand: str) -> str:
    """`tox -e ENV` (with `-c tox.ini` when the current directory is not the tox root)."""
    env = TOX_ENVS.get(subcommand)
    work = os.environ.get("TOX_WORK_DIR")
    if not env or not work:
        return ""
    root = Path(work).resolve().parent
    if not (root / "tox.ini").is_file():
        return ""
    if root == Path.cwd().resolve():
        return f"tox -e {env}"
    return f"tox -c {shlex.quote(str(root / 'tox.ini'))} -e {env}"
