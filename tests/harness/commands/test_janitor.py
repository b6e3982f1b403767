"""A SIGKILLed run leaves a state file; `janitor` releases everything it lists."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.system.procs import group_alive

ROOT = Path(__file__).resolve().parents[3]


def test_janitor_releases_what_a_killed_run_left(tmp_path, slow_scenarios):
    reports = tmp_path / "reports"
    marker = tmp_path / "started"
    env = {**os.environ, "MLFLOW_MATRIX_SCENARIOS_DIR": str(slow_scenarios),
           "SLOW_SCENARIO_MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", "local", "--channel",
         "2.22/stable", "--scenario", "tracking", "--reports-dir", str(reports)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pgids: set[int] = set()
    try:
        deadline = time.monotonic() + 420
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        (state_file,) = (reports / "state").glob("*.json")
        state = json.loads(state_file.read_text())
        assert state["status"] == "running"
        pgids = {r["pgid"] for r in state["resources"] if r["type"] == "process"}
        dirs = [Path(r["path"]) for r in state["resources"] if r["type"] == "dir"]
        assert pgids and all(group_alive(p) for p in pgids), "children should outlive SIGKILL"
        assert dirs and all(d.exists() for d in dirs)

        dry = subprocess.run([sys.executable, "-m", "harness", "janitor", "--dry-run",
                              "--reports-dir", str(reports)], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert dry.returncode == 0 and "would release process seaweedfs" in dry.stdout
        assert all(group_alive(p) for p in pgids), "--dry-run must not touch anything"

        done = subprocess.run([sys.executable, "-m", "harness", "janitor",
                               "--reports-dir", str(reports)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "released process mlflow-server" in done.stdout
        assert not any(group_alive(p) for p in pgids)
        assert not any(d.exists() for d in dirs)
        assert json.loads(state_file.read_text())["resources"] == []
        again = subprocess.run([sys.executable, "-m", "harness", "janitor",
                                "--reports-dir", str(reports)], capture_output=True, text=True,
                               cwd=ROOT, timeout=60)
        assert "nothing to release" in again.stdout
    finally:
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
