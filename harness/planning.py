"""`mlflow-matrix plan`: every step a run would take, printed without side effects."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.cell import RESTART_SUITE
from harness.matrix import Cell, Matrix
from harness.registry import load_provisioner_class
from harness.state import RunState
from provisioners.api import RunContext


def plan_lines(matrix: Matrix, cells: list[Cell], options: Mapping[str, Any]) -> Iterator[str]:
    by_platform: dict[str, list[Cell]] = {}
    for cell in cells:
        by_platform.setdefault(cell.platform.name, []).append(cell)
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-plan-") as tmp:
        state = RunState(Path(tmp) / "state.json", "plan")
        for name, platform_cells in by_platform.items():
            platform = matrix.platforms[name]
            context = RunContext(run_id="<run-id>", platform=platform, work_dir=Path(tmp),
                                 state=state, env_for=_no_env, options=dict(options))
            provisioner = load_provisioner_class(platform.kind)(context)
            yield f"platform {name} (kind {platform.kind})"
            yield "  provision:"
            for step in provisioner.plan():
                yield f"    {step}"
            for cell in platform_cells:
                yield f"  cell {cell.id}: MLflow {cell.mlflow_label}, "\
                      f"suites {', '.join(cell.scenarios)}"
                for step in provisioner.deployment_plan(cell):
                    yield f"    {step}"
                for step in _scenario_plan(matrix, cell):
                    yield f"    {step}"
            yield "  teardown: platform down (idempotent; also on failure, Ctrl-C, SIGTERM)"


def _scenario_plan(matrix: Matrix, cell: Cell) -> Iterator[str]:
    pins = matrix.requirements_for(cell.channel)
    yield (f"client env: mlflow=={cell.channel.mlflow_version} "
           f"{' '.join(pins)} (cached virtualenv, built with uv)")
    suites = " ".join(f"scenarios/test_{s}.py" for s in cell.scenarios)
    if cell.upgrade_to:
        target = cell.upgrade_to
        yield f"pytest {suites} [before-upgrade] with the MLflow {cell.channel.mlflow_version} client"
        migrate = ("`mlflow db upgrade` (the target charm migrates the DB itself)"
                   if target.migrates_db_on_upgrade
                   else "no DB migration (the charm does not run one)")
        yield (f"upgrade to {target.name} (MLflow {target.mlflow_version}): stop the server, "
               f"{migrate}, start the new server on the same store and bucket")
        yield f"pytest {suites} [after-upgrade] with the MLflow {target.mlflow_version} client"
        yield f"pytest {suites} [old-client] informational, MLflow {cell.channel.mlflow_version}"
    else:
        yield f"pytest {suites} -p harness.plugin --alluredir reports/{cell.platform.name}/" \
              f"{cell.id}/allure-results"
        if RESTART_SUITE in cell.scenarios:
            yield "persistence: seed → restart the MLflow server → verify"
    yield f"collect diagnostics → reports/{cell.platform.name}/{cell.id}/diagnostics/"
    yield "teardown the deployment"


def _no_env(channel: Any) -> Any:
    raise RuntimeError("plan builds no environment")
