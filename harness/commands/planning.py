"""`mlflow-matrix plan`: every step a run would take, printed without side effects.

The cell's steps after deploy come from `harness.run.cell_steps.cell_steps()`, the list the runner
executes; the pytest command line, the deadlines and the report paths come from the same
functions the runner calls. The plan is therefore what `run` does, not a description of it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.config.matrix import DETECT, Cell, Matrix
from harness.config.registry import load_provisioner_class
from harness.run.cell_steps import (
    Step,
    cell_steps,
    context_options,
    log_path,
    pytest_argv,
)
from harness.run.scheduling import Sizing
from harness.system.state import RunState
from provisioners.api import DeploymentPlan, GuideRunner, Provisioner, RunContext, Substrate

RUN_ID = "<run-id>"


def plan_lines(matrix: Matrix, cells: list[Cell], options: Mapping[str, Any], *,
               reports_dir: Path = Path("reports"), pytest_args: Sequence[str] = (),
               sizing: Sizing | None = None) -> Iterator[str]:
    from harness.run.runner import scenarios_root

    sizing = sizing or Sizing(1, 1, 1)

    by_platform: dict[str, list[Cell]] = {}
    for cell in cells:
        by_platform.setdefault(cell.platform.name, []).append(cell)
    yield f"matrix: {matrix.path}"
    yield (f"reports: {reports_dir} (this run's; a previous run there moves to "
           f"{reports_dir}/runs/<its run id>/), run state: {reports_dir}/state/{RUN_ID}.json")
    yield (f"{len(cells)} cell(s), {sizing.parallel} at once (longest first), "
           f"{sizing.describe()}; pytest arguments after `--`: {' '.join(pytest_args) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-plan-") as tmp:
        state = RunState(Path(tmp) / "state.json", "plan")
        for name, platform_cells in by_platform.items():
            platform = matrix.platforms[name]
            context = RunContext(run_id=RUN_ID, platform=platform, work_dir=Path(tmp) / name,
                                 state=state, env_for=_no_env,
                                 options=context_options(matrix, options))
            provisioner = load_provisioner_class(platform.kind)(context)
            yield f"platform {name} (kind {platform.kind})"
            yield "  provision:"
            for step in provisioner.plan():
                yield f"    {step}"
            for cell in platform_cells:
                cell_dir = reports_dir / name / cell.id
                yield (f"  cell {cell.id}: MLflow {_version(cell.mlflow_label)}, suites "
                       f"{', '.join(cell.scenarios)} → {cell_dir}/")
                yield from (f"    {line}" for line in _cell_plan(
                    matrix, cell, provisioner, cell_dir, scenarios_root(), pytest_args,
                    sizing.workers_for(cell)))
            yield "  teardown: platform down (idempotent; also on failure, Ctrl-C, SIGTERM)"


def _cell_plan(matrix: Matrix, cell: Cell, provisioner: Provisioner, cell_dir: Path,
               scenarios_dir: Path, pytest_args: Sequence[str], workers: int) -> Iterator[str]:
    plan = provisioner.deployment_plan(cell)
    # the runner asks the deployment what it can do (restart, upgrade): so does the plan
    deployment = provisioner.deployment(Substrate(name=cell.platform.name), cell_dir)
    for channel in [cell.channel] + ([cell.upgrade_to] if cell.upgrade_to else []):
        if channel.mlflow_version == DETECT:
            continue
        pins = " ".join(matrix.requirements_for(channel))
        yield (f"environment: MLflow {channel.mlflow_version} virtualenv (uv, cached; deadline "
               f"timeouts.env_build = {matrix.timeouts.env_build}s): "
               f"mlflow=={channel.mlflow_version} {pins}".rstrip())
    if plan.deploy:
        yield from (f"deploy: {line}" for line in plan.deploy)
    else:
        yield (f"deploy: MLflow {_version(cell.channel.mlflow_version)} by the per-cell steps "
               "under provision above")
    if cell.channel.mlflow_version == DETECT:
        yield (f"environment: after deploy, the MLflow virtualenv of the version GET /version "
               f"reports ({_version(DETECT)}; uv, cached; deadline timeouts.env_build = "
               f"{matrix.timeouts.env_build}s)")
    guides = matrix.guides_for(cell)
    if cell.upgrade_to:
        yield ("procedure: " + ("; ".join(f"{g.title} ({g.url}, read {g.read})" for g in guides)
                                or "no published guide: the charm's refresh as the harness "
                                   "knows it"))
    for step in cell_steps(cell, deployment, guides):
        yield from _step_plan(cell, step, plan, cell_dir, scenarios_dir, pytest_args, workers,
                              deployment)
    yield from plan.close or (f"diagnostics → {cell_dir}/diagnostics/; then the deployment's "
                              "teardown (per-cell steps above)",)


def _step_plan(cell: Cell, step: Step, plan: DeploymentPlan, cell_dir: Path,
               scenarios_dir: Path, pytest_args: Sequence[str], workers: int,
               deployment: object = None) -> Iterator[str]:
    if step.action in ("skip", "note"):
        yield f"{'skipped: ' if step.action == 'skip' else ''}{step.reason}"
    elif step.action == "restart":
        yield from (f"restart: {line}" for line in plan.restart)
    elif step.action == "upgrade":
        target = cell.upgrade_to
        assert target is not None
        when = " (only if every before-upgrade check passed)" if step.only_if_passed else ""
        yield f"upgrade to {target.name} (MLflow {target.mlflow_version}){when}:"
        yield from (f"  {line}" for line in plan.upgrade)
    elif step.action == "guide":
        assert isinstance(deployment, GuideRunner) and step.guide and step.guide_step
        guide, gs = step.guide, step.guide_step
        when = " (only if every before-upgrade check passed)" if step.only_if_passed else ""
        yield f"[{guide.kind}/{gs.id}] the guide: {gs.text}{when}"
        yield from (f"  runs: {line}" for line in deployment.guide_step_plan(guide, gs, cell))
        if gs.wait:
            yield ("  then wait until " + ", ".join(f"{app} is {status}"
                                                   for app, status in gs.wait.items()))
        if gs.remedy:
            yield (f"  if it fails as known defect {gs.remedy.defect}: [remedy/{gs.id}] "
                   f"{gs.remedy.command} ({gs.remedy.link}), then the guide goes on")
    elif step.action in ("destroy", "redeploy"):
        yield f"[{step.action}] {step.reason}" + (
            ": the deploy steps above, at the target channel" if step.action == "redeploy" else
            ": teardown as below, the backup kept")
    elif step.action == "rollback":
        yield (f"[rollback] move the server back to {cell.channel.name}: must be refused or "
               f"detected ({step.reason[:160]})")
    else:
        version = {"server": cell.channel.mlflow_version,
                   "source": cell.channel.mlflow_version,
                   "target": cell.upgrade_to.mlflow_version if cell.upgrade_to else ""}[step.client]
        label = (f"[{step.phase}] " if step.phase else "[alone, one client process] "
                 if step.serial else f"[+ the {step.with_phase} writes] " if step.with_phase
                 else "")
        note = " (informational: not counted against the cell)" if step.informational else ""
        python = f"<MLflow {_version(version)} env>/bin/python"
        argv = pytest_argv(python, scenarios_dir, step.suites, cell_dir, step.phase, pytest_args,
                           workers=workers, serial=step.serial)
        yield f"scenarios {label}with the MLflow {_version(version)} client{note}:"
        yield f"  {' '.join(argv)}"
        yield f"  log: {log_path(cell_dir, step.phase, step.serial)}"


def _version(version: str) -> str:
    return version.replace(DETECT, "<detected>")


def _no_env(channel: Any) -> Any:
    raise RuntimeError("plan builds no environment")
