"""Deploy Charmed MLflow onto a Kubernetes substrate with Juju, through jubilant.

One `JujuDeployment` per cell: it adds the cell's model to the platform's controller, deploys the
bundle of the cell's channel with `--trust`, waits until every unit is active/idle, and returns
the endpoint. The cloud (`juju add-k8s`) and the controller (`juju bootstrap`) are shared by all
cells of a platform: the first cell creates them, the provisioner's `down` releases them
(`release_platform`).

Every Juju command goes through jubilant (`_Juju` only routes jubilant's single subprocess seam
through `harness.procs.run`: a deadline on every command, its own session so Ctrl-C reaches the
harness first, redacted errors). Every resource is recorded in the run state before it is
created, so `mlflow-matrix janitor` can release it after a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jubilant
import yaml

from harness.endpoint import Credentials, Endpoint
from harness.errors import CommandError, InfrastructureError, Interrupted
from harness.procs import run
from harness.redact import redact, register_secret
from harness.waits import CANCEL, DeadlineExceeded, NotYet, Terminal, wait_for

if TYPE_CHECKING:
    from harness.kube import Kube
    from harness.matrix import Cell, Channel
    from provisioners.base import RunContext, Substrate

SERVER_APP = "mlflow-server"
MINIO_APP = "mlflow-minio"
MYSQL_APP = "mlflow-mysql"
BUNDLE_APPS = (MINIO_APP, MYSQL_APP, SERVER_APP)
# `juju refresh` order of the documented upgrade (docs/how-to/manage/upgrade/*.rst upstream).
REFRESH_ORDER = (MINIO_APP, SERVER_APP)
OBJECT_STORAGE_ENDPOINT = "object-storage"
MINIO_ARTIFACT_SECRET = "mlflow-server-minio-artifact"  # created only with resource-dispatcher
DEFAULT_DEPLOY_TIMEOUT = 1800
DEFAULT_TEARDOWN_TIMEOUT = 600
FORCE_DESTROY_STEP_TIMEOUT = 120
STATUS_LOG_ENTRIES = 25
STATUS_RETRIES = 3  # failed `juju status` calls in a row tolerated while waiting
NAME_LIMIT = 63  # a model is a Kubernetes namespace: RFC 1123 label


@dataclass(frozen=True)
class JujuSettings:
    """Juju and bundle settings every Kubernetes platform accepts in its matrix.yaml entry.

    Provisioner `Settings` dataclasses inherit these fields, so `matrix.yaml` validation knows
    their names and types.
    """

    access: Literal["nodeport", "loadbalancer", "port-forward"] = "nodeport"
    blocked_grace: int = 300          # seconds a unit may stay `blocked` before the wait fails
    poll_interval: float = 5.0        # seconds between `juju status` polls
    successes: int = 3                # consecutive healthy polls that end the wait
    bootstrap_timeout: int = 1200     # deadline of `juju bootstrap`
    command_timeout: int = 600        # deadline of any other Juju command
    endpoint_timeout: int = 300       # deadline for the Services and GET /version to answer
    storage_class: str = ""           # `juju add-k8s --storage`; empty: let Juju detect it
    minio_channel: str = "ckf-1.10/stable"   # used only for channels without a bundle
    mysql_channel: str = "8.0/stable"        # used only for channels without a bundle
    debug_log_lines: int = 5000       # newest `juju debug-log --replay` lines kept in diagnostics


def juju_settings(settings: Any) -> JujuSettings:
    """The Juju fields of a provisioner's settings (defaults for the fields it lacks)."""
    if isinstance(settings, JujuSettings) and type(settings) is JujuSettings:
        return settings
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(JujuSettings)
              if hasattr(settings, f.name)}
    return JujuSettings(**values)


# ---------------------------------------------------------------- jubilant seam


