"""`microk8s`: a single-node MicroK8s from its snap, with Juju deploying the bundle onto it.

up:   snap install microk8s (only if absent; recorded first) → status --wait-ready → enable dns,
      hostpath-storage, metallb:<range> → wait for the node to be Ready → `microk8s config` as
      the kubeconfig (mode 600, its credentials registered as secrets)
down: the Juju controller and cloud this run created → `snap remove microk8s --purge` if `up`
      installed it (else: disable only the addons `up` enabled). Idempotent, also after a
      failed or partial `up`; `mlflow-matrix down --platform NAME` finds what an earlier
      `mlflow-matrix up` installed through a marker in the cache directory.

The snap steps shared with `canonical-k8s` are in `snap.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from provisioners.api import Substrate
from provisioners.kubernetes.snap import (
    COMMAND_TIMEOUT,
    SnapClusterProvisioner,
    SnapHostSettings,
    platform_marker,
)

__all__ = ["MicroK8sProvisioner", "MicroK8sSettings", "platform_marker"]


@dataclass(frozen=True)
class MicroK8sSettings(SnapHostSettings):
    channel: str = "1.32/stable"
    # rbac: Charmed Kubeflow's MicroK8s setup enables it (charmed-kubeflow-solutions
    # deploy-to-microk8s.yaml: `microk8s enable dns hostpath-storage rbac metallb:…`)
    addons: tuple[str, ...] = ("dns", "hostpath-storage", "rbac")
    metallb_range: str = "10.64.140.43-10.64.140.49"  # empty: no MetalLB
    sudo: bool = True          # prefix snap/microk8s commands with sudo when not root
    ready_timeout: int = 600   # node Ready, `status --wait-ready`


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

    def cluster_plan(self) -> list[str]:
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
        ]
        return lines

    def cluster_down_plan(self) -> list[str]:
        return [f"down: {self.shell('snap', 'remove', 'microk8s', '--purge')}   (only if up "
                "installed it; otherwise `microk8s disable` of the addons up enabled)"]

    def create_cluster(self) -> Substrate:
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

    def status_commands(self) -> list[tuple[str, list[str]]]:
        return [("microk8s-status.txt", ["microk8s", "status"]),
                ("nodes.txt", ["microk8s", "kubectl", "get", "nodes", "-o", "wide"])]
