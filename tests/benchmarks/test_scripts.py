"""The benchmark scripts stay runnable: they import the harness as it is now, and the analysis
of a run reads real reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
REPORTS = ROOT / "tests" / "reporting" / "data" / "reports"


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