class _Juju(jubilant.Juju):
    """jubilant.Juju whose one subprocess call runs through `harness.procs.run`.

    jubilant funnels every command through `Juju._cli` (same signature in jubilant 1.x and on
    main); overriding it adds a deadline to every command and a session of its own, and keeps
    jubilant's contract: `CLIError` on a non-zero exit, `(stdout, stderr)` otherwise.
    """

    def __init__(self, *, model: str | None = None, command_timeout: float = 600,
                 cli_binary: str | None = None) -> None:
        super().__init__(model=model, cli_binary=cli_binary)
        self.command_timeout = command_timeout

    def _cli(self, *args: str, include_model: bool = True, stdin: str | None = None,
             log: bool = True, timeout: float | None = None) -> tuple[str, str]:
        if include_model and self.model is not None:
            args = (args[0], "--model", self.model, *args[1:])
        argv = [self.cli_binary, *args]
        proc = run(argv, timeout=timeout or self.command_timeout, check=False, input=stdin)
        if proc.returncode != 0:
            raise jubilant.CLIError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc.stdout, proc.stderr

    def run_cli(self, *args: str, include_model: bool = True, stdin: str | None = None,
                timeout: float | None = None) -> tuple[str, str]:
        """Any Juju command jubilant has no method for, with its own deadline."""
        return self._cli(*args, include_model=include_model, stdin=stdin, timeout=timeout)


@contextlib.contextmanager
def juju_errors(what: str, hint: str | None = None) -> Iterator[None]:
    """Turn jubilant's errors into the harness's (redacted, with the command and its output)."""
    try:
        yield
    except jubilant.CLIError as exc:
        argv = [str(a) for a in (exc.cmd if isinstance(exc.cmd, list) else [exc.cmd])]
        error = CommandError(argv, exc.returncode, exc.stdout or "", exc.stderr or "")
        raise InfrastructureError(f"{what} failed: {error.message}", hint=hint) from None
    except jubilant.TaskError as exc:
        raise InfrastructureError(f"{what} failed: action {exc.task.status}: "
                                  f"{redact(exc.task.message or exc.task.stderr)}", hint=hint) from None


def _not_found(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'stderr', '')} {exc}".lower()
    return "not found" in text or "no such" in text or "not exist" in text


# ---------------------------------------------------------------- names


def _slug(text: str) -> str:
    """Lower-case letters, digits and '-' (placeholders such as <run-id> are kept for plans)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9<>-]", "-", text.lower())).strip("-")


def _bounded(name: str) -> str:
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[:NAME_LIMIT - 9].rstrip("-") + "-" + digest


def cloud_name(context: RunContext) -> str:
    """The Juju cloud this run adds for a platform (one per run and platform)."""
    return _bounded(_slug(f"mm-{context.run_id}-{context.platform.name}"))


def controller_name(context: RunContext) -> str:
    """`--controller NAME` if given, else the controller this run bootstraps for the platform."""
    return str(context.options.get("controller") or cloud_name(context))


def model_name(context: RunContext, cell_id: str) -> str:
    """The model (and Kubernetes namespace) of one cell: run id + cell."""
    return _bounded(_slug(f"mm-{context.run_id}-{cell_id}"))


def _timeout(context: RunContext, key: str, default: int) -> float:
    value = context.options.get(key)
    return float(value) if value else float(default)


# ---------------------------------------------------------------- bundles


@dataclass(frozen=True)
class BundleSource:
    """Where a channel's deployment comes from: a bundle file, a bundle URL, or single charms."""

    kind: Literal["file", "url", "charms"]
    location: str = ""

    @classmethod
    def of(cls, channel: Channel) -> BundleSource:
        bundle = (channel.bundle or "").strip()
        if not bundle:
            return cls("charms")
        if re.match(r"^https?://", bundle):
            return cls("url", bundle)
        return cls("file", str(Path(bundle).expanduser()))


