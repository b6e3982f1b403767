"""The benchmark scripts stay runnable: they import the harness as it is now, and the analysis
of a run reads real reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
REPORTS = ROOT / "tests" / "harness" / "reporting" / "data" / "reports"


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_request_latency_imports_the_current_harness():
    done = _script("request_latency.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "--variant" in done.stdout


def test_matrix_bench_analyses_recorded_reports(tmp_path: Path):
    out = tmp_path / "figures.json"
    done = _script("matrix_bench.py", "--analyze", str(REPORTS), "--json", str(out))
    assert done.returncode == 0, done.stderr
    cells = sorted(p.parent.name for p in REPORTS.glob("*/*/cell.json"))
    assert cells and all(cell in done.stdout for cell in cells)
    assert out.read_text().count('"cell"') == len(cells)


def test_cpu_busy_fraction_is_read_from_proc_stat():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import matrix_bench
    finally:
        sys.path.pop(0)
    assert matrix_bench.busy_fraction((10, 100), (60, 200)) == 0.5
    assert matrix_bench.busy_fraction(None, (1, 2)) is None
    ticks = matrix_bench.cpu_ticks()
    assert ticks is None or 0 <= ticks[0] <= ticks[1]


def test_cpu_by_process_counts_a_busy_child_and_passes_its_exit_code(tmp_path: Path):
    out = tmp_path / "cpu.json"
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n" \
           "raise SystemExit(3)"
    done = _script("cpu_by_process.py", "--json", str(out), "--", sys.executable, "-c", busy)
    assert done.returncode == 3, done.stderr
    figures = json.loads(out.read_text())
    assert figures["exit_code"] == 3
    # machine-wide by design (killed servers are reaped by init): a lower bound only
    assert sum(figures["cpu_s"].values()) >= 0.8, figures


def test_cpu_by_process_names_the_process_kinds_of_a_cell():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import cpu_by_process
    finally:
        sys.path.pop(0)
    kind = cpu_by_process.kind_of
    assert kind("/env/bin/python /env/bin/huey_consumer mlflow.server.jobs.x") == \
        "MLflow 3 job consumers (huey)"
    assert kind("/env/bin/python -c from multiprocessing.spawn import spawn_main; "
                "spawn_main(tracker_fd=5, pipe_handle=7) --multiprocessing-fork") == \
        "MLflow 3 uvicorn workers (spawned)"
    assert kind("/env/bin/python /env/bin/gunicorn -b 127.0.0.1:5000 -w 4 mlflow.server:app") == \
        "MLflow 2 gunicorn (master + workers)"
    assert kind("/env/bin/python -m pytest /s/test_tracking.py -n 4") == \
        "pytest (controller or serial run)"
