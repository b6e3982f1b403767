"""Diagnostics of a Juju deployment, written under a cell's `diagnostics/` folder.

Called by the runner on a failed phase and after the scenarios (`deployment.collect(dest)`),
before teardown. Best effort and bounded: every command has a deadline, every log a size cap,
a step that fails is noted in `collect-errors.txt` and the others still run. Everything written
is redacted first (registered secrets and secret-shaped text).

    juju/status.yaml                 juju status --format yaml
    juju/debug-log.txt               juju debug-log --replay --no-tail (newest N lines)
    juju/status-log/<unit>.txt       juju show-status-log <unit>
    kubernetes/get-all.txt           kubectl get all -o wide
    kubernetes/describe-pods.txt     kubectl describe pods
    kubernetes/events.txt            namespace events, oldest first (lightkube)
    kubernetes/logs/<pod>.<ctr>.log  logs of every container not running and ready (lightkube)
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from harness.system.errors import CommandError, MatrixError
from harness.system.kubectl import kubectl_argv
from harness.system.procs import run
from harness.system.redact import redact

if TYPE_CHECKING:
    from deployments.juju.deployment import JujuDeployment


COMMAND_TIMEOUT = 60
DEBUG_LOG_TIMEOUT = 120
CONTAINER_LOG_LINES = 2000
MAX_FILE_BYTES = 5_000_000


def write_redacted(path: Path, text: str) -> Path:
    """Write `text` redacted (and capped) to `path`; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = redact(text)
    if len(clean) > MAX_FILE_BYTES:
        clean = "[… truncated, newest part kept …]\n" + clean[-MAX_FILE_BYTES:]
    path.write_text(clean, encoding="utf-8")
    return path


def tail_lines(text: str, lines: int) -> str:
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return f"[… {len(parts) - lines} older lines dropped …]\n" + "\n".join(parts[-lines:]) + "\n"


class Collector:
    """Runs named steps; a failing step is recorded, never fatal."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.errors: list[str] = []

    def step(self, name: str, action: Callable[[], object]) -> None:
        try:
            action()
        except MatrixError as exc:
            self.errors.append(f"{name}: {exc.message}")
        except Exception as exc:  # diagnostics must never hide the failure being diagnosed
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}\n"
                               + "".join(traceback.format_exc(limit=3)))

    def finish(self) -> None:
        target = self.dest / "collect-errors.txt"
        if self.errors:
            write_redacted(target, "\n".join(self.errors) + "\n")
        elif target.exists():
            target.unlink()


def collect_deployment(deployment: JujuDeployment, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    collector = Collector(dest)
    if deployment.model_ref is None:
        write_redacted(dest / "juju" / "README.txt",
                       f"no Juju model to collect from (model {deployment.model} was not "
                       "created, or is already destroyed)\n")
        collector.finish()
        return
    juju_dir, kube_dir = dest / "juju", dest / "kubernetes"
    collector.step("juju status", lambda: _juju_status(deployment, juju_dir))
    collector.step("juju debug-log", lambda: _juju_debug_log(deployment, juju_dir))
    for unit in deployment.units():
        collector.step(f"juju show-status-log {unit}",
                       lambda unit=unit: write_redacted(
                           juju_dir / "status-log" / f"{unit.replace('/', '-')}.txt",
                           deployment.status_log(unit, entries=200) + "\n"))
    collector.step("kubectl get all", lambda: _kubectl(deployment, kube_dir / "get-all.txt",
                                                       ["get", "all", "-o", "wide"]))
    collector.step("kubectl describe pods",
                   lambda: _kubectl(deployment, kube_dir / "describe-pods.txt",
                                    ["describe", "pods"]))
    collector.step("events", lambda: write_redacted(
        kube_dir / "events.txt", "\n".join(deployment.kube().events()) + "\n"))
    collector.step("container logs", lambda: _container_logs(deployment, kube_dir / "logs"))
    collector.finish()


def _juju_status(deployment: JujuDeployment, where: Path) -> None:
    out, _ = deployment.juju.run_cli("status", "--format", "yaml", timeout=COMMAND_TIMEOUT)
    write_redacted(where / "status.yaml", out)


def _juju_debug_log(deployment: JujuDeployment, where: Path) -> None:
    out, _ = deployment.juju.run_cli("debug-log", "--replay", "--no-tail",
                                     timeout=DEBUG_LOG_TIMEOUT)
    write_redacted(where / "debug-log.txt",
                   tail_lines(out, deployment.settings.debug_log_lines))


def _kubectl(deployment: JujuDeployment, target: Path, args: Sequence[str]) -> None:
    substrate = deployment.substrate
    argv = kubectl_argv(substrate.kubeconfig, substrate.kube_context, deployment.model, args)
    try:
        proc = run(argv, timeout=COMMAND_TIMEOUT, check=False)
    except MatrixError as exc:  # no kubectl here: the same objects from the API, as YAML
        dump = deployment.kube().dump()
        write_redacted(target, f"# kubectl unavailable ({exc.message}); objects from the API\n"
                       + yaml.safe_dump(json.loads(json.dumps(dump, default=str)),
                                        sort_keys=False))
        return
    write_redacted(target, proc.stdout + (f"\n[stderr]\n{proc.stderr}" if proc.stderr else ""))
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)


def _container_logs(deployment: JujuDeployment, where: Path) -> None:
    kube = deployment.kube()
    index = []
    for pod, container, why in kube.unhealthy_containers():
        log = kube.container_log(pod, container, tail_lines=CONTAINER_LOG_LINES)
        path = write_redacted(where / f"{pod}.{container}.log", log)
        index.append(f"{pod}/{container}: {why} → {path.name}")
    write_redacted(where / "INDEX.txt", "\n".join(index) + "\n" if index
                   else "every container is running and ready\n")