def charm_plan(channel: Channel, settings: JujuSettings) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(charm, app, channel, extra args) for a channel without a bundle; mirrors the bundle."""
    return [
        ("minio", MINIO_APP, settings.minio_channel, ()),
        ("mysql-k8s", MYSQL_APP, settings.mysql_channel, ("--constraints", "mem=2G")),
        ("mlflow-server", SERVER_APP, channel.name, ()),
    ]


def read_bundle(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InfrastructureError(f"cannot read the bundle {path}: {exc}",
                                  hint="check `bundle:` of the channel in matrix.yaml") from None
    if not isinstance(data, dict) or not isinstance(data.get("applications"), dict):
        raise InfrastructureError(f"{path} is not a Juju bundle (no `applications:`)",
                                  hint="point `bundle:` at releases/<track>/<risk>/mlflow/bundle.yaml")
    missing = [app for app in (SERVER_APP, MINIO_APP) if app not in data["applications"]]
    if missing:
        raise InfrastructureError(f"bundle {path} lacks {', '.join(missing)}",
                                  hint="the harness expects the Charmed MLflow bundle")
    return data


def fetch_bundle(source: BundleSource, dest: Path, *, timeout: float = 60) -> Path:
    """A local copy of the bundle Juju can read (a strictly confined juju snap cannot read /tmp)."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "bundle.yaml"
    if source.kind == "file":
        shutil.copyfile(source.location, target)
    else:
        try:
            with urllib.request.urlopen(source.location, timeout=timeout) as response:
                target.write_bytes(response.read())
        except (OSError, urllib.error.URLError) as exc:
            raise InfrastructureError(f"cannot download the bundle {source.location}: {exc}",
                                      hint="check the network or set `bundle:` to a local path") \
                from None
    read_bundle(target)
    return target


def bundle_channels(bundle: Mapping[str, Any]) -> dict[str, str]:
    return {app: str(body.get("channel", "")) for app, body in bundle["applications"].items()
            if isinstance(body, dict)}


def _juju_data_dir() -> Path:
    """A directory the juju client can read: ~/snap/juju/common when juju is a snap."""
    found = shutil.which("juju") or ""
    if "/snap/" in found:
        return Path.home() / "snap" / "juju" / "common" / "mlflow-matrix"
    return Path(tempfile.gettempdir())


# ---------------------------------------------------------------- the shared controller


class _PlatformJuju:
    """The cloud and controller one platform's cells share within a run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = False
        self.error: BaseException | None = None
        self.cloud = ""
        self.controller = ""
        self.bootstrapped = False
        self.cloud_target = ""  # "--client" or the given controller
        self.rids: dict[str, str] = {}


_PLATFORMS: dict[tuple[str, str], _PlatformJuju] = {}
_PLATFORMS_LOCK = threading.Lock()


def _platform(context: RunContext) -> _PlatformJuju:
    with _PLATFORMS_LOCK:
        return _PLATFORMS.setdefault((context.run_id, context.platform.name), _PlatformJuju())


def kubeconfig_text(substrate: Substrate) -> str:
    """The substrate's kubeconfig (or the default one), its credentials registered as secrets."""
    path = substrate.kubeconfig
    if path is None:
        first = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        path = Path(first) if first else Path.home() / ".kube" / "config"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InfrastructureError(f"cannot read the kubeconfig {path}: {exc}",
                                  hint="pass --kubeconfig PATH or set KUBECONFIG") from None
    from harness.kube import register_kubeconfig_secrets

    register_kubeconfig_secrets(text)
    return text


def ensure_controller(context: RunContext, substrate: Substrate, juju: _Juju,
                      settings: JujuSettings) -> tuple[str, str]:
    """(cloud, controller) for the platform: `add-k8s` and `bootstrap` on first use."""
    shared = _platform(context)
    with shared.lock:
        if shared.error is not None:
            raise shared.error
        if shared.ready:
            return shared.cloud, shared.controller
        try:
            _setup_controller(context, substrate, juju, settings, shared)
        except BaseException as exc:
            shared.error = exc
            raise
        shared.ready = True
        return shared.cloud, shared.controller


