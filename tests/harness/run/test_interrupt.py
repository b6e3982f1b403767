"""Ctrl-C and SIGTERM leave nothing behind, also when tox relays them (`tox -e matrix`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes.leftovers import Snapshot

ROOT = Path(__file__).resolve().parents[3]
ARGS = ["--platform", "local", "--channel", "2.22/stable", "--scenario", "tracking"]


def _relay_like_tox(proc: subprocess.Popen[str]) -> None:
    """A terminal's Ctrl-C (the whole process group), then tox's two relays of it: one at once
    (its main thread), one when its run thread next polls (within a second)."""
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.8)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)


def _wait_for(marker: Path, proc: subprocess.Popen[str], seconds: float = 420) -> None:
    deadline = time.monotonic() + seconds
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "scenario phase never started"
        time.sleep(0.5)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "tox-relay"])
def test_signal_during_scenarios_releases_everything(tmp_path, slow_scenarios, sig):
    reports = tmp_path / "reports"
    marker = tmp_path / "started"
    env = {**os.environ, "MLFLOW_MATRIX_SCENARIOS_DIR": str(slow_scenarios),
           "SLOW_SCENARIO_MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *ARGS, "--reports-dir", str(reports)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        _wait_for(marker, proc)
        (state_file,) = (reports / "state").glob("*.json")
        seen = Snapshot(state_file).take()
        assert {"seaweedfs", "mlflow-server", "pytest"} <= seen.names
        assert len(seen.ports) >= 9  # 8 SeaweedFS ports + MLflow
        assert seen.dirs and all(d.exists() for d in seen.dirs)

        started = time.monotonic()
        if sig == "tox-relay":
            _relay_like_tox(proc)
        else:
            proc.send_signal(getattr(signal, sig))
        output, _ = proc.communicate(timeout=90)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "tearing down what this run created… (Ctrl-C again to abandon)" in output
    assert "abandon" not in output.split("(Ctrl-C again to abandon)", 1)[1], output
    assert seen.leftovers() == []
    final = json.loads(state_file.read_text())
    assert final["status"] == "interrupted" and final["resources"] == []
    assert took < 60
    # the report says what happened: interrupted, not a broken harness
    cell_dir = reports / "local" / "2.22-stable"
    assert json.loads((cell_dir / "cell.json").read_text())["status"] == "interrupted"
    results = [json.loads(p.read_text()) for p in (cell_dir / "allure-results").glob("*-result.json")]
    assert not [r for r in results if r["fullName"].startswith("harness.")], "shown as harness error"
    assert not [r for r in results if r["status"] == "broken"]
    page = json.loads((reports / "matrix.json").read_text())
    assert [c["display_status"] for c in page["cells"]] == ["interrupted"]
    assert "INTERRUPTED  local · 2.22/stable" in output


def test_only_an_interrupt_after_the_relay_window_abandons_the_teardown(tmp_path):
    """Real signals to a real process; the clock is the test's, so "3 s later" is exact."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        from harness.run.interrupts import Interrupts
        from harness.system.waits import CANCEL
        now = [100.0]
        interrupts = Interrupts(lambda name: "abandoned: release with `HINT`",
                                clock=lambda: now[0]).install()
        interrupts.armed = False  # the cells are already being torn down
        os.kill(os.getpid(), signal.SIGINT)       # the user's Ctrl-C
        assert CANCEL.is_set()
        now[0] += 0.9
        os.kill(os.getpid(), signal.SIGINT)       # tox relays it
        os.kill(os.getpid(), signal.SIGTERM)      # and escalates (old tox.ini defaults)
        print("still tearing down", flush=True)
        now[0] += 5
        os.kill(os.getpid(), signal.SIGINT)       # the user again, after reading the message
        time.sleep(5)
        print("not reached", flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert result.stdout == "still tearing down\n"
    assert result.stderr.count("tearing down what this run created… (Ctrl-C again to abandon)") == 1
    assert result.stderr.strip().endswith("SIGINT again: abandoned: release with `HINT`")


@pytest.mark.skipif(shutil.which("tox") is None, reason="tox is not on PATH")
@pytest.mark.timeout(900)
def test_ctrl_c_through_tox_tears_everything_down(tmp_path, slow_scenarios):
    """`tox -e matrix` itself (its own work dir, so a run in this checkout is not disturbed),
    and a Ctrl-C as a terminal sends it: SIGINT to tox's whole process group."""
    reports = tmp_path / "reports"
    marker = tmp_path / "started"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TOX_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(MLFLOW_MATRIX_SCENARIOS_DIR=str(slow_scenarios), SLOW_SCENARIO_MARKER=str(marker))
    workdir = ROOT / ".tox" / "interrupt-test"  # built once (~1 min), reused afterwards
    proc = subprocess.Popen(
        ["tox", "--workdir", str(workdir), "-e", "matrix", "--", *ARGS,
         "--reports-dir", str(reports)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        _wait_for(marker, proc, seconds=780)
        (state_file,) = (reports / "state").glob("*.json")
        seen = Snapshot(state_file).take()
        assert {"seaweedfs", "mlflow-server", "pytest"} <= seen.names
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "(Ctrl-C again to abandon)" in output, output
    assert "abandon" not in output.split("(Ctrl-C again to abandon)", 1)[1], output
    assert "SIGKILL" not in output and "SIGTERM(" not in output, output  # tox never escalated
    assert seen.leftovers() == []
    assert json.loads(state_file.read_text())["status"] == "interrupted"
    assert "INTERRUPTED  local · 2.22/stable" in output
    assert took < 60
