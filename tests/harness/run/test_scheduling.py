from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from harness.config.matrix import DEFAULT_MATRIX, Selection, expand_cells, load_matrix
from harness.run.scheduling import (
    GIB,
    EnvPrebuilder,
    Machine,
    Sizing,
    answers_late,
    channels_of,
    default_parallel,
    default_workers,
    estimate,
    longest_first,
    previous_durations,
    sized,
    xdist_args,
)


def _default_cells():
    matrix = load_matrix(DEFAULT_MATRIX)
    d = matrix.defaults
    return expand_cells(matrix, Selection(platforms=d.platforms, channels=d.channels,
                                          upgrades=d.upgrades))


def test_parallel_follows_cores_and_is_capped_by_memory():
    cells = _default_cells()
    assert default_parallel(cells, Machine(cores=2, memory=24 * GIB)) == 2
    assert default_parallel(cells, Machine(cores=16, memory=64 * GIB)) == len(cells)
    # 3.x cells need ~2 GiB each: 7 GiB free (2 reserved) fits two of them
    assert default_parallel(cells, Machine(cores=16, memory=7 * GIB)) == 2
    assert default_parallel(cells, Machine(cores=8, memory=1 * GIB)) == 1
    assert default_parallel(cells[:1], Machine(cores=8, memory=64 * GIB)) == 1


def test_workers_fill_the_cores_left_to_each_cell_within_the_servers_workers():
    assert default_workers(2, Machine(cores=2, memory=24 * GIB)) == 2
    assert default_workers(1, Machine(cores=2, memory=24 * GIB)) == 4
    assert default_workers(1, Machine(cores=32, memory=64 * GIB)) == 4
    assert default_workers(10, Machine(cores=2, memory=24 * GIB)) == 2


def test_explicit_sizes_win():
    cells = _default_cells()
    assert sized(cells, Machine(2, 24 * GIB), parallel=3, workers=1) == Sizing(3, 1, 1)
    assert sized(cells, Machine(2, 24 * GIB)) == Sizing(2, 2, 4)


def test_cells_whose_server_is_multi_worker_uvicorn_get_the_servers_worker_count():
    cells = {(c.platform.name, c.id): c for c in _default_cells()}
    sizing = sized(list(cells.values()), Machine(2, 24 * GIB))
    edge = cells[("local", "latest-edge")]  # MLflow 3.14: uvicorn, 4 workers
    assert answers_late(edge) and sizing.workers_for(edge) == 4
    for name in ("2.22-stable", "2.15-stable", "upgrade-2.22-stable-to-latest-edge"):
        assert not answers_late(cells[("local", name)])  # gunicorn, or phased (serial) runs
        assert sizing.workers_for(cells[("local", name)]) == 2
    assert "4 against MLflow >= 3.3.0" in sizing.describe()
    fixed = sized(list(cells.values()), Machine(2, 24 * GIB), workers=3)
    assert fixed.workers_for(edge) == 3 and fixed.describe() == "3 pytest-xdist worker(s) per cell"


def test_xdist_only_for_the_unphased_run():
    assert xdist_args(3, phased=False) == ["-n", "3", "--dist", "worksteal"]
    assert xdist_args(3, phased=True) == []
    assert xdist_args(1, phased=False) == []


def test_longest_first_from_shape_then_from_the_previous_run(tmp_path: Path):
    cells = _default_cells()
    ordered = longest_first(cells)
    assert estimate(ordered[0]) == max(estimate(c) for c in cells)
    # MLflow 3 and MySQL cells are expected to take longer than their 2.x / SQLite twins
    first = ordered[0]
    assert first.platform.name == "local-mysql"
    assert "3." in first.mlflow_label
    # a previous run's measured durations take over
    quick = cells[0]
    for i, cell in enumerate(cells):
        path = tmp_path / cell.platform.name / cell.id / "cell.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = 999 if cell is quick else 10 + i
        path.write_text(json.dumps({"platform": cell.platform.name, "cell": cell.id,
                                    "scenarios": list(cell.scenarios),
                                    "status": "passed", "duration_s": seconds}))
    history = previous_durations(tmp_path)
    assert len(history) == len(cells)
    assert longest_first(cells, history)[0] is quick


def test_skipped_or_unreadable_cells_are_not_history(tmp_path: Path):
    good = tmp_path / "local" / "a" / "cell.json"
    good.parent.mkdir(parents=True)
    good.write_text(json.dumps({"platform": "local", "cell": "a", "status": "failed",
                                "scenarios": ["tracking"], "duration_s": 50}))
    skipped = tmp_path / "local" / "b" / "cell.json"
    skipped.parent.mkdir(parents=True)
    skipped.write_text(json.dumps({"platform": "local", "cell": "b", "status": "skipped",
                                   "scenarios": ["tracking"], "duration_s": 1}))
    broken = tmp_path / "local" / "c" / "cell.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    assert previous_durations(tmp_path) == {("local", "a:tracking"): 50.0}
    assert previous_durations(tmp_path / "missing") == {}


def test_envs_for_all_releases_build_concurrently_and_errors_wait_for_the_cell():
    channels = channels_of(_default_cells())
    assert sorted(c.mlflow_version for c in channels) == ["2.15.1", "2.22.0", "3.14.0"]
    running, peak, lock = [0], [0], threading.Lock()
    built = []

    def env_for(channel):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        if channel.mlflow_version == "2.15.1":
            raise RuntimeError("no such release")
        built.append(channel.mlflow_version)

    prebuild = EnvPrebuilder(env_for, channels, concurrency=len(channels)).start()
    prebuild.shutdown()
    assert peak[0] == 3
    assert sorted(built) == ["2.22.0", "3.14.0"]
    assert str(prebuild.errors["2.15.1"]) == "no such release"