def _setup_controller(context: RunContext, substrate: Substrate, juju: _Juju,
                      settings: JujuSettings, shared: _PlatformJuju) -> None:
    given = context.options.get("controller")
    shared.cloud = cloud_name(context)
    shared.controller = controller_name(context)
    kind = context.platform.kind
    if CANCEL.is_set():
        raise Interrupted()
    args = ["add-k8s", shared.cloud]
    args += ["--controller", str(given)] if given else ["--client"]
    if substrate.kube_context:
        args += ["--context-name", substrate.kube_context]
    if settings.storage_class:
        args += ["--storage", settings.storage_class]
    shared.cloud_target = str(given or "--client")
    shared.rids["cloud"] = context.state.add("juju-cloud", kind=kind, name=shared.cloud,
                                             controller=str(given or ""))
    with juju_errors(f"adding the cluster as Juju cloud {shared.cloud!r}",
                     hint="check that the kubeconfig reaches the cluster and that it has a "
                          "default storage class (or set `storage_class:` in matrix.yaml)"):
        juju.run_cli(*args, include_model=False, stdin=kubeconfig_text(substrate))
    if given:
        return
    if CANCEL.is_set():
        raise Interrupted()
    shared.rids["controller"] = context.state.add(
        "juju-controller", kind=kind, name=shared.controller, cloud=shared.cloud,
        cluster_goes_away=substrate.details.get("cluster_goes_away") == "true")
    shared.bootstrapped = True
    bootstrap(context, juju, shared.cloud, shared.controller, timeout=settings.bootstrap_timeout)


def bootstrap(context: RunContext, juju: _Juju, cloud: str, controller: str, *,
              timeout: float) -> None:
    """`juju bootstrap` as a process of its own that Ctrl-C (CANCEL) and the deadline can stop.

    A bootstrap takes minutes; as a Service (own process group, recorded in the run state) it is
    polled instead of blocking, so an interrupted run gets to its teardown at once.
    """
    from harness.procs import Service

    argv = [juju.cli_binary, "bootstrap", cloud, controller, "--no-switch"]
    log = context.work_dir / f"juju-bootstrap-{controller}.log"
    service = Service("juju bootstrap", argv, log_path=log, state=context.state).start()

    def finished() -> int:
        code = service.exited()
        if code is None:
            raise NotYet("juju bootstrap is still running")
        return code

    try:
        code = wait_for(finished, what=f"juju bootstrap of {controller}", timeout=timeout,
                        interval=0.2, hint="raise `bootstrap_timeout` for this platform")
    finally:
        service.stop(timeout=10)
    if code != 0:
        tail = service.log_tail(4).strip().splitlines()
        raise InfrastructureError(
            f"juju bootstrap of controller {controller!r} on {cloud!r} failed "
            f"(exit {code}):\n  " + "\n  ".join(tail),
            hint="the cluster needs working DNS and a default storage class; or reuse a "
                 "controller with --controller NAME")


def release_platform(context: RunContext, *, timeout: float = DEFAULT_TEARDOWN_TIMEOUT,
                     cluster_goes_away: bool = False) -> None:
    """Destroy the controller and forget the cloud this run created for a platform (idempotent).

    Called by a Kubernetes provisioner's `down`, before the cluster itself goes
    (`cluster_goes_away`: a controller that cannot be killed is then only unregistered).
    """
    with _PLATFORMS_LOCK:
        shared = _PLATFORMS.pop((context.run_id, context.platform.name), None)
    if shared is None:
        return
    problems = []
    if shared.bootstrapped:
        try:
            destroy_controller(shared.controller, timeout=timeout,
                               forget_if_unreachable=cluster_goes_away)
            context.state.release(shared.rids.pop("controller"))
        except InfrastructureError as exc:
            problems.append(exc.message)
    if "cloud" in shared.rids:
        try:
            remove_cloud(shared.cloud, controller=None if shared.cloud_target == "--client"
                         else shared.cloud_target)
            context.state.release(shared.rids.pop("cloud"))
        except InfrastructureError as exc:
            problems.append(exc.message)
    if problems:
        raise InfrastructureError("; ".join(problems),
                                  hint=f"release leftovers with `mlflow-matrix down --run-id "
                                       f"{context.run_id}`")


