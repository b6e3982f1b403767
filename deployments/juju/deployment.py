"""One cell's Charmed MLflow: its model, the bundle of its channel, its endpoint.

`JujuDeployment` adds the cell's model to the platform's controller (`controller.py`), deploys
the bundle with `--trust`, waits until every unit is active/idle (`watch.py`), and returns the
endpoint found through the Kubernetes API. Upgrade and restart follow the charm's documented
procedures.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jubilant
import yaml

from deployments.juju.bundle import (
    BundleSource,
    _juju_data_dir,
    bundle_channels,
    charm_plan,
    fetch_bundle,
    read_bundle,
)
from deployments.juju.cli import _Juju, _not_found, juju_errors
from deployments.juju.cos import CosReport, check_cos_relations
from deployments.juju.names import _timeout, model_name
from deployments.juju.settings import (
    BUNDLE_APPS,
    DEFAULT_DEPLOY_TIMEOUT,
    DEFAULT_TEARDOWN_TIMEOUT,
    FORCE_DESTROY_STEP_TIMEOUT,
    MINIO_APP,
    MINIO_ARTIFACT_SECRET,
    MYSQL_APP,
    OBJECT_STORAGE_ENDPOINT,
    SERVER_APP,
    SERVER_NODEPORT_OPTION,
    SERVER_NODEPORTS,
    STATUS_LOG_ENTRIES,
    STATUS_RETRIES,
    cos_agent_unit,
    cos_integrations,
    juju_settings,
)
from deployments.juju.watch import BundleWatch, _UnitFailed
from harness.system.endpoint import Credentials, Endpoint
from harness.system.errors import CommandError, InfrastructureError, Interrupted
from harness.system.redact import redact, register_secret
from harness.system.waits import CANCEL, DeadlineExceeded, NotYet, Terminal, wait_for

if TYPE_CHECKING:
    from deployments.juju.controller import JujuController
    from harness.config.guides import Guide, GuideStep, Remedy
    from harness.config.model import Cell, Channel
    from harness.system.kube import Kube
    from provisioners.api import Component, RunContext, Substrate


class JujuDeployment:
    """One cell's model: the bundle of its channel, deployed and waited on with jubilant."""

    server_log: Path | None = None  # the server runs in a pod: its log is in diagnostics/

    def __init__(self, context: RunContext, substrate: Substrate, cell_dir: Path,
                 juju_controller: JujuController) -> None:
        self.context = context
        self.juju_controller = juju_controller   # owned by the provisioner, shared by cells
        self.substrate = substrate
        self.cell_dir = cell_dir
        self.settings = juju_settings(context.platform.settings)
        self.deploy_timeout = _timeout(context, "deploy_timeout", DEFAULT_DEPLOY_TIMEOUT)
        self.teardown_timeout = _timeout(context, "teardown_timeout", DEFAULT_TEARDOWN_TIMEOUT)
        self.juju = _Juju(command_timeout=self.settings.command_timeout)
        self.cell_id = cell_dir.name
        self.model = model_name(context, self.cell_id)
        self.controller = ""
        self.cloud = ""
        self.model_ref: str | None = None
        self._model_rid: str | None = None
        self._kube: Kube | None = None
        self.channel: Channel | None = None
        self.endpoint: Endpoint | None = None
        self.mlflow_port = 5000  # the charm's mlflow_port, read with the endpoint
        self.cos: CosReport | None = None
        self.backup_id = ""  # the backup guide's `create-backup` result, for its restore
        self.backup_dir: Path | None = None  # the bucket's copy (deployments/juju/guide.py)
        self.backup_rid: str | None = None

    @staticmethod
    def plan_for(context: RunContext, cell: Cell) -> list[str]:
        """The Juju (and Kubernetes API) steps of one cell, in order; no side effects."""
        from deployments.juju.plan import cell_plan

        return cell_plan(context, cell)

    # -- lifecycle

    def deploy(self, channel: Channel) -> Endpoint:
        self.cloud, self.controller = self.juju_controller.ensure(self.substrate, self.juju,
                                                                  self.settings)
        if CANCEL.is_set():
            raise Interrupted()
        self._model_rid = self.context.state.add(
            "juju-model", kind=self.context.platform.kind, name=self.model,
            controller=self.controller)
        with juju_errors(f"adding Juju model {self.model!r}"):
            self.juju.add_model(self.model, self.cloud, controller=self.controller)
        self.model_ref = self.juju.model
        self.channel = channel
        self._deploy_channel(channel)
        self._wait(f"the {channel.name} bundle to become active/idle", BUNDLE_APPS)
        self.endpoint = self._endpoint()
        if self.settings.cos_check:
            self.cos = self._check_cos()
        return self.endpoint

    def upgrade(self, channel: Channel) -> Endpoint:
        """`juju refresh mlflow-minio` then `mlflow-server`, as the upgrade guides do; then wait
        for the new revisions, no unit upgrading, new Ready pods, and active/idle again."""
        from deployments.juju import refresh

        if self.model_ref is None:
            raise InfrastructureError("upgrade() before deploy()")
        with juju_errors("reading the model status before the upgrade"):
            status = self.juju.status()
        planned = refresh.refresh_targets(status, self._target_channels(channel))
        old = refresh.before(status, planned, self.kube())
        for app, target in planned.items():
            if CANCEL.is_set():
                raise Interrupted()
            try:
                self.juju.refresh(app, channel=target)
            except jubilant.CLIError as exc:
                refused = refresh.cross_base(app, exc)
                if refused is not None:
                    raise refused from None
                with juju_errors(f"juju refresh {app} --channel {target}"):
                    raise
        self._wait(f"the refresh to {channel.name}", BUNDLE_APPS, channels=planned,
                   revisions=old.revisions)
        refresh.wait_new_pods(self.kube(), old, timeout=self.deploy_timeout)
        self._wait(f"the refreshed units to settle on {channel.name}", BUNDLE_APPS)
        self.channel = channel
        self.endpoint = self._endpoint()
        return self.endpoint

    def restart(self) -> Endpoint:
        """Restart the MLflow server on the same stores: delete its pod (the StatefulSet
        recreates it), wait for the new pod and for active/idle, then find the endpoint again."""
        if self.model_ref is None:
            raise InfrastructureError("restart() before deploy()")
        pod = self._server_unit().replace("/", "-")  # sidecar charms: unit app/N runs in pod app-N
        self.kube().restart_pod(pod, timeout=self.deploy_timeout)
        self._wait(f"{SERVER_APP} to be active/idle after its pod restarted", BUNDLE_APPS)
        self.endpoint = self._endpoint()
        return self.endpoint

    # -- the documented procedures, step by step (deployments/juju/guide.py)

    def guide_step_plan(self, guide: Guide, step: GuideStep, cell: Cell) -> list[str]:
        from deployments.juju.guide import step_commands

        return step_commands(self.context, guide, step, cell)

    def run_guide_step(self, guide: Guide, step: GuideStep, target: Channel) -> Endpoint | None:
        from deployments.juju.guide import run_step

        return run_step(self, guide, step, target)

    def run_remedy(self, remedy: Remedy, target: Channel) -> Endpoint:
        from deployments.juju.guide import run_remedy

        return run_remedy(self, remedy, target)

    def refuse_rollback(self, source: Channel) -> str:
        from deployments.juju.guide import refuse_rollback

        return refuse_rollback(self, source)

    def destroy(self) -> None:
        """The model destroyed as at teardown; the bucket's backup copy stays for the restore."""
        kept, self.backup_dir = self.backup_dir, None
        try:
            self.teardown()
        finally:
            self.backup_dir = kept

    def target_channels(self, channel: Channel) -> dict[str, str]:
        return self._target_channels(channel)

    def settle(self, what: str) -> None:
        self._wait(what, BUNDLE_APPS)

    def find_endpoint(self) -> Endpoint:
        self.endpoint = self._endpoint()
        return self.endpoint

    def collect(self, dest: Path) -> None:
        from deployments.juju.diagnostics import collect_deployment

        collect_deployment(self, dest)

    def teardown(self) -> None:
        """Destroy the model within the teardown deadline; force it if that fails. Idempotent."""
        if self.backup_dir is not None:
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            if self.backup_rid:
                self.context.state.release(self.backup_rid)
            self.backup_dir = self.backup_rid = None
        if self._kube is not None:
            self._kube.close()
            self._kube = None
        if self._model_rid is None:
            return
        ref = self.model_ref or f"{self.controller}:{self.model}"
        bounded = _Juju(command_timeout=self.teardown_timeout)  # each attempt: timeouts.teardown
        try:
            bounded.destroy_model(ref, destroy_storage=True)
        except (jubilant.CLIError, CommandError) as first:
            if not (isinstance(first, jubilant.CLIError) and _not_found(first)):
                try:
                    bounded.destroy_model(ref, destroy_storage=True, force=True, no_wait=True,
                                         timeout=FORCE_DESTROY_STEP_TIMEOUT)
                except jubilant.CLIError as exc:
                    if not _not_found(exc):
                        with juju_errors(f"destroying Juju model {ref} (forced)",
                                         hint="`mlflow-matrix janitor` retries later"):
                            raise
        self.context.state.release(self._model_rid)
        self._model_rid = None
        self.model_ref = None

    # -- internals

    def _deploy_channel(self, channel: Channel) -> None:
        """The channel's bundle (or charms), with the charm's fixed NodePorts off unless the
        platform keeps them (`server_nodeport`): they are cluster-wide, one model gets them."""
        source = BundleSource.of(channel)
        if CANCEL.is_set():
            raise Interrupted()
        nodeport = "true" if self.settings.server_nodeport else "false"
        if source.kind == "charms":
            for charm, app, charm_channel, extra in charm_plan(channel, self.settings):
                if app == SERVER_APP:
                    extra = (*extra, "--config", f"{SERVER_NODEPORT_OPTION}={nodeport}")
                with juju_errors(f"juju deploy {charm} {app}"):
                    self.juju.run_cli("deploy", charm, app, "--channel", charm_channel, "--trust",
                                      *extra)
            for other in (MINIO_APP, MYSQL_APP):
                with juju_errors(f"juju integrate {SERVER_APP} {other}"):
                    self.juju.integrate(SERVER_APP, other)
            return
        with self._bundle_dir() as where:
            local = fetch_bundle(source, where)
            overlay = where / "overlay.yaml"
            overlay.write_text(yaml.safe_dump({"applications": {SERVER_APP: {"options": {
                SERVER_NODEPORT_OPTION: self.settings.server_nodeport}}}}), encoding="utf-8")
            with juju_errors(f"juju deploy of the {channel.name} bundle"):
                self.juju.run_cli("deploy", str(local), "--trust", "--overlay", str(overlay))

    def _check_cos(self) -> CosReport:
        """Relate the COS agent (opentelemetry-collector-k8s, or grafana-agent-k8s) to
        mlflow-server and read what the charm published on `metrics-endpoint` and
        `grafana-dashboard` from the agent's side (juju shows the remote app's databag there).
        Missing or malformed data fails the deploy phase: a Kubernetes cell is not healthy when
        operators cannot scrape or chart it."""
        agent = self.settings.cos_agent
        unit = cos_agent_unit(agent)
        if CANCEL.is_set():
            raise Interrupted()
        with juju_errors(f"juju deploy {agent}"):
            self.juju.run_cli("deploy", agent, "--channel", self.settings.agent_channel, "--trust")
        for provider, consumer in cos_integrations(agent):
            with juju_errors(f"juju integrate {provider} {consumer}"):
                self.juju.integrate(provider, consumer)
        self._wait(f"{agent} to settle with its relations", (*BUNDLE_APPS, agent),
                   may_block=(agent,))
        with juju_errors(f"juju show-unit {unit}"):
            out, _ = self.juju.run_cli("show-unit", unit, "--format", "json")
        try:
            show_unit = json.loads(out)
        except ValueError:
            raise InfrastructureError(f"`juju show-unit {unit}` did not print JSON: "
                                      f"{redact(out[:200])!r}") from None
        report = check_cos_relations(show_unit, provider_app=SERVER_APP,
                                     mlflow_port=self.mlflow_port)
        if report.problems:
            raise InfrastructureError(
                f"{SERVER_APP}'s COS relation data, read on {unit}, is incomplete: "
                + "; ".join(report.problems),
                hint=f"`juju show-unit {unit} --model {self.model_ref}` shows it; "
                     "`cos_check: false` in matrix.yaml skips this check")
        return report

    def _target_channels(self, channel: Channel) -> dict[str, str]:
        source = BundleSource.of(channel)
        if source.kind == "charms":
            return {app: ch for _, app, ch, _ in charm_plan(channel, self.settings)}
        with self._bundle_dir() as where:
            return bundle_channels(read_bundle(fetch_bundle(source, where)))

    @contextlib.contextmanager
    def _bundle_dir(self) -> Iterator[Path]:
        """A private directory the juju client can read, removed once Juju has read the bundle."""
        base = _juju_data_dir()
        base.mkdir(parents=True, exist_ok=True)
        where = Path(tempfile.mkdtemp(prefix=f"mlflow-matrix-{self.context.run_id}-", dir=base))
        try:
            yield where
        finally:
            shutil.rmtree(where, ignore_errors=True)

    def _wait(self, what: str, apps: tuple[str, ...],
              channels: Mapping[str, str] | None = None,
              may_block: tuple[str, ...] = (),
              revisions: Mapping[str, int] | None = None) -> jubilant.Status:
        """jubilant's wait with our rules (watch.py); a few failed `juju status` calls in a row
        (a controller briefly unreachable mid-deploy) are retried within the same deadline."""
        s = self.settings
        watch = BundleWatch(apps, blocked_grace=s.blocked_grace, error_grace=s.error_grace,
                            terminal=s.terminal_messages, channels=channels,
                            revisions=revisions, may_block=may_block)
        deadline = time.monotonic() + self.deploy_timeout
        failures = 0
        while True:
            try:
                return self.juju.wait(watch.ready, error=watch.error,
                                      delay=self.settings.poll_interval,
                                      timeout=max(0.0, deadline - time.monotonic()),
                                      successes=self.settings.successes)
            except _UnitFailed as exc:
                history = self.status_log(exc.unit)
                message = exc.message + (f"\n`juju show-status-log {exc.unit}` (newest last):\n"
                                         + history if history else "")
                raise Terminal(message, hint="the unit's logs and `juju debug-log` are in "
                                             "diagnostics/") from None
            except TimeoutError:
                raise DeadlineExceeded(
                    f"timed out after {self.deploy_timeout:.0f}s waiting for {what}: "
                    f"{watch.summary()}",
                    hint="raise timeouts.deploy in matrix.yaml, or see diagnostics/") from None
            except (jubilant.CLIError, CommandError) as exc:
                if CANCEL.is_set():
                    raise Interrupted() from None
                failures += 1
                if failures > STATUS_RETRIES or time.monotonic() >= deadline:
                    if isinstance(exc, CommandError):
                        raise
                    with juju_errors("juju status"):
                        raise exc from None
                time.sleep(self.settings.poll_interval)

    def status_log(self, unit: str, entries: int = STATUS_LOG_ENTRIES) -> str:
        """`juju show-status-log` of a unit, redacted; empty if it cannot be read."""
        try:
            out, _ = self.juju.run_cli("show-status-log", unit, "-n", str(entries), timeout=60)
        except (jubilant.CLIError, CommandError, InfrastructureError):
            return ""
        return redact(out.rstrip())

    def units(self) -> list[str]:
        try:
            status = self.juju.status()
        except (jubilant.CLIError, CommandError, InfrastructureError):
            return []
        return sorted(name for app in status.apps.values() for name in app.units)

    def components(self) -> tuple[Component, ...]:
        """The bundle's pods, for the watchdog while scenarios run (through the Kubernetes API)."""
        from deployments.juju.health import pod_components

        return pod_components(self.kube, BUNDLE_APPS)

    def kube(self) -> Kube:
        if self._kube is None:
            from harness.system.kube import Kube

            self._kube = Kube(self.substrate.kubeconfig, self.substrate.kube_context,
                              namespace=self.model, poll=min(1.0, self.settings.poll_interval))
        return self._kube

    def _endpoint(self) -> Endpoint:
        with juju_errors("reading the mlflow-server configuration"):
            config = self.juju.config(SERVER_APP)
        bucket = str(config.get("default_artifact_root") or "mlflow")
        mlflow_port = self.mlflow_port = int(config.get("mlflow_port") or 5000)
        storage = self.minio_relation_data()
        credentials = self._credentials(storage)
        minio_port = int(storage.get("port") or 9000)
        kube = self.kube()
        self._check_server_service(kube, mlflow_port)
        server = kube.reach(SERVER_APP, mlflow_port, self.settings.access,
                            timeout=self.settings.endpoint_timeout)
        minio = kube.reach(str(storage.get("service") or MINIO_APP), minio_port,
                           self.settings.access, timeout=self.settings.endpoint_timeout)
        tracking_uri = f"http://{server.host}:{server.port}"
        version = wait_for(lambda: _mlflow_version(tracking_uri),
                           what=f"GET {tracking_uri}/version", timeout=self.settings.endpoint_timeout,
                           interval=min(2.0, self.settings.poll_interval),
                           hint="the mlflow-server pod logs are in diagnostics/")
        return Endpoint(tracking_uri=tracking_uri, mlflow_version=version,
                        s3_endpoint_url=f"http://{minio.host}:{minio.port}",
                        artifact_bucket=bucket, s3_credentials=credentials)

    def _check_server_service(self, kube: Kube, mlflow_port: int) -> None:
        """The charm patches its Service to the MLflow port; when that patch failed (its fixed
        NodePorts taken by another model), Juju's placeholder port 65535 is all there is, and
        whatever answered there would not be MLflow."""
        service = wait_for(lambda: kube.service(SERVER_APP), what=f"Service {SERVER_APP}",
                           timeout=self.settings.endpoint_timeout, interval=kube.poll)
        ports = [p.port for p in (service.spec.ports or [])] if service.spec else []
        if mlflow_port in ports or 65535 not in ports:
            return
        taken = "/".join(str(p) for p in SERVER_NODEPORTS)
        raise InfrastructureError(
            f"Service {SERVER_APP} in {self.model} exposes only Juju's placeholder port 65535: "
            f"the charm could not patch it to port {mlflow_port} (its NodePorts {taken} are "
            "most likely held by another model on this cluster: the API server refuses a "
            "second claim with 422 `provided port is already allocated`)",
            hint="set `server_nodeport: false` for this platform in matrix.yaml (each cell then "
                 "gets a NodePort of its own), or free the ports; `juju debug-log` of "
                 f"{SERVER_APP} in diagnostics/ shows the failed patch")

    def _server_unit(self) -> str:
        with juju_errors("juju status"):
            status = self.juju.status()
        units = sorted(status.apps[SERVER_APP].units) if SERVER_APP in status.apps else []
        if not units:
            raise InfrastructureError(f"{SERVER_APP} has no unit")
        return units[0]

    def minio_relation_data(self) -> dict[str, Any]:
        """The object-storage relation data mlflow-server received from MinIO (may be empty).

        The minio charm publishes access-key, secret-key, service, port, namespace and secure
        on the `object-storage` relation (serialized-data-interface: YAML under `data`); this
        is what `juju show-unit mlflow-server/0` shows and what the charm docs point at.
        """
        unit = self._server_unit()
        try:
            info = self.juju.show_unit(unit)
        except (jubilant.CLIError, CommandError, KeyError, ValueError):
            return {}
        for relation in info.relation_info:
            if OBJECT_STORAGE_ENDPOINT not in (relation.endpoint, relation.related_endpoint):
                continue
            raw = relation.app_data.get("data")
            try:
                data = yaml.safe_load(raw) if isinstance(raw, str) else (raw or {})
            except yaml.YAMLError:
                continue
            if isinstance(data, dict) and data.get("secret-key"):
                register_secret(str(data["secret-key"]))
                return data
        return {}

    def _credentials(self, storage: Mapping[str, Any]) -> Credentials:
        if storage.get("access-key") and storage.get("secret-key"):
            return Credentials(str(storage["access-key"]), str(storage["secret-key"]))
        unit = self._server_unit()
        try:
            task = self.juju.run(unit, "get-minio-credentials", wait=120)
            access, secret = task.results.get("access-key"), task.results.get("secret-access-key")
            if access and secret:
                register_secret(str(secret))
                return Credentials(str(access), str(secret))
        except (jubilant.CLIError, jubilant.TaskError, CommandError, ValueError, TimeoutError):
            pass
        from_secret = self.kube().secret_credentials(MINIO_ARTIFACT_SECRET)
        if from_secret is not None:
            return from_secret
        raise InfrastructureError(
            "could not read the MinIO credentials (no object-storage relation data, "
            "get-minio-credentials failed, no mlflow-server-minio-artifact Secret)",
            hint=f"check `juju status --relations` in model {self.model}")


def _mlflow_version(tracking_uri: str) -> str:
    try:
        with urllib.request.urlopen(f"{tracking_uri}/version", timeout=5) as response:
            text = response.read().decode("utf-8", errors="replace").strip()
    except urllib.error.HTTPError as exc:
        raise NotYet(f"HTTP {exc.code}") from None
    except OSError as exc:
        raise NotYet(str(exc)) from None
    if not re.match(r"^\d+\.\d+", text):
        raise NotYet(f"unexpected /version answer {text[:60]!r}")
    return text

