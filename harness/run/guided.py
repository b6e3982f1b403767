"""A cell that follows Charmed MLflow's documented procedures, step by step.

Each guide step is a lifecycle phase of its own (`upgrade/<step id>`, `backup/…`, `restore/…`),
so the verdict names the guide and the step that failed. A step that fails on the known defect
its `remedy:` answers is recorded as that defect, the remedy runs next (`remedy/<step id>`), and
the rest of the guide and every after-upgrade check still run: a known defect no longer hides
what follows it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config.guides import SERVER_APP, Guide, GuideStep
from harness.run.phases import PhaseFailed as _PhaseFailed
from harness.run.phases import collect_to as _collect_to
from harness.run.verdicts import check_server_version
from harness.system.errors import InfrastructureError, MatrixError
from provisioners.api import Deployment

if TYPE_CHECKING:
    from harness.config.model import Cell, Channel
    from harness.run.cell import CellOutcome, CellRun
    from harness.run.cell_steps import Step
    from harness.system.endpoint import Endpoint
    from provisioners.api import GuideRunner


def procedure_summary(cell: Cell, guides: tuple[Guide, ...]) -> dict[str, object]:
    """What cell.json and the matrix page say about the procedure a cell followed."""
    if not cell.upgrade_to:
        return {}
    body: dict[str, object] = {
        "kind": cell.procedure,
        "guides": [{"id": g.id, "title": g.title, "url": g.url, "read": g.read} for g in guides],
    }
    if not guides:
        body["note"] = "no published guide"
    target = cell.upgrade_to
    body["migration"] = (f"matrix.yaml channels.{target.name}.migrates_db_on_upgrade = "
                         f"{str(target.migrates_db_on_upgrade).lower()}"
                         + (f" (from {target.migration_source})" if target.migration_source
                            else " (no source recorded)"))
    return body


def run_step(run: CellRun, outcome: CellOutcome, deployment: GuideRunner, step: Step,
             endpoint: Endpoint, cell_dir: Path) -> Endpoint:
    """One guide step (and its remedy when it hit the defect the remedy answers); the endpoint
    the next steps use."""
    guide, gs, target = step.guide, step.guide_step, outcome.cell.upgrade_to
    assert guide is not None and gs is not None and target is not None
    assert isinstance(deployment, Deployment)
    attach = partial(_collect_to, deployment, cell_dir)
    label = f"{guide.title} · {gs.id}: {gs.text[:90]}"
    result: Endpoint | None
    try:
        result = run._phase(outcome, f"{guide.kind}/{gs.id}",
                            partial(_guide_step, deployment, guide, gs, target), label=label,
                            attach=attach)
    except _PhaseFailed:
        failed = outcome.phases[-1]
        outcome.message = f"guide {guide.id!r}, step {gs.id!r}: {outcome.message}"
        defect = (failed.known_defect or {}).get("id")
        if gs.remedy is None or defect != gs.remedy.defect:
            raise
        remedy = gs.remedy
        result = run._phase(outcome, f"remedy/{gs.id}",
                            partial(_remedied, deployment, remedy, target),
                            label=f"remedy for {defect}: {remedy.command} ({remedy.link})",
                            attach=attach)
    if result is None:
        return endpoint
    moved: Endpoint = result
    outcome.versions["mlflow_server"] = moved.mlflow_version
    return moved


def _guide_step(deployment: GuideRunner, guide: Guide, step: GuideStep,
                target: Channel) -> Endpoint | None:
    try:
        endpoint = deployment.run_guide_step(guide, step, target)
    except MatrixError as exc:
        raised = with_migration_source(exc, step, guide, target)
        if raised is exc:
            raise
        raise raised from exc
    # the server's release is checked where the step moved the server (not after MinIO's refresh)
    server_moved = (step.do == "refresh" and guide.bundle_app(step.app) == SERVER_APP) \
        or step.do == "integrate" or step.action == "restore"
    if endpoint is not None and server_moved and guide.kind != "backup":
        return check_server_version(endpoint, target, f"{guide.kind}/{step.id}")
    return endpoint


def _remedied(deployment: GuideRunner, remedy: object, target: Channel) -> Endpoint:
    return check_server_version(deployment.run_remedy(remedy, target), target,  # type: ignore[arg-type]
                                "remedy")


def with_migration_source(exc: MatrixError, step: GuideStep, guide: Guide,
                          target: Channel) -> MatrixError:
    """A refused server start after a refresh says where "the charm runs no migration" comes
    from, so the verdict rests on a named source, not on the harness."""
    if step.do != "refresh" or guide.bundle_app(step.app) != SERVER_APP \
            or target.migrates_db_on_upgrade:
        return exc
    source = target.migration_source or "no source recorded"
    return InfrastructureError(
        f"{exc.message}\n(no `mlflow db upgrade` ran: matrix.yaml channels.{target.name}."
        f"migrates_db_on_upgrade = false, from {source})", hint=exc.hint)


def rollback(run: CellRun, outcome: CellOutcome, deployment: GuideRunner, step: Step,
             cell_dir: Path) -> None:
    """A one-way guide: moving back to the source channel must be refused (or detected)."""
    cell = outcome.cell
    assert isinstance(deployment, Deployment)
    attach = partial(_collect_to, deployment, cell_dir)
    try:
        refusal = run._phase(outcome, "rollback", partial(deployment.refuse_rollback, cell.channel),
                             label=f"rollback to {cell.channel.name} ({step.reason[:120]}): "
                                   "must be refused", attach=attach)
    except _PhaseFailed:
        return
    outcome.phases[-1].message = f"refused, as the guide says: {refusal}"
