"""cell_steps: the observability suite's restart check runs in the after-restart phase."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.cell_steps import cell_steps
from harness.system.state import RunState
from provisioners.api import RunContext
from provisioners.local import LocalDeployment


@pytest.mark.parametrize(("scenarios", "after_restart"), [
    (("persistence", "observability"), ("persistence", "observability")),
    (("persistence", "tracking"), ("persistence",)),
])
def test_after_restart_runs_the_suites_that_watch_the_restart(tmp_path: Path, scenarios,
                                                              after_restart):
    matrix = load_matrix()
    (cell,) = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                             scenarios=scenarios))
    context = RunContext(run_id="r1", platform=matrix.platforms["local"], work_dir=tmp_path,
                         state=RunState(tmp_path / "state.json", "r1"), env_for=lambda c: None)
    steps = cell_steps(cell, LocalDeployment(context, cell.platform.settings, tmp_path))
    (after,) = [s for s in steps if s.phase == "after-restart"]
    assert after.suites == after_restart
    assert [s.action for s in steps].index("restart") < steps.index(after)
