"""Where a matrix run's time goes, per cell and in total, serial vs pytest-xdist in one invocation.

    python benchmarks/matrix_bench.py                          # default matrix, serial then xdist
    python benchmarks/matrix_bench.py --mode xdist --json after.json -- --platform local
    python benchmarks/matrix_bench.py --analyze reports/ --log run.log   # an earlier run

Per cell: env build (the environment phases), deploy, each pytest invocation (suites; process
start-up included), restart, upgrade, collect + teardown, and the *floor*: the sum of the tests'
own call durations from the Allure results (what a cell cannot beat when run serially). Ratios,
because the machine is shared: cell wall / (deploy + floor), and matrix wall / longest cell.
The load average is recorded before and after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROGRESS = re.compile(r"^\[(\d+):(\d\d)\] (?P<title>.+?)  (?P<what>scenarios .+?): (?P<summary>.*) "
                      r"\((?P<secs>\d+)s\)$")
MODES = {"serial": ["--workers", "1"], "xdist": []}


def floor_seconds(results: Path) -> tuple[float, int]:
    """Sum of the scenario tests' call durations (allure-pytest start/stop) and their count."""
    total, count = 0.0, 0
    for path in results.glob("*-result.json"):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if str(body.get("fullName", "")).startswith("lifecycle."):
            continue
        if body.get("start") and body.get("stop"):
            total += (body["stop"] - body["start"]) / 1000
            count += 1
    return total, count


def suite_runs(log_text: str) -> dict[str, dict[str, float]]:
    """Cell title → {pytest invocation: seconds as the runner measured it}."""
    found: dict[str, dict[str, float]] = {}
    for line in log_text.splitlines():
        match = PROGRESS.match(line.strip())
        if match:
            found.setdefault(match["title"], {})[match["what"]] = float(match["secs"])
    return found


def analyze(reports: Path, log_text: str) -> dict[str, Any]:
    runs = suite_runs(log_text)
    cells = []
    for path in sorted(reports.glob("*/*/cell.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        phases: dict[str, float] = {}
        for phase in body.get("phases", []):
            phases[phase["name"]] = phases.get(phase["name"], 0.0) + phase["duration_s"]
        floor, tests = floor_seconds(path.parent / "allure-results")
        title = f"{body['platform']} · {body['channel']}"
        suites = runs.get(title, {})
        deploy = phases.get("deploy", 0.0)
        wall = float(body.get("duration_s") or 0.0)
        cells.append({
            "platform": body["platform"], "cell": body["cell"], "status": body["status"],
            "counts": body.get("counts", {}), "tests": tests, "wall_s": wall,
            "env_s": phases.get("environment", 0.0), "deploy_s": deploy,
            "restart_s": phases.get("restart", 0.0), "upgrade_s": phases.get("upgrade", 0.0),
            "teardown_s": phases.get("teardown", 0.0) + phases.get("collect", 0.0),
            "suites_s": suites, "floor_s": round(floor, 1),
            "overhead_ratio": round(wall / (deploy + floor), 2) if deploy + floor else None,
        })
    longest = max((c["wall_s"] for c in cells), default=0.0)
    return {"cells": cells, "longest_cell_s": longest}


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from /proc/stat: is the run CPU-bound or waiting?"""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if not before or not after or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def run_mode(mode: str, run_args: list[str], reports: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "harness", "run", "--reports-dir", str(reports),
            *MODES[mode], *run_args]
    load_before = os.getloadavg()
    print(f"== {mode}: {' '.join(argv[2:])} (load {load_before[0]:.2f})", file=sys.stderr,
          flush=True)
    t0, cpu0 = time.monotonic(), cpu_ticks()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - t0
    busy = busy_fraction(cpu0, cpu_ticks())
    (reports / "bench-run.log").write_text(proc.stdout, encoding="utf-8")
    result = analyze(reports, proc.stdout)
    result.update(mode=mode, exit_code=proc.returncode, matrix_wall_s=round(wall, 1),
                  load_before=load_before, load_after=os.getloadavg(),
                  cpu_busy=round(busy, 2) if busy is not None else None)
    result["matrix_over_longest"] = (round(wall / result["longest_cell_s"], 2)
                                     if result["longest_cell_s"] else None)
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"-- {result['mode']}: exit {result.get('exit_code')}, matrix wall "
             f"{result['matrix_wall_s']:.0f}s, longest cell {result['longest_cell_s']:.0f}s, "
             f"matrix/longest {result['matrix_over_longest']}, load "
             f"{result['load_before'][0]:.1f}→{result['load_after'][0]:.1f}, CPU busy "
             f"{_percent(result.get('cpu_busy'))} of {os.cpu_count()} cores",
             f"{'platform':12} {'cell':34} {'status':13} {'tests':>5} {'wall':>5} {'env':>4} "
             f"{'deploy':>6} {'suites':>7} {'restart':>7} {'upgrade':>7} {'down':>5} "
             f"{'floor':>6} {'wall/(deploy+floor)':>19}"]
    for c in result["cells"]:
        lines.append(
            f"{c['platform']:12} {c['cell']:34} {c['status']:13} {c['tests']:5d} "
            f"{c['wall_s']:5.0f} {c['env_s']:4.0f} {c['deploy_s']:6.1f} "
            f"{sum(c['suites_s'].values()):7.0f} {c['restart_s']:7.1f} {c['upgrade_s']:7.1f} "
            f"{c['teardown_s']:5.1f} {c['floor_s']:6.1f} {c['overhead_ratio'] or 0:19.2f}")
        for what, secs in c["suites_s"].items():
            lines.append(f"{'':14}{what}: {secs:.0f}s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, run_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", action="append", choices=sorted(MODES),
                        help="serial (--workers 1) and/or xdist (the default sizing); "
                        "default: both, serial first")
    parser.add_argument("--reports-dir", type=Path, help="keep each mode's reports under DIR/MODE")
    parser.add_argument("--analyze", type=Path, metavar="DIR",
                        help="only analyse an earlier run's reports directory")
    parser.add_argument("--log", type=Path, help="with --analyze: that run's console output")
    parser.add_argument("--label", default="", help="a name for this measurement in the JSON")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(own)

    results = []
    if args.analyze:
        log_text = args.log.read_text(encoding="utf-8") if args.log else ""
        result = analyze(args.analyze, log_text)
        walls = [float(m[1]) * 60 + float(m[2]) for m in re.finditer(
            r"^\[(\d+):(\d\d)\] ", log_text, re.M)]
        wall = max(walls, default=0.0)
        result.update(mode="analyzed", matrix_wall_s=wall, load_before=(0, 0, 0),
                      load_after=(0, 0, 0))
        result["matrix_over_longest"] = (round(wall / result["longest_cell_s"], 2)
                                         if result["longest_cell_s"] and wall else None)
        results.append(result)
    else:
        root = args.reports_dir or Path(tempfile.mkdtemp(prefix="mlflow-matrix-bench-"))
        for mode in args.mode or ["serial", "xdist"]:
            results.append(run_mode(mode, run_args, root / mode))
    for result in results:
        print(render(result))
    if len(results) == 2:
        a, b = results
        print(f"== {b['mode']} / {a['mode']}: matrix wall "
              f"{b['matrix_wall_s'] / a['matrix_wall_s']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "cores": os.cpu_count(),
                                         "runs": results}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
