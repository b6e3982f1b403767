"""Kubernetes from a snap on this machine (MicroK8s, Canonical Kubernetes): shared steps.

`up` installs the snap only if absent (recorded first) and `down` removes only what `up` added:
the snap it installed, else the addons/features it enabled. `mlflow-matrix down --platform NAME`
finds what an earlier `mlflow-matrix up` installed through a marker in the cache directory.
"""

from __future__ import annotations

import json
import os
import re
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from harness.config.model import CiNeeds
from harness.system.errors import CommandError, InfrastructureError, MatrixError
from harness.system.procs import run
from harness.system.redact import redact
from provisioners.api import RunContext, Substrate
from provisioners.kubernetes.base import JUJU_SNAP, KubernetesProvisioner

SNAP_TIMEOUT = 900
COMMAND_TIMEOUT = 300


def platform_marker(platform: str) -> Path:
    """Where `up` notes what it installed, for a later `mlflow-matrix down --platform`."""
    from harness.system.cache import cache_root

    return cache_root() / "platforms" / f"{platform}.json"


class SnapClusterProvisioner(KubernetesProvisioner):
    """A Kubernetes that a snap provides on this machine; `down` removes only what `up` added.

    Subclasses give the snap's own steps: `cluster_plan`, `create_cluster` (ending with
    `ready_substrate`), `disable` and `status_commands`.
    """

    kind: ClassVar[str]
    snap: ClassVar[str]

    @classmethod
    def ci_needs(cls, settings: Any) -> CiNeeds:
        cluster = f"{cls.snap}:{getattr(settings, 'channel', '') or 'latest/stable'}:classic"
        return CiNeeds(snaps=(cluster, JUJU_SNAP))

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.kubeconfig = context.work_dir / "kubeconfig"
        self._recorded: dict[str, str] = {}   # what up added → state resource id
        self._installed_snap = False
        self._enabled: list[str] = []

    # -- commands

    def cmd(self, *args: str) -> list[str]:
        """argv with sudo when the settings ask for it and we are not root."""
        use_sudo = bool(getattr(self.settings, "sudo", False)) and os.geteuid() != 0
        return (["sudo"] if use_sudo else []) + list(args)

    def shell(self, *args: str) -> str:
        return " ".join(self.cmd(*args))

    def _run(self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True,
             what: str | None = None, hint: str | None = None) -> Any:
        try:
            return run(self.cmd(*args), timeout=timeout, check=check)
        except CommandError as exc:
            raise InfrastructureError(f"{what or ' '.join(args)} failed: {exc.message}",
                                      hint=hint) from None

    # -- snap

    def installed_channel(self) -> str | None:
        """The channel the snap tracks, or None when it is not installed."""
        proc = run(self.cmd("snap", "list", self.snap), timeout=60, check=False)
        if proc.returncode != 0:
            return None
        for line in proc.stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == self.snap:
                return fields[3] if len(fields) > 3 else ""
        return None

    def ensure_snap(self, channel: str, *, classic: bool = True) -> None:
        current = self.installed_channel()
        if current is not None:
            if _channel(current) != _channel(channel):
                raise InfrastructureError(
                    f"{self.snap} is installed from {current}, this platform wants {channel}",
                    hint=f"snap refresh {self.snap} --channel={channel}, or remove it, or use "
                         "the `existing` platform for the cluster you have")
            return
        self._record("snap", name=self.snap, channel=channel)
        self._installed_snap = True
        self._write_marker()
        args = ["snap", "install", self.snap] + (["--classic"] if classic else []) + \
            [f"--channel={channel}"]
        self._run(*args, timeout=SNAP_TIMEOUT, what=f"installing the {self.snap} snap",
                  hint="snapd must be running and the store reachable")

    def remove_snap(self) -> None:
        proc = run(self.cmd("snap", "remove", self.snap, "--purge"), timeout=SNAP_TIMEOUT,
                   check=False)
        if proc.returncode != 0 and "not installed" not in (proc.stdout + proc.stderr):
            raise InfrastructureError(f"snap remove {self.snap} failed: "
                                      f"{redact(proc.stderr.strip() or proc.stdout.strip())}")

    def _record(self, type_: str, **data: Any) -> None:
        key = f"{type_}:{data.get('name', '')}"
        self._recorded[key] = self.context.state.add(type_, kind=self.kind, **data)

    def _release(self, key: str) -> None:
        rid = self._recorded.pop(key, None)
        if rid:
            self.context.state.release(rid)

    def _write_marker(self) -> None:
        marker = platform_marker(self.context.platform.name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"snap": self.snap, "installed": self._installed_snap,
                                      "run_id": self.context.run_id,
                                      "enabled": self._enabled}), encoding="utf-8")

    def _read_marker(self) -> dict[str, Any] | None:
        try:
            data = json.loads(platform_marker(self.context.platform.name).read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("snap") == self.snap else None

    def ready_substrate(self, cli: str, config_argv: list[str], what: str) -> Substrate:
        """Wait for every node Ready, then hand out the cluster's kubeconfig."""
        s = self.settings
        self._run(cli, "kubectl", "wait", "--for=condition=Ready", "node", "--all",
                  f"--timeout={s.ready_timeout}s", timeout=s.ready_timeout + 60,
                  what=f"waiting for {what} to be Ready")
        config = self._run(*config_argv, what=" ".join(config_argv))
        self.write_kubeconfig(config.stdout)
        return self.substrate()

    def write_kubeconfig(self, text: str) -> Path:
        if "apiVersion" not in text or "clusters" not in text:
            raise InfrastructureError(f"{self.snap} printed no kubeconfig")
        from harness.system.kube import register_kubeconfig_secrets  # lightkube: only when used

        register_kubeconfig_secrets(text)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return self.kubeconfig

    def substrate(self) -> Substrate:
        return Substrate(name=self.context.platform.name, kubeconfig=self.kubeconfig,
                         cluster_goes_away=self._installed_snap,
                         details={"snap": self.snap, "channel": self.settings.channel})

    # -- down / collect

    def cluster_goes_away(self) -> bool:
        marker = self._read_marker()
        return self._installed_snap or bool(marker and marker.get("installed"))

    def delete_cluster(self) -> None:
        """Remove the snap if `up` installed it, else disable only what `up` enabled."""
        problems: list[str] = []
        marker = self._read_marker()
        installed = self._installed_snap or bool(marker and marker.get("installed"))
        if installed:
            try:
                self.remove_snap()
                self._release(f"snap:{self.snap}")
                self._installed_snap = False
                platform_marker(self.context.platform.name).unlink(missing_ok=True)
            except MatrixError as exc:
                problems.append(exc.message)
        else:
            enabled = list(self._enabled) or list((marker or {}).get("enabled") or [])
            for feature in reversed(enabled):
                try:
                    self.disable(feature)
                    self._release(f"{self.kind}-feature:{feature}")
                except MatrixError as exc:
                    problems.append(exc.message)
            self._enabled.clear()
            if marker:
                platform_marker(self.context.platform.name).unlink(missing_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        if problems:
            raise InfrastructureError("; ".join(problems))

    @abstractmethod
    def disable(self, feature: str) -> None:
        """Disable one addon/feature `up` enabled on a snap it did not install."""

    @abstractmethod
    def status_commands(self) -> list[tuple[str, list[str]]]:
        """(file name, argv) of the snap's own status commands, without sudo."""

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        return [(name, self.cmd(*argv)) for name, argv in
                [("snap-list.txt", ["snap", "list", self.snap]), *self.status_commands()]]

    @classmethod
    def release_cluster_resource(cls, resource: Mapping[str, Any]) -> bool:
        """Janitor: a snap or a feature/addon a crashed run recorded."""
        sudo = ["sudo"] if os.geteuid() != 0 else []
        if resource["type"] == "snap":
            argv = [*sudo, "snap", "remove", resource["name"], "--purge"]
        elif resource["type"] == f"{cls.kind}-feature":
            argv = [*sudo, cls.snap if cls.snap == "k8s" else "microk8s", "disable",
                    resource["name"]]
        else:
            return False
        proc = run(argv, timeout=SNAP_TIMEOUT, check=False)
        gone = "not installed" in proc.stdout + proc.stderr or "not found" in proc.stderr
        if proc.returncode != 0 and not gone:
            raise InfrastructureError(f"{' '.join(argv)} failed: {redact(proc.stderr.strip())}")
        return True


def _channel(name: str) -> str:
    """`1.32` and `1.32/stable` are the same snap channel; `latest/` is implied."""
    name = name.strip()
    if "/" not in name:
        name = f"{name}/stable" if re.match(r"^[\d.]+(-[a-z]+)?$", name) else f"latest/{name}"
    return name.removeprefix("latest/")
