"""The janitor trusts a state file only as far as the things it names prove it: a crafted or
stale entry never deletes a foreign directory or kills a foreign process, and a corrupt file
does not stop the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.commands.lifecycle import janitor
from harness.system.owned import MARKER, identity, make_owned_dir
from harness.system.procs import group_alive


def _state(reports: Path, run_id: str, *resources: dict) -> Path:
    path = reports / "state" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "pid": 999_999_999, "status": "running",
                                "created": 0, "resources": [
                                    {"id": str(i), **r} for i, r in enumerate(resources)]}))
    return path


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            start_new_session=True)
    time.sleep(0.2)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_dir_without_the_runs_marker_is_left_alone(tmp_path):
    reports = tmp_path / "reports"
    foreign = Path(tempfile.mkdtemp(prefix="mlflow-matrix-r1-"))  # right name, no marker
    elsewhere = tmp_path / "mlflow-matrix-r1-x"                      # marker, wrong place
    elsewhere.mkdir()
    (elsewhere / MARKER).write_text("r1")
    other_run = make_owned_dir("r2")                                # another run's dir
    try:
        _state(reports, "r1", {"type": "dir", "path": str(foreign)},
               {"type": "dir", "path": str(elsewhere)}, {"type": "dir", "path": str(other_run)},
               {"type": "dir", "path": "/"}, {"type": "dir", "path": "../../etc"})
        assert janitor(reports) == 3
        assert foreign.is_dir() and elsewhere.is_dir() and other_run.is_dir()
        left = json.loads((reports / "state" / "r1.json").read_text())["resources"]
        assert len(left) == 5, "refused entries stay recorded for a human"
    finally:
        for path in (foreign, other_run):
            subprocess.run(["rm", "-rf", str(path)], check=True)


def test_its_own_marked_dir_is_removed(tmp_path):
    reports = tmp_path / "reports"
    mine = make_owned_dir("r3", "cell")
    (mine / "data").mkdir()
    state = _state(reports, "r3", {"type": "dir", "path": str(mine)})
    assert janitor(reports) == 0
    assert not mine.exists()
    assert json.loads(state.read_text()) | {"resources": []} == json.loads(state.read_text())


def test_a_symlink_named_like_a_run_dir_is_not_followed(tmp_path):
    reports = tmp_path / "reports"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / MARKER).write_text("r4")
    link = Path(tempfile.gettempdir()) / "mlflow-matrix-r4-link"
    link.symlink_to(victim)
    try:
        _state(reports, "r4", {"type": "dir", "path": str(link)})
        assert janitor(reports) == 3
        assert victim.is_dir() and (victim / MARKER).exists()
    finally:
        link.unlink()


def test_a_process_is_killed_only_when_start_time_and_command_line_match(tmp_path, sleeper):
    reports = tmp_path / "reports"
    real = identity(sleeper.pid)
    assert real["started"] and real["cmdline"]
    _state(reports, "r5",
           {"type": "process", "name": "no-start-time", "pid": sleeper.pid, "pgid": sleeper.pid},
           {"type": "process", "name": "other-cmdline", **real, "cmdline": "0" * 64},
           {"type": "process", "name": "other-group", **real, "pgid": 1},
           {"type": "process", "name": "reused-pid", **real, "started": "1"})
    assert janitor(reports) == 3
    assert sleeper.poll() is None and group_alive(sleeper.pid)

    _state(reports, "r6", {"type": "process", "name": "mine", **real})
    (reports / "state" / "r5.json").unlink()
    assert janitor(reports) == 0
    sleeper.wait(timeout=20)
    assert not group_alive(sleeper.pid)


def test_a_corrupt_state_file_is_skipped_and_the_sweep_goes_on(tmp_path, capsys):
    reports = tmp_path / "reports"
    (reports / "state").mkdir(parents=True)
    (reports / "state" / "a-corrupt.json").write_text("{not json")
    (reports / "state" / "b-binary.json").write_bytes(b"\xff\xfe\x00")
    (reports / "state" / "c-shape.json").write_text(json.dumps({"run_id": 1, "resources": "x"}))
    mine = make_owned_dir("r7")
    _state(reports, "r7", {"type": "dir", "path": str(mine)})
    assert janitor(reports) == 0
    assert not mine.exists()
    err = capsys.readouterr().err
    assert err.count("warning: skipping") == 3 and "Traceback" not in err
