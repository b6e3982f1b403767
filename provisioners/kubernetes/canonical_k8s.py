"""`canonical-k8s`: Canonical Kubernetes from the `k8s` snap; Juju deploys the bundle onto it.

up:   snap install k8s (only if absent; recorded first) → `k8s bootstrap` (only if this node is
      not part of a cluster) → status --wait-ready → load-balancer CIDRs → enable network, dns,
      local-storage, load-balancer → wait for the node to be Ready → `k8s config` as kubeconfig
down: the Juju controller and cloud this run created → `snap remove k8s --purge` if `up`
      installed it (else: disable only the features `up` enabled).

Juju cannot detect the rawfile local-storage class of Canonical Kubernetes by itself, so
`storage_class` defaults to `csi-rawfile-default` (passed to `juju add-k8s --storage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.system.errors import InfrastructureError
from harness.system.procs import run
from harness.system.redact import redact
from provisioners.api import Substrate
from provisioners.kubernetes.host import check_containerd
from provisioners.kubernetes.snap import COMMAND_TIMEOUT, SnapClusterProvisioner, SnapHostSettings

NOT_BOOTSTRAPPED = "not part of a Kubernetes cluster"


@dataclass(frozen=True)
class CanonicalK8sSettings(SnapHostSettings):
    channel: str = "1.32-classic/stable"
    features: tuple[str, ...] = ("network", "dns", "local-storage", "load-balancer")
    load_balancer_cidrs: str = "10.64.140.43/32"   # empty: leave the load balancer unconfigured
    load_balancer_l2_mode: bool = True
    storage_class: str = "csi-rawfile-default"
    sudo: bool = True
    ready_timeout: int = 600
    containerd_path: str = "/run/containerd"   # another containerd here: `k8s bootstrap` refuses


class CanonicalK8sProvisioner(SnapClusterProvisioner):
    """Canonical Kubernetes (the `k8s` snap)."""

    kind: ClassVar[str] = "canonical-k8s"
    snap: ClassVar[str] = "k8s"
    Settings = CanonicalK8sSettings

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """The host checks, and no foreign containerd where `k8s bootstrap` needs its own."""
        super().preflight(settings, options)
        check_containerd(settings.containerd_path, bootstrapped=_bootstrapped(settings))

    def preflight_plan(self) -> list[str]:
        path = self.settings.containerd_path
        return [*super().preflight_plan(),
                f"{path} absent unless `{self.shell('k8s', 'status')}` says this node is "
                "bootstrapped already (another containerd: `k8s bootstrap` refuses, "
                "k8s-snap#1192; exit 2 with Canonical CI's remedy)"]

    def lb_args(self) -> list[str]:
        s: CanonicalK8sSettings = self.settings
        if "load-balancer" not in s.features or not s.load_balancer_cidrs:
            return []
        return ["k8s", "set", f"load-balancer.cidrs={s.load_balancer_cidrs}",
                f"load-balancer.l2-mode={'true' if s.load_balancer_l2_mode else 'false'}"]

    def cluster_plan(self) -> list[str]:
        s: CanonicalK8sSettings = self.settings
        lines = [
            f"{self.shell('snap', 'list', 'k8s')}   (installed already: reused only if it tracks "
            f"{s.channel}, and left installed by down)",
            f"{self.shell('snap', 'install', 'k8s', '--classic', f'--channel={s.channel}')}"
            "   (only if absent; recorded in the run state first)",
            f"{self.shell('k8s', 'status')}   → {self.shell('k8s', 'bootstrap')} only when it "
            f"reports the node is {NOT_BOOTSTRAPPED}",
            self.shell("k8s", "status", "--wait-ready", "--timeout", f"{s.ready_timeout}s"),
        ]
        if self.lb_args():
            lines.append(self.shell(*self.lb_args()))
        if s.features:
            lines.append(self.shell("k8s", "enable", *s.features))
        lines += [
            self.shell("k8s", "kubectl", "wait", "--for=condition=Ready", "node", "--all",
                       f"--timeout={s.ready_timeout}s"),
            f"{self.shell('k8s', 'config')} > {self.kubeconfig}   (mode 600; its credentials "
            "registered as secrets)",
        ]
        return lines

    def cluster_down_plan(self) -> list[str]:
        return [f"down: {self.shell('snap', 'remove', 'k8s', '--purge')}   (only if up installed "
                "it; otherwise `k8s disable` of the features up enabled)"]

    def create_cluster(self) -> Substrate:
        s: CanonicalK8sSettings = self.settings
        self.ensure_snap(s.channel)
        status = self._run("k8s", "status", check=False, timeout=120)
        if status.returncode != 0:
            if NOT_BOOTSTRAPPED not in status.stdout + status.stderr:
                raise_status(status)
            self._run("k8s", "bootstrap", timeout=s.ready_timeout,
                      what="k8s bootstrap", hint="see `sudo k8s status` and "
                      "`journalctl -u snap.k8s.k8sd`; containerd from Docker conflicts with it")
        self._run("k8s", "status", "--wait-ready", "--timeout", f"{s.ready_timeout}s",
                  timeout=s.ready_timeout + 60, what="waiting for Canonical Kubernetes")
        if self.lb_args():
            self._run(*self.lb_args(), what="configuring the load balancer")
        if s.features:
            proc = self._run("k8s", "enable", *s.features, timeout=COMMAND_TIMEOUT,
                             what=f"k8s enable {' '.join(s.features)}")
            if not self._installed_snap:
                for feature in s.features:
                    if f"{feature} is already enabled" not in proc.stdout:
                        self._enabled.append(feature)
                        self._record(f"{self.kind}-feature", name=feature)
                self._write_marker()
        return self.ready_substrate("k8s", ["k8s", "config"], "the node")

    def disable(self, feature: str) -> None:
        self._run("k8s", "disable", feature, what=f"k8s disable {feature}")

    def status_commands(self) -> list[tuple[str, list[str]]]:
        return [("k8s-status.txt", ["k8s", "status"]),
                ("nodes.txt", ["k8s", "kubectl", "get", "nodes", "-o", "wide"])]


def _bootstrapped(settings: CanonicalK8sSettings) -> bool:
    """Is this machine already a Canonical Kubernetes node (its own containerd is fine)?"""
    from harness.system.errors import MatrixError

    argv = (["sudo"] if settings.sudo and os.geteuid() != 0 else []) + ["k8s", "status"]
    try:
        return run(argv, timeout=60, check=False).returncode == 0
    except MatrixError:   # no k8s snap: not a node
        return False


def raise_status(proc: object) -> None:
    text = (getattr(proc, "stderr", "") or getattr(proc, "stdout", "")).strip()
    raise InfrastructureError(f"`k8s status` failed: {redact(text)[-400:]}",
                              hint="check `sudo k8s status` on this machine")
