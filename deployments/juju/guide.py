"""Charmed MLflow's documented procedures on a Juju deployment: each guide step as its command.

The steps come from matrix.yaml (`upgrade_guides:`, harness/config/guides.py) in the guide's own
terms; here each becomes the jubilant call the guide's command is: `juju refresh`,
`juju remove-relation`, `juju integrate`, `juju run <unit> <action>`, `juju scale-application`,
and for the bucket copy the guide does with rclone, the same size-only sync with boto3 through
the endpoint the cell already reaches MinIO by. After a step the guide's own wait (`wait:`
app → status) is honoured with a deadline; without one, the bundle settles as after a deploy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import jubilant

from deployments.juju.cli import juju_errors
from deployments.juju.names import controller_name, model_name
from deployments.juju.settings import BUNDLE_APPS, MINIO_APP, SERVER_APP
from harness.system.errors import InfrastructureError
from harness.system.waits import DeadlineExceeded

if TYPE_CHECKING:
    from deployments.juju.deployment import JujuDeployment
    from harness.config.guides import Guide, GuideStep, Remedy
    from harness.config.model import Cell, Channel
    from harness.system.endpoint import Endpoint
    from provisioners.api import RunContext


def step_commands(context: RunContext, guide: Guide, step: GuideStep, cell: Cell) -> list[str]:
    """The commands of one step as `run_step` issues them, for `mlflow-matrix plan`."""
    ref = f"{controller_name(context)}:{model_name(context, cell.id)}"
    app = guide.bundle_app(step.app) if step.app else ""
    if step.do == "refresh":
        channel = _channel_text(step, cell, app)
        return [f"juju refresh --model {ref} {app} --channel {channel}"]
    if step.do in ("remove-relation", "integrate"):
        a, b = (guide.endpoint(e) for e in step.endpoints)
        return [f"juju {step.do} --model {ref} {a} {b}"]
    if step.do == "run-action":
        params = " backup-id=<the id create-backup printed>" if step.action == "restore" else ""
        return [f"juju run --model {ref} {app}/leader {step.action}{params} --wait"]
    if step.do == "scale":
        return [f"juju scale-application --model {ref} {app} {step.units}"]
    way = "bucket → backup directory" if step.direction == "backup" else "backup directory → bucket"
    return [f"size-only sync of bucket `mlflow` through the cell's MinIO endpoint (boto3, as the "
            f"guide's rclone does): {way}"]


def _channel_text(step: GuideStep, cell: Cell, app: str) -> str:
    """A literal channel, or the target bundle's channel of the app (the path's target)."""
    if not step.to_target:
        return step.channel
    target = cell.upgrade_to.name if cell.upgrade_to else cell.channel.name
    return f"<{app}'s channel in the {target} bundle>"


def run_step(deployment: JujuDeployment, guide: Guide, step: GuideStep,
             target: Channel) -> Endpoint | None:
    """One guide step as its command, then the guide's wait; the endpoint when the server is
    active afterwards, None when the guide leaves it blocked."""

    juju = deployment.juju
    app = guide.bundle_app(step.app) if step.app else ""
    if step.do == "refresh":
        channel = (deployment.target_channels(target).get(app, target.name)
                   if step.to_target else step.channel)
        with juju_errors(f"juju refresh {app} --channel {channel}"):
            juju.refresh(app, channel=channel)
    elif step.do in ("remove-relation", "integrate"):
        a, b = (guide.endpoint(e) for e in step.endpoints)
        with juju_errors(f"juju {step.do} {a} {b}"):
            (juju.remove_relation if step.do == "remove-relation" else juju.integrate)(a, b)
    elif step.do == "run-action":
        params = {"backup-id": deployment.backup_id} if step.action == "restore" else None
        with juju_errors(f"juju run {app}/leader {step.action}"):
            task = juju.run(f"{app}/leader", step.action, params, wait=deployment.deploy_timeout)
        if step.action == "create-backup":
            deployment.backup_id = str(task.results.get("backup-id", ""))
    elif step.do == "scale":
        with juju_errors(f"juju scale-application {app} {step.units}"):
            juju.cli("scale-application", app, str(step.units))
    else:
        _sync_bucket(deployment, step.direction == "backup")
    _wait(deployment, guide, step)
    if step.wait and step.wait.get(SERVER_APP, "active") != "active":
        return None
    return deployment.find_endpoint()


def _wait(deployment: JujuDeployment, guide: Guide, step: GuideStep) -> None:
    if not step.wait:
        deployment.settle(f"the bundle to settle after `{step.text[:60]}`")
        return
    wanted = {guide.bundle_app(app): status for app, status in step.wait.items()}

    def ready(status: jubilant.Status) -> bool:
        return all(app in status.apps and status.apps[app].app_status.current == want
                   for app, want in wanted.items())

    try:
        deployment.juju.wait(ready, delay=deployment.settings.poll_interval,
                             timeout=deployment.deploy_timeout)
    except TimeoutError:
        raise DeadlineExceeded(
            f"timed out after {deployment.deploy_timeout:.0f}s waiting for "
            + ", ".join(f"{app} {want}" for app, want in wanted.items())
            + f" after `{step.text[:80]}`", hint="see diagnostics/") from None


def run_remedy(deployment: JujuDeployment, remedy: Remedy, target: Channel) -> Endpoint:
    """Not automated on Juju: the remedy's command needs the database credentials inside the
    server's container, which the harness never puts on a command line."""
    raise InfrastructureError(
        f"the remedy `{remedy.command}` is not automated on Juju platforms",
        hint=f"run it in the mlflow-server container as {remedy.link} describes")


def refuse_rollback(deployment: JujuDeployment, source: Channel) -> str:
    """`juju refresh mlflow-server` back to the source's channel: the unit must not go
    active/idle on the migrated store (an error or blocked status within the deadline)."""
    channel = deployment.target_channels(source).get(SERVER_APP, source.name)
    with juju_errors(f"juju refresh {SERVER_APP} --channel {channel}"):
        deployment.juju.refresh(SERVER_APP, channel=channel)
    try:
        deployment.settle(f"{SERVER_APP} back on {channel}")
    except InfrastructureError as exc:
        return exc.message.splitlines()[0]
    raise InfrastructureError(f"{SERVER_APP} went active on {channel} over the store migrated "
                              "to MLflow 3: the guide says the upgrade is one-way")


def _sync_bucket(deployment: JujuDeployment, to_backup: bool) -> None:
    """rclone --size-only sync between the MinIO bucket and the deployment's backup folder."""
    from harness.system.buckets import sync_bucket

    endpoint = deployment.endpoint
    if endpoint is None or endpoint.s3_credentials is None or not endpoint.s3_endpoint_url:
        raise InfrastructureError(f"no reachable {MINIO_APP} endpoint to copy the bucket")
    if deployment.backup_dir is None:
        deployment.backup_dir = Path(tempfile.mkdtemp(
            prefix=f"mlflow-matrix-{deployment.context.run_id}-backup-"))
        deployment.backup_rid = deployment.context.state.add("dir",
                                                             path=str(deployment.backup_dir))
    sync_bucket(endpoint.s3_endpoint_url, endpoint.s3_credentials, endpoint.artifact_bucket
                or "mlflow", deployment.backup_dir / "bucket", to_folder=to_backup)


__all__ = ["BUNDLE_APPS", "refuse_rollback", "run_remedy", "run_step", "step_commands"]