def destroy_controller(name: str, *, timeout: float, forget_if_unreachable: bool = False) -> None:
    """`destroy-controller` within `timeout`; `kill-controller` if that fails (idempotent).

    `forget_if_unreachable`: the cluster is about to be removed anyway (or already is), so a
    controller that cannot be killed is only unregistered from this client.
    """
    juju = _Juju(command_timeout=timeout)
    try:
        juju.run_cli("destroy-controller", name, "--no-prompt", "--destroy-all-models",
                     "--destroy-storage", include_model=False)
        return
    except jubilant.CLIError as exc:
        if _not_found(exc):
            return
    except CommandError:
        pass  # deadline passed: kill it instead
    try:
        juju.run_cli("kill-controller", name, "--no-prompt", "--timeout", "60s",
                     include_model=False, timeout=180)
        return
    except jubilant.CLIError as exc:
        if _not_found(exc):
            return
        failure: Exception = exc
    except CommandError as exc:
        failure = exc
    if forget_if_unreachable:
        with contextlib.suppress(jubilant.CLIError, CommandError):
            juju.run_cli("unregister", name, "--no-prompt", include_model=False, timeout=60)
            return
    if isinstance(failure, jubilant.CLIError):
        with juju_errors(f"destroying Juju controller {name!r}"):
            raise failure
    raise InfrastructureError(f"destroying Juju controller {name!r} failed: {failure}")


def remove_cloud(name: str, *, controller: str | None) -> None:
    juju = _Juju(command_timeout=120)
    args = ["remove-k8s", name] + (["--controller", controller] if controller else ["--client"])
    try:
        juju.run_cli(*args, include_model=False)
    except jubilant.CLIError as exc:
        if _not_found(exc):
            return
        with juju_errors(f"removing Juju cloud {name!r}"):
            raise


def release_recorded_juju(resource: Mapping[str, Any]) -> bool:
    """Release a recorded juju-controller / juju-cloud / juju-model; False if not a Juju one."""
    kind = resource.get("type")
    if kind == "juju-model":
        destroy_recorded_model(resource)
    elif kind == "juju-controller":
        destroy_controller(resource["name"], timeout=DEFAULT_TEARDOWN_TIMEOUT,
                           forget_if_unreachable=bool(resource.get("cluster_goes_away")))
    elif kind == "juju-cloud":
        remove_cloud(resource["name"], controller=resource.get("controller") or None)
    else:
        return False
    return True


def destroy_recorded_model(resource: Mapping[str, Any]) -> None:
    """Janitor: destroy a model a crashed run left behind (forced, bounded, idempotent)."""
    ref = f"{resource['controller']}:{resource['name']}" if resource.get("controller") \
        else str(resource["name"])
    juju = _Juju(command_timeout=DEFAULT_TEARDOWN_TIMEOUT)
    try:
        juju.destroy_model(ref, destroy_storage=True, force=True, no_wait=True,
                           timeout=FORCE_DESTROY_STEP_TIMEOUT)
    except jubilant.CLIError as exc:
        if _not_found(exc):
            return
        with juju_errors(f"destroying Juju model {ref}"):
            raise


# ---------------------------------------------------------------- waiting


class _UnitFailed(Terminal):
    def __init__(self, unit: str, message: str) -> None:
        super().__init__(message)
        self.unit = unit


