"""Ctrl-C through `tox -e matrix` at each phase of a cell: what is left, and how long it takes.

    flock /work/helpers/heavy.lock python benchmarks/interrupt_under_tox.py [--phase NAME …]

Runs the real `tox -e matrix -- --platform local --channel 2.22/stable --scenario tracking` in
its own session (its own tox work dir, .tox/interrupt-test, as tests/harness/run/test_interrupt.py)
and sends SIGINT to its whole process group, as a terminal does on Ctrl-C; tox relays it to the
harness twice more. Phases: `environment` (Ctrl-C while a fresh MLflow env is built, in a temporary
cache dir), `deploy` (while the server starts), `scenarios` (the suite blocks until interrupted),
`teardown` (right after the suite passed, while the cell is collected and torn down). Leftovers:
every process group the run state recorded, every port they listened on, every temp dir, the state
file's own list. One JSON line per phase; exit 1 if anything was left or tox had to kill.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("leftovers", ROOT / "tests/fakes/leftovers.py")
leftovers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["leftovers"] = leftovers  # its dataclasses look their module up
_spec.loader.exec_module(leftovers)  # type: ignore[union-attr]

ARGS = ["--platform", "local", "--channel", "2.22/stable", "--scenario", "tracking"]
TRIGGERS = {"environment": r"building the MLflow 2\.22\.0 environment",
            "deploy": r"local · 2\.22/stable  deploy…",
            "scenarios": r"^SLOW_SCENARIO_STARTED$",
            "teardown": r"local · 2\.22/stable  scenarios tracking: .*\(\d+s\)"}
SLOW = ("import os, time, pathlib\n\n"
        "def test_blocks(mlflow_client):\n"
        "    assert mlflow_client.search_experiments()\n"
        "    pathlib.Path(os.environ['SLOW_SCENARIO_MARKER']).write_text('started')\n"
        "    time.sleep(300)\n")
QUICK = "def test_answers(mlflow_client):\n    assert mlflow_client.search_experiments()\n"


def scenarios_dir(tmp: Path, phase: str) -> Path:
    root = tmp / "scenarios"
    root.mkdir()
    shutil.copy(ROOT / "scenarios" / "pytest.ini", root / "pytest.ini")
    (root / "test_tracking.py").write_text(SLOW if phase == "scenarios" else QUICK)
    return root


def measure(phase: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-bench-") as name:
        tmp = Path(name)
        reports, marker = tmp / "reports", tmp / "started"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TOX_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(MLFLOW_MATRIX_SCENARIOS_DIR=str(scenarios_dir(tmp, phase)),
                   SLOW_SCENARIO_MARKER=str(marker))
        if phase == "environment":
            env["MLFLOW_MATRIX_CACHE"] = str(tmp / "cache")
        proc = subprocess.Popen(
            ["tox", "--workdir", str(ROOT / ".tox" / "interrupt-test"), "-e", "matrix", "--",
             *ARGS, "--reports-dir", str(reports)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        lines: list[str] = []
        seen = threading.Event()
        trigger = re.compile(TRIGGERS[phase])

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                if trigger.search(line):
                    seen.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        snapshot = None
        deadline = time.monotonic() + 900
        while not (seen.is_set() or marker.exists()) and proc.poll() is None \
                and time.monotonic() < deadline:
            states = list((reports / "state").glob("*.json"))
            if states and snapshot is None:
                snapshot = leftovers.Snapshot(states[0])
            if snapshot is not None:
                snapshot.take()
            time.sleep(0.1)
        if proc.poll() is not None:
            return {"phase": phase, "error": "the run ended before the phase",
                    "output": lines[-15:]}
        if snapshot is None:
            snapshot = leftovers.Snapshot(next((reports / "state").glob("*.json")))
        snapshot.take()
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        took = time.monotonic() - started
        reader.join(timeout=5)
        left = snapshot.take().leftovers() if snapshot.state_file.exists() else ["no state file"]
        text = "\n".join(lines)
        return {"phase": phase, "seconds_to_exit": round(took, 1), "exit": proc.returncode,
                "leftovers": len(left), "what": left,
                "recorded": {"process_groups": len(snapshot.pgids), "ports": len(snapshot.ports),
                             "dirs": len(snapshot.dirs)},
                "abandoned": "abandoning" in text, "tox_escalated": "SIGKILL" in text,
                "harness_said": next((ln for ln in lines if "Ctrl-C again to abandon" in ln), "")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", action="append", choices=list(TRIGGERS), default=[])
    args = parser.parse_args()
    bad = 0
    for phase in args.phase or list(TRIGGERS):
        result = measure(phase)
        print(json.dumps(result), flush=True)
        bad += bool(result.get("error") or result.get("leftovers") or result.get("abandoned")
                    or result.get("tox_escalated"))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
