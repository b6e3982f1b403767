"""Hostile input ends with exit 2, one screen, no traceback, nothing left behind.

The cases live in benchmarks/hostile_inputs.py, which also measures their times (a timing is a
benchmark figure, not an assertion); each test records its seconds as a junit property.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import hostile_inputs
finally:
    sys.path.pop(0)


@pytest.mark.parametrize("case", hostile_inputs.CASES, ids=lambda c: c.id)
def test_hostile_input_is_refused_with_exit_2(case, tmp_path, record_property):
    outcome, done = hostile_inputs.run_case(case, tmp_path / "cwd", timeout=60)
    record_property("seconds", outcome.seconds)
    record_property("cpu_seconds", outcome.cpu_seconds)
    assert outcome.exit_code == 2, done.stderr[-2000:]
    assert not outcome.traceback, done.stderr[-2000:]
    assert done.stderr.strip().startswith(("error:", "usage:", "mlflow-matrix")), done.stderr[:500]
    assert outcome.stderr_lines <= 30 and outcome.stderr_chars <= 3000, done.stderr[:3000]
    assert hostile_inputs.BIG[:1000] not in done.stderr + done.stdout
    assert outcome.left_in_cwd == () and outcome.left_in_tmp == ()


def test_there_are_at_least_forty_cases():
    assert len({c.id for c in hostile_inputs.CASES}) == len(hostile_inputs.CASES) >= 40