class BundleWatch:
    """`ready` and `error` callables for `jubilant.Juju.wait`: fail fast, tolerate the transient.

    Transient states seen in real deployments (waiting for relation data, maintenance while
    the workload starts, `blocked` until a relation arrives) keep the wait going; a unit in
    `error`, or `blocked` for longer than the grace period, ends it at once.
    """

    def __init__(self, apps: tuple[str, ...], *, blocked_grace: float,
                 channels: Mapping[str, str] | None = None,
                 clock: Any = time.monotonic) -> None:
        self.apps = apps
        self.blocked_grace = blocked_grace
        self.channels = dict(channels or {})
        self.clock = clock
        self.blocked_since: dict[str, float] = {}
        self.last: jubilant.Status | None = None

    def ready(self, status: jubilant.Status) -> bool:
        self.last = status
        for app in self.apps:
            info = status.apps.get(app)
            if info is None or not info.units:
                return False
            if app in self.channels and info.charm_channel != self.channels[app]:
                return False
            if info.app_status.current not in ("active", ""):
                return False
            for unit in info.units.values():
                if unit.workload_status.current != "active" or unit.juju_status.current != "idle":
                    return False
        return True

    def error(self, status: jubilant.Status) -> bool:
        self.last = status
        if CANCEL.is_set():
            raise Interrupted()
        now = self.clock()
        seen = set()
        for app_name, app in sorted(status.apps.items()):
            if app.app_status.current == "error" and not app.units:
                raise _UnitFailed(app_name, f"application {app_name} is in error: "
                                  f"{app.app_status.message}")
            for name, unit in sorted(app.units.items()):
                workload, agent = unit.workload_status, unit.juju_status
                if workload.current == "error" or agent.current == "error":
                    message = workload.message or agent.message
                    raise _UnitFailed(name, f"unit {name} is in error: {message}")
                if workload.current == "blocked":
                    seen.add(name)
                    since = self.blocked_since.setdefault(name, now)
                    if now - since > self.blocked_grace:
                        raise _UnitFailed(name, f"unit {name} has been blocked for "
                                          f"{now - since:.0f}s (grace {self.blocked_grace:.0f}s):"
                                          f" {workload.message}")
        for name in list(self.blocked_since):
            if name not in seen:
                del self.blocked_since[name]
        return False

    def summary(self) -> str:
        if self.last is None:
            return "no status yet"
        parts = []
        for app in self.apps:
            info = self.last.apps.get(app)
            if info is None:
                parts.append(f"{app}: not deployed")
                continue
            for name, unit in sorted(info.units.items()) or [(app, None)]:
                if unit is None:
                    parts.append(f"{app}: no units ({info.app_status.current})")
                    continue
                text = f"{name}: {unit.workload_status.current}/{unit.juju_status.current}"
                if unit.workload_status.message:
                    text += f" ({unit.workload_status.message})"
                parts.append(text)
        return "; ".join(parts)


# ---------------------------------------------------------------- the deployment


