"""The time a run has left: cell durations of earlier runs (cache), laid out on the run's slots."""

from __future__ import annotations

import io
import json
from pathlib import Path

from harness.run.eta import Eta, clock_text, load_durations, record_durations
from harness.run.progress import Progress
from harness.run.scheduling import duration_key, expected_durations, previous_durations


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cells_are_laid_out_on_the_slots_longest_first_and_replanned_as_they_run():
    clock = Clock()
    expected = {("local", "a"): 300.0, ("local", "b"): 200.0, ("local", "c"): 100.0}
    eta = Eta(expected, parallel=2, measured=3, clock=clock)
    # a (300) on one slot; b (200) then c (100) on the other: 300 s
    assert eta.left() == 300.0
    assert eta.describe() == "expected to take about 5m 00s (3 of 3 cell(s) measured by earlier runs)"
    eta.started(("local", "a"))
    eta.started(("local", "b"))
    clock.now += 120
    assert eta.left() == 180.0  # a has 180 s to go; b 80 s, then c 100 s: 180
    eta.finished(("local", "b"))  # b ended early: c starts now on the free slot
    eta.started(("local", "c"))
    assert eta.left() == 180.0
    clock.now += 250  # a is 70 s over its time: it is given a tenth more, never "0 left"
    assert eta.left() == 30.0
    eta.finished(("local", "a"))
    eta.finished(("local", "c"))
    assert eta.left() == 0.0


def test_one_slot_adds_up_and_an_unmeasured_run_says_it_guesses():
    eta = Eta({("p", "a"): 60.0, ("p", "b"): 90.0}, parallel=1, clock=Clock())
    assert eta.left() == 150.0
    assert "no earlier run measured these cells: a guess" in eta.describe()
    assert clock_text(3725) == "1h 02m"


def test_durations_round_trip_through_the_cache_file_and_the_last_run_wins(tmp_path: Path):
    cache = tmp_path / "cache" / "durations.json"
    record_durations(cache, {("local", "2.22-stable:tracking"): 61.23})
    record_durations(cache, {("local", "2.22-stable:tracking"): 58.0, ("local-mysql", "x:a"): 9})
    assert load_durations(cache) == {("local", "2.22-stable:tracking"): 58.0,
                                     ("local-mysql", "x:a"): 9.0}
    cache.write_text("{broken")
    assert load_durations(cache) == {}
    assert load_durations(tmp_path / "missing.json") == {}


def test_a_cell_is_known_per_suite_selection_and_the_reports_dir_fills_in(tmp_path: Path):
    from harness.config.matrix import Selection, expand_cells, load_matrix

    matrix = load_matrix(None)
    (full,) = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",)))
    (one,) = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                            scenarios=("tracking",)))
    assert duration_key(full) != duration_key(one)
    cache = tmp_path / "durations.json"
    record_durations(cache, {duration_key(one): 40.0})
    history = previous_durations(tmp_path / "no-reports", cache)
    expected, measured = expected_durations([full, one], history)
    assert measured == 1 and expected[duration_key(one)] == 40.0
    assert expected[duration_key(full)] > 40.0  # guessed from its shape, scaled to the measured
    cell = tmp_path / "reports" / "local" / one.id / "cell.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"platform": "local", "cell": one.id, "scenarios": ["tracking"],
                                "status": "passed", "duration_s": 44.0}))
    assert previous_durations(tmp_path / "reports", cache) == {duration_key(one): 44.0}


def test_progress_lines_show_elapsed_and_what_is_left():
    out = io.StringIO()
    progress = Progress(out)
    progress("no estimate yet")
    progress.left = lambda: 250.0
    progress("local · 2.22/stable  deploy…")
    progress.left = lambda: 20.0
    progress("almost")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[00:00] no estimate yet"
    assert lines[1] == "[00:00 ~4m left] local · 2.22/stable  deploy…"
    assert lines[2] == "[00:00 ~<1m left] almost"
