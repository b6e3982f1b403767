"""A partial run is known before anything deploys: collected in the cell's own MLflow env."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.commands.collection import check_selection
from harness.config.matrix import Selection, adhoc_channel, expand_cells, load_matrix
from harness.config.pytest_args import check_pytest_args
from harness.system.errors import ConfigError

SUITE = '''
import pytest

def test_search_one():
    pass

def test_search_two():
    pass

def test_other():
    pass

@pytest.mark.phase("after-restart")
def test_phased():
    pass
'''


def _cells(scenarios: tuple[str, ...] = ()):
    matrix = load_matrix()
    return matrix, expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                                  scenarios=scenarios))


def test_a_scenario_subset_alone_is_partial_by_suites_without_collecting():
    matrix, cells = _cells(("tracking",))

    def no_env(cell):
        raise AssertionError("nothing to collect for whole suites")

    partial = check_selection(matrix, cells, check_pytest_args([]), ("tracking",), no_env,
                              Path("/nonexistent"), lambda text: None)
    (only,) = partial.values()
    assert (only.selected, only.unit, only.by) == (1, "suites", ("--scenario tracking",))
    assert only.total == len([s for s in matrix.suites if s != "upgrade"])


@pytest.fixture(scope="module")
def env():
    from harness.run.envs import ensure_env

    matrix = load_matrix()
    return ensure_env("2.22.0", matrix.requirements_for(adhoc_channel("2.22.0")), timeout=900)


@pytest.fixture
def scenarios(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    for suite in ("tracking", "artifacts", "registry", "persistence", "security",
                  "observability"):
        (tmp_path / f"test_{suite}.py").write_text(SUITE)
    return tmp_path


def test_a_selection_is_counted_in_the_cells_env_with_every_phase(env, scenarios):
    matrix, cells = _cells(("tracking",))
    partial = check_selection(matrix, cells, check_pytest_args(["-k", "search"]),
                              ("tracking",), lambda cell: env, scenarios, lambda text: None)
    (only,) = partial.values()
    assert (only.selected, only.total, only.unit) == (2, 24, "tests")  # 4 tests × 6 suites
    assert only.by == ("--scenario tracking", "-k search")


def test_a_selection_that_matches_nothing_is_bad_input_before_deploying(env, scenarios):
    matrix, cells = _cells()
    with pytest.raises(ConfigError, match="matches none of its 24 tests") as info:
        check_selection(matrix, cells, check_pytest_args(["-k", "serch"]), (),
                        lambda cell: env, scenarios, lambda text: None)
    assert info.value.exit_code == 2
