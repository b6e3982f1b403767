"""Hints are commands that work when pasted: the shell's CLI, the run's --reports-dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = ("import sys; from pathlib import Path; from harness.system import hints; "
         "print(hints.command(sys.argv[1], *sys.argv[2:-1], reports_dir=Path(sys.argv[-1])))")


def _hint(cwd: Path, env: dict[str, str], *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOX_")}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**clean, **env,
                                                      "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_under_tox_without_the_cli_on_path_the_hint_is_the_tox_env(tmp_path):
    """A tox-only quick start: tox put .tox/matrix/bin first on PATH for its command only."""
    project = tmp_path / "checkout"
    (project / ".tox" / "matrix" / "bin").mkdir(parents=True)
    (project / ".tox" / "matrix" / "bin" / "mlflow-matrix").write_text("#!/bin/sh\n")
    (project / ".tox" / "matrix" / "bin" / "mlflow-matrix").chmod(0o755)
    (project / "tox.ini").write_text("[tox]\n")
    env = {"TOX_ENV_DIR": str(project / ".tox" / "matrix"), "TOX_WORK_DIR": str(project / ".tox"),
           "PATH": f"{project / '.tox' / 'matrix' / 'bin'}:/usr/bin:/bin"}
    assert _hint(project, env, "janitor", str(project / "elsewhere")) == \
        "tox -e janitor -- --reports-dir elsewhere"
    assert _hint(project, env, "down", "--run-id", "r1", str(project / "reports")) == \
        "tox -e down -- --run-id r1"
    assert _hint(tmp_path, env, "janitor", "/srv/r") == \
        f"tox -c {project / 'tox.ini'} -e janitor -- --reports-dir /srv/r"


def test_with_the_cli_on_the_users_path_the_hint_is_the_cli(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mlflow-matrix").write_text("#!/bin/sh\n")
    (bin_dir / "mlflow-matrix").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    assert _hint(tmp_path, env, "down", "--run-id", "r1", "/srv/my reports") == \
        "mlflow-matrix down --run-id r1 --reports-dir '/srv/my reports'"