class JujuDeployment:
    """One cell's model: the bundle of its channel, deployed and waited on with jubilant."""

    def __init__(self, context: RunContext, substrate: Substrate, cell_dir: Path) -> None:
        self.context = context
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

    # -- plan

    @classmethod
    def plan_for(cls, context: RunContext, cell: Cell) -> list[str]:
        """The Juju (and Kubernetes API) steps of one cell, in order; no side effects."""
        sections = cls.plan_sections(context, cell)
        restart = sections["restart"] if "persistence" in cell.scenarios and not cell.upgrade_to \
            else []
        return [*sections["deploy"], *sections["upgrade"], *restart, *sections["close"]]

    @classmethod
    def plan_sections(cls, context: RunContext, cell: Cell) -> dict[str, list[str]]:
        """The plan by step (deploy, upgrade, restart, close), for `plan` to place each one
        where the cell's step list (harness.cell_steps) runs it."""
        s = juju_settings(context.platform.settings)
        cloud, controller = cloud_name(context), controller_name(context)
        model = model_name(context, cell.id)
        ref = f"{controller}:{model}"
        deploy_t = int(_timeout(context, "deploy_timeout", DEFAULT_DEPLOY_TIMEOUT))
        teardown_t = int(_timeout(context, "teardown_timeout", DEFAULT_TEARDOWN_TIMEOUT))
        given = context.options.get("controller")
        add_k8s = f"juju add-k8s {cloud} " + (f"--controller {given}" if given else "--client")
        if s.storage_class:
            add_k8s += f" --storage {s.storage_class}"
        lines = [f"once per platform: {add_k8s}   (the platform's kubeconfig on stdin)"]
        if given:
            lines.append(f"once per platform: reuse Juju controller {given} (--controller)")
        else:
            lines.append(f"once per platform: juju bootstrap {cloud} {controller} --no-switch"
                         f"   (deadline {s.bootstrap_timeout}s)")
        lines.append(f"juju add-model --no-switch {model} {cloud} --controller {controller}")
        lines += _deploy_plan(cell.channel, s, ref)
        wait = (f"juju status --model {ref} --format json every {s.poll_interval:g}s until every "
                f"unit of {', '.join(BUNDLE_APPS)} is active/idle {s.successes} polls in a row "
                f"(deadline timeouts.deploy = {deploy_t}s)")
        lines.append(f"wait: {wait}; a unit in error, or blocked for more than "
                     f"{s.blocked_grace}s, ends the wait at once with its message and"
                     f" `juju show-status-log --model {ref} <unit> -n {STATUS_LOG_ENTRIES}`")
        lines += _endpoint_plan(ref, model, s)
        upgrade = []
        if cell.upgrade_to:
            upgrade = [*_refresh_plan(cell.upgrade_to, ref),
                       f"wait as after deploy until {SERVER_APP} runs {cell.upgrade_to.name}, "
                       "then GET <tracking-uri>/version again"]
        restart = [f"delete pod {SERVER_APP}-0 through the Kubernetes API, wait for its "
                   f"replacement to be Ready, then {wait}; then find the endpoint again"]
        close = [
            f"diagnostics (on a failed phase and after the scenarios): juju status "
            f"--model {ref} --format yaml; juju debug-log --model {ref} --replay "
            f"--no-tail (newest {s.debug_log_lines} lines); juju show-status-log per "
            f"unit; kubectl get all -o wide / describe pods -n {model}; logs of every"
            " container not running and ready — all redacted",
            f"teardown: juju destroy-model {ref} --no-prompt --destroy-storage "
            f"(deadline {teardown_t}s); if that fails: juju destroy-model {ref} "
            f"--no-prompt --destroy-storage --force --no-wait --timeout "
            f"{FORCE_DESTROY_STEP_TIMEOUT}s"]
        return {"deploy": lines, "upgrade": upgrade, "restart": restart, "close": close}

    # -- lifecycle

    def deploy(self, channel: Channel) -> Endpoint:
        self.cloud, self.controller = ensure_controller(self.context, self.substrate, self.juju,
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
        return self.endpoint

    def upgrade(self, channel: Channel) -> Endpoint:
        """`juju refresh mlflow-minio` then `mlflow-server`, as the upgrade guides do; then wait."""
        if self.model_ref is None:
            raise InfrastructureError("upgrade() before deploy()")
        targets = self._target_channels(channel)
        with juju_errors("reading the model status before the upgrade"):
            status = self.juju.status()
        expected = {}
        for app in REFRESH_ORDER:
            target = targets.get(app)
            current = status.apps.get(app)
            if not target or current is None:
                continue
            if app != SERVER_APP and current.charm_channel == target:
                continue  # the documented path refreshes minio only when its channel changes
            if CANCEL.is_set():
                raise Interrupted()
            with juju_errors(f"juju refresh {app} --channel {target}"):
                self.juju.refresh(app, channel=target)
            expected[app] = target
        self._wait(f"the refresh to {channel.name}", BUNDLE_APPS, channels=expected)
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

    def collect(self, dest: Path) -> None:
        from harness.diagnostics import collect_deployment

        collect_deployment(self, dest)

    def teardown(self) -> None:
        """Destroy the model within the teardown deadline; force it if that fails. Idempotent."""
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
        source = BundleSource.of(channel)
        if CANCEL.is_set():
            raise Interrupted()
        if source.kind == "charms":
            for charm, app, charm_channel, extra in charm_plan(channel, self.settings):
                with juju_errors(f"juju deploy {charm} {app}"):
                    self.juju.run_cli("deploy", charm, app, "--channel", charm_channel, "--trust",
                                      *extra)
            for other in (MINIO_APP, MYSQL_APP):
                with juju_errors(f"juju integrate {SERVER_APP} {other}"):
                    self.juju.integrate(SERVER_APP, other)
            return
        with self._bundle_dir() as where:
            local = fetch_bundle(source, where)
            with juju_errors(f"juju deploy of the {channel.name} bundle"):
                self.juju.run_cli("deploy", str(local), "--trust")

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
              channels: Mapping[str, str] | None = None) -> jubilant.Status:
        """jubilant's wait with our fail-fast rules; a few failed `juju status` calls in a row
        (a controller briefly unreachable mid-deploy) are retried within the same deadline."""
        watch = BundleWatch(apps, blocked_grace=self.settings.blocked_grace, channels=channels)
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

    def kube(self) -> Kube:
        if self._kube is None:
            from harness.kube import Kube

            self._kube = Kube(self.substrate.kubeconfig, self.substrate.kube_context,
                              namespace=self.model, poll=min(1.0, self.settings.poll_interval))
        return self._kube

    def _endpoint(self) -> Endpoint:
        with juju_errors("reading the mlflow-server configuration"):
            config = self.juju.config(SERVER_APP)
        bucket = str(config.get("default_artifact_root") or "mlflow")
        mlflow_port = int(config.get("mlflow_port") or 5000)
        storage = self.minio_relation_data()
        credentials = self._credentials(storage)
        minio_port = int(storage.get("port") or 9000)
        kube = self.kube()
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


