"""toxfile.py: a second `tox -e ENV` waits for the first instead of reinstalling under it.

Real tox processes on a throw-away project (its tox.ini next to a copy of our toxfile.py); the
env installs a tiny package, so every start reinstalls it, as `tox -e matrix` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOX = shutil.which("tox")


@pytest.mark.skipif(TOX is None, reason="tox is not on PATH")
@pytest.mark.timeout(300)
def test_a_second_run_waits_for_the_first_instead_of_reinstalling_under_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "toxfile.py", project / "toxfile.py")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "probe"\nversion = "0"\n[tool.setuptools]\npy-modules = ["probe"]\n')
    (project / "probe.py").write_text("")
    (project / "tox.ini").write_text(
        "[testenv:m]\npackage = editable\n"
        "commands = python -c \"import pathlib, time, sys; p = pathlib.Path(sys.argv[1]); "
        "p.write_text(p.read_text() + 'start ') if p.exists() else p.write_text('start '); "
        "time.sleep(8); p.write_text(p.read_text() + 'end ')\" {toxinidir}/log\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TOX_") and k not in ("VIRTUAL_ENV", "PIP_CONSTRAINT")}
    first = subprocess.run([TOX, "-e", "m", "--notest"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    one = subprocess.Popen([TOX, "-e", "m"], cwd=project, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (project / "log").exists():
        assert one.poll() is None and time.monotonic() < deadline, one.stdout.read()
        time.sleep(0.2)
    two = subprocess.run([TOX, "-e", "m"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=240)
    one.communicate(timeout=60)
    assert one.returncode == 0 and two.returncode == 0, two.stdout + two.stderr
    assert "waiting for it to end before reinstalling" in two.stdout + two.stderr
    # the second started (and reinstalled) only after the first had ended
    assert (project / "log").read_text() == "start end start end "
