"""Seconds from killing a deployed component mid-scenario to the cell's *broken* verdict.

    flock /work/helpers/heavy.lock python benchmarks/dead_component.py [--json OUT]
        [--case local:2.22/stable:mlflow-server …]

Each case runs one cell whose scenario blocks after its first request (a scenarios dir of one
test), SIGKILLs the component's whole process group, as recorded in the run's state file, and
times the harness until it exits. Target: ≤ 30 s, exit 3, the component named in the verdict.
tests/harness/run/test_watchdog.py runs one case per component.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# component → (process name in the state file, how the verdict names it)
COMPONENTS = {"mlflow-server": ("mlflow-server", "MLflow server"),
              "s3": ("seaweedfs", "S3 (SeaweedFS)"),
              "sql": ("mariadb", "SQL store (MariaDB)")}
CASES = ("local:2.22/stable:mlflow-server", "local:2.22/stable:s3",
         "local-mysql:2.22/stable:sql", "local:latest/edge:mlflow-server",
         "local:latest/edge:s3", "local-mysql:latest/edge:sql")
BLOCKING_SUITE = (
    "import os, time, pathlib\n\n"
    "def test_blocks(mlflow_client):\n"
    "    assert mlflow_client.search_experiments()\n"
    "    pathlib.Path(os.environ['SLOW_SCENARIO_MARKER']).write_text('started')\n"
    "    time.sleep(600)\n")


@dataclass(frozen=True)
class Death:
    case: str
    exit_code: int
    seconds_to_verdict: float   # SIGKILL → harness exited
    status: str                 # the cell's status in cell.json
    message: str                # the cell's message
    named: bool                 # the verdict names the component
    left_processes: int         # processes of the run still alive after it exited


def blocking_scenarios(where: Path) -> Path:
    root = where / "scenarios"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scenarios" / "pytest.ini", root / "pytest.ini")
    (root / "test_tracking.py").write_text(BLOCKING_SUITE, encoding="utf-8")
    return root


def kill_mid_scenario(case: str, where: Path, *, timeout: float = 600) -> Death:
    platform, channel, component = case.split(":")
    process_name, shown = COMPONENTS[component]
    reports, marker = where / "reports", where / "started"
    env = {**os.environ, "MLFLOW_MATRIX_SCENARIOS_DIR": str(blocking_scenarios(where)),
           "SLOW_SCENARIO_MARKER": str(marker), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", platform, "--channel", channel,
         "--scenario", "tracking", "--reports-dir", str(reports), "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgids: set[int] = set()
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{case}: the scenario never started:\n"
                                   + (proc.stdout.read() if proc.stdout else "")[-3000:])
            time.sleep(0.3)
        (state_file,) = (reports / "state").glob("*.json")
        resources = json.loads(state_file.read_text())["resources"]
        pgids = {r["pgid"] for r in resources if r["type"] == "process"}
        (target,) = [r["pgid"] for r in resources if r.get("name") == process_name]
        os.killpg(target, signal.SIGKILL)
        killed = time.monotonic()
        out, _ = proc.communicate(timeout=timeout)
        seconds = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (cell,) = reports.glob("*/*/cell.json")
    body = json.loads(cell.read_text())
    alive = [p for p in pgids if _group_alive(p)]
    for pgid in alive:  # never leave them to the next test
        os.killpg(pgid, signal.SIGKILL)
    return Death(case, proc.returncode, round(seconds, 1), body["status"], body["message"],
                 shown in body["message"] and shown in out, len(alive))


def _group_alive(pgid: int) -> bool:
    """A member that is not a zombie (the killed component's zombie waits for init here)."""
    sys.path.insert(0, str(ROOT))
    from harness.system.procs import group_alive

    return group_alive(pgid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", default=[], choices=CASES)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for case in args.case or CASES:
        with tempfile.TemporaryDirectory(prefix="dead-component-") as where:
            try:
                death = kill_mid_scenario(case, Path(where))
            except Exception as exc:  # one case that could not run does not hide the others
                print(f"{case:<36} could not run: {exc}", flush=True)
                continue
        rows.append(death)
        print(f"{case:<36} exit {death.exit_code}  {death.seconds_to_verdict:5.1f}s  "
              f"{death.status}  named={death.named}  left={death.left_processes}  "
              f"{death.message[:90]}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
