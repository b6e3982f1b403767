"""The Juju cloud and controller one platform's cells share within a run.

The first cell adds the cluster as a cloud (`juju add-k8s`) and bootstraps the controller; the
provisioner's `down` releases both (`release_platform`) before the cluster goes. Every resource
is recorded in the run state before it is created, so `mlflow-matrix janitor` can release it
after a crash (`release_recorded_juju`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jubilant

from deployments.juju.cli import _Juju, _not_found, juju_errors
from deployments.juju.names import cloud_name, controller_name
from deployments.juju.settings import (
    DEFAULT_TEARDOWN_TIMEOUT,
    FORCE_DESTROY_STEP_TIMEOUT,
    JujuSettings,
    bootstrap_config,
)
from harness.system import hints
from harness.system.errors import CommandError, InfrastructureError, Interrupted
from harness.system.waits import CANCEL, NotYet, wait_for

if TYPE_CHECKING:
    from provisioners.api import RunContext, Substrate


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
    from harness.system.kube import register_kubeconfig_secrets

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
        cluster_goes_away=substrate.cluster_goes_away)
    shared.bootstrapped = True
    bootstrap(context, juju, shared.cloud, shared.controller, timeout=settings.bootstrap_timeout,
              config=bootstrap_config(settings))


def bootstrap(context: RunContext, juju: _Juju, cloud: str, controller: str, *,
              timeout: float, config: tuple[str, ...] = ()) -> None:
    """`juju bootstrap` as a process of its own that Ctrl-C (CANCEL) and the deadline can stop.

    A bootstrap takes minutes; as a Service (own process group, recorded in the run state) it is
    polled instead of blocking, so an interrupted run gets to its teardown at once.
    """
    from harness.system.procs import Service

    argv = [juju.cli_binary, "bootstrap", cloud, controller, "--no-switch"]
    for value in config:
        argv += ["--config", value]
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
                                  hint="release leftovers with `" + hints.command(
                                      "down", "--run-id", context.run_id,
                                      reports_dir=context.state.path.parent.parent) + "`")


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

