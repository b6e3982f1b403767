"""`microk8s`: a single-node MicroK8s from its snap, with Juju deploying the bundle onto it.

up:   snap install microk8s (only if absent; recorded first) → status --wait-ready → enable dns,
      hostpath-storage, metallb:<range> → wait for the node to be Ready → `microk8s config` as
      the kubeconfig (mode 600, its credentials registered as secrets)
down: the Juju controller and cloud this run created → `snap remove microk8s --purge` if `up`
      installed it (else: disable only the addons `up` enabled). Idempotent, also after a
      failed or partial `up`; `mlflow-matrix down --platform NAME` finds what an earlier
      `mlflow-matrix up` installed through a marker in the cache directory.

`SnapClusterProvisioner` is shared with `canonical-k8s` (the `k8s` snap).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import CommandError, InfrastructureError, MatrixError
from harness.juju import JujuSettings, cloud_name, controller_name, release_platform
from harness.kube import register_kubeconfig_secrets
from harness.procs import run
from harness.redact import redact
from provisioners.base import RunContext, Substrate

SNAP_TIMEOUT = 900
COMMAND_TIMEOUT = 300


@dataclass(frozen=True)
class MicroK8sSettings(JujuSettings):
    channel: str = "1.32/stable"
    addons: tuple[str, ...] = ("dns", "hostpath-storage")
    metallb_range: str = "10.64.140.43-10.64.140.49"  # empty: no MetalLB
    sudo: bool = True          # prefix snap/microk8s commands with sudo when not root
    ready_timeout: int = 600   # node Ready, `status --wait-ready`


def platform_marker(platform: str) -> Path:
    """Where `up` notes what it installed, for a later `mlflow-matrix down --platform`."""
    from harness.envs import cache_root

    return cache_root() / "platforms" / f"{platform}.json"


class SnapClusterProvisioner:
    """A Kubernetes that a snap provides on this machine; `down` removes only what `up` added."""

    kind: ClassVar[str]
    snap: ClassVar[str]

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.settings: Any = context.platform.settings
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
        register_kubeconfig_secrets(text)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return self.kubeconfig

    def substrate(self) -> Substrate:
        return Substrate(name=self.context.platform.name, kubeconfig=self.kubeconfig,
                         details={"snap": self.snap, "channel": self.settings.channel,
                                  "cluster_goes_away": "true" if self._installed_snap
                                  else "false"})

    # -- down / collect

    def down(self) -> None:
        problems: list[str] = []
        marker = self._read_marker()
        installed = self._installed_snap or bool(marker and marker.get("installed"))
        try:
            release_platform(self.context, timeout=float(self.context.options.get(
                "teardown_timeout") or 600), cluster_goes_away=installed)
        except MatrixError as exc:
            problems.append(exc.message)
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

    def disable(self, feature: str) -> None:
        raise NotImplementedError

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        raise NotImplementedError

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, argv in [("snap-list.txt", ["snap", "list", self.snap]),
                           *self.collect_commands()]:
            try:
                proc = run(self.cmd(*argv), timeout=60, check=False)
                text = f"$ {' '.join(self.cmd(*argv))}\n{proc.stdout}{proc.stderr}"
                if proc.returncode != 0:
                    text += f"\n(exit {proc.returncode})\n"
            except MatrixError as exc:
                text = f"$ {' '.join(self.cmd(*argv))}\n({exc.message})\n"
            (dest / name).write_text(redact(text), encoding="utf-8")

    @classmethod
    def release_recorded(cls, resource: dict[str, Any]) -> None:
        """Janitor: release a resource a crashed run recorded (snap, feature or Juju object)."""
        from harness.juju import release_recorded_juju

        if release_recorded_juju(resource):
            return
        sudo = ["sudo"] if os.geteuid() != 0 else []
        if resource["type"] == "snap":
            argv = [*sudo, "snap", "remove", resource["name"], "--purge"]
        elif resource["type"] == f"{cls.kind}-feature":
            argv = [*sudo, cls.snap if cls.snap == "k8s" else "microk8s", "disable",
                    resource["name"]]
        else:
            argv = []
        if argv:
            proc = run(argv, timeout=SNAP_TIMEOUT, check=False)
            gone = "not installed" in proc.stdout + proc.stderr or "not found" in proc.stderr
            if proc.returncode != 0 and not gone:
                raise InfrastructureError(f"{' '.join(argv)} failed: "
                                          f"{redact(proc.stderr.strip())}")
            return
        raise InfrastructureError(f"no way to release a {resource['type']!r} resource",
                                  hint="release it by hand; its details are in the state file")

    def _juju_down_plan(self) -> list[str]:
        controller, cloud = controller_name(self.context), cloud_name(self.context)
        lines = []
        if not self.context.options.get("controller"):
            lines.append(f"down: juju destroy-controller {controller} --no-prompt "
                         "--destroy-all-models --destroy-storage (fallback: juju "
                         f"kill-controller {controller} --no-prompt --timeout 60s)")
        target = (f"--controller {self.context.options['controller']}"
                  if self.context.options.get("controller") else "--client")
        lines.append(f"down: juju remove-k8s {cloud} {target}")
        return lines


class MicroK8sProvisioner(SnapClusterProvisioner):
    """MicroK8s from its snap; Juju deploys the bundle onto it."""

    kind: ClassVar[str] = "microk8s"
    snap: ClassVar[str] = "microk8s"
    Settings = MicroK8sSettings

    def addon_args(self) -> list[str]:
        s: MicroK8sSettings = self.settings
        addons = list(s.addons)
        if s.metallb_range and not any(a.startswith("metallb") for a in addons):
            addons.append(f"metallb:{s.metallb_range}")
        return addons

    def plan(self) -> list[str]:
        s: MicroK8sSettings = self.settings
        lines = [
            f"{self.shell('snap', 'list', 'microk8s')}   (installed already: reused only if it "
            f"tracks {s.channel}, and left installed by down)",
            f"{self.shell('snap', 'install', 'microk8s', '--classic', f'--channel={s.channel}')}"
            "   (only if absent; recorded in the run state first)",
            self.shell("microk8s", "status", "--wait-ready", "--timeout", str(s.ready_timeout)),
        ]
        lines += [self.shell("microk8s", "enable", addon) for addon in self.addon_args()]
        lines += [
            self.shell("microk8s", "kubectl", "wait", "--for=condition=Ready", "node", "--all",
                       f"--timeout={s.ready_timeout}s"),
            f"{self.shell('microk8s', 'config')} > {self.kubeconfig}   (mode 600; its "
            "credentials registered as secrets)",
            *self._juju_down_plan(),
            f"down: {self.shell('snap', 'remove', 'microk8s', '--purge')}   (only if up "
            "installed it; otherwise `microk8s disable` of the addons up enabled)",
            "collect: " + "; ".join(" ".join(self.cmd(*argv)) for _, argv in
                                    [("", ["snap", "list", "microk8s"]),
                                     *self.collect_commands()]),
        ]
        return lines

    def up(self) -> Substrate:
        s: MicroK8sSettings = self.settings
        self.ensure_snap(s.channel)
        self._run("microk8s", "status", "--wait-ready", "--timeout", str(s.ready_timeout),
                  timeout=s.ready_timeout + 60, what="waiting for MicroK8s to be ready")
        for addon in self.addon_args():
            proc = self._run("microk8s", "enable", addon, timeout=COMMAND_TIMEOUT,
                             what=f"microk8s enable {addon}")
            if not self._installed_snap and "already enabled" not in proc.stdout:
                name = addon.split(":", 1)[0]
                self._enabled.append(name)
                self._record(f"{self.kind}-feature", name=name)
                self._write_marker()
        return self.ready_substrate("microk8s", ["microk8s", "config"], "the MicroK8s node")

    def disable(self, feature: str) -> None:
        self._run("microk8s", "disable", feature, what=f"microk8s disable {feature}")

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        return [("microk8s-status.txt", ["microk8s", "status"]),
                ("nodes.txt", ["microk8s", "kubectl", "get", "nodes", "-o", "wide"])]


def _channel(name: str) -> str:
    """`1.32` and `1.32/stable` are the same snap channel; `latest/` is implied."""
    name = name.strip()
    if "/" not in name:
        name = f"{name}/stable" if re.match(r"^[\d.]+(-[a-z]+)?$", name) else f"latest/{name}"
    return name.removeprefix("latest/")