def _deploy_plan(channel: Channel, s: JujuSettings, ref: str) -> list[str]:
    source = BundleSource.of(channel)
    if source.kind == "charms":
        lines = [f"juju deploy --model {ref} {charm} {app} --channel {ch} --trust"
                 + (" " + " ".join(extra) if extra else "")
                 for charm, app, ch, extra in charm_plan(channel, s)]
        lines += [f"juju integrate --model {ref} {SERVER_APP} {other}"
                  for other in (MINIO_APP, MYSQL_APP)]
        return lines
    bundle = f"{_juju_data_dir()}/mlflow-matrix-<run-id>-<random>/bundle.yaml"
    fetch = (f"download {source.location} → {bundle}" if source.kind == "url"
             else f"copy {source.location} → {bundle}")
    return [fetch + " (checked: a bundle with mlflow-server and mlflow-minio; removed once "
            "deployed)", f"juju deploy --model {ref} {bundle} --trust"]


def _refresh_plan(channel: Channel, ref: str) -> list[str]:
    source = BundleSource.of(channel)
    if source.kind == "charms":
        minio = "<minio_channel setting>"
        server = channel.name
    elif source.kind == "file":
        try:
            channels = bundle_channels(read_bundle(Path(source.location)))
        except InfrastructureError:
            channels = {}
        minio = channels.get(MINIO_APP, "<mlflow-minio channel of the target bundle>")
        server = channels.get(SERVER_APP, channel.name)
    else:
        minio = f"<mlflow-minio channel in {source.location}>"
        server = f"<mlflow-server channel in the same bundle, normally {channel.name}>"
    return [f"juju refresh --model {ref} {MINIO_APP} --channel {minio}   (skipped when the "
            "channel is unchanged)",
            f"juju refresh --model {ref} {SERVER_APP} --channel {server}"]


def _endpoint_plan(ref: str, model: str, s: JujuSettings) -> list[str]:
    reach = {
        "nodeport": "the node's InternalIP and the Service's nodePort (a NodePort Service "
                    "mm-<app>-nodeport is created when the charm's Service has none)",
        "loadbalancer": "a LoadBalancer Service mm-<app>-lb with the charm Service's selector; "
                        "wait for its ingress address",
        "port-forward": "an in-process port-forward (Kubernetes API websocket) to the pod "
                        "behind the Service",
    }[s.access]
    return [
        f"juju config --model {ref} --format json {SERVER_APP}   (mlflow_port, "
        "default_artifact_root)",
        f"juju show-unit --model {ref} {SERVER_APP}/0 --format json → MinIO keys from the "
        "object-storage relation data (else `juju run mlflow-server/0 get-minio-credentials`,"
        f" else Secret {MINIO_ARTIFACT_SECRET}); registered as secrets, never printed",
        f"Kubernetes API (lightkube), namespace {model}: Services {SERVER_APP} and {MINIO_APP}"
        f" reached by {reach}",
        f"GET <tracking-uri>/version until it answers (deadline {s.endpoint_timeout}s) → "
        "the server's MLflow version",
    ]

