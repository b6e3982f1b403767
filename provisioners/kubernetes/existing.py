"""`existing`: a Kubernetes cluster you already have; nothing is provisioned.

The kubeconfig is `--kubeconfig PATH` (context.options["kubeconfig"]), else the platform's
`kubeconfig:` setting, else $KUBECONFIG / ~/.kube/config; the context is the `context:` setting,
else the kubeconfig's current context. `up` only checks that the API answers; `down` releases
only what the run added to Juju (the cell models, and the controller and cloud if it created
them) — the cluster itself is never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from deployments.juju.settings import JujuSettings
from harness.config.model import CiNeeds
from harness.system.errors import ConfigError, InfrastructureError
from harness.system.kubectl import kubectl_argv
from harness.system.redact import redact
from provisioners.api import Substrate
from provisioners.kubernetes.base import KubernetesProvisioner


@dataclass(frozen=True)
class ExistingSettings(JujuSettings):
    kubeconfig: str = ""    # default: --kubeconfig, then $KUBECONFIG, then ~/.kube/config
    context: str = ""       # default: the kubeconfig's current context
    # A cluster of unknown shape: the API server is the one address surely reachable.
    access: Literal["nodeport", "loadbalancer", "port-forward"] = "port-forward"


class ExistingClusterProvisioner(KubernetesProvisioner):
    """Uses the cluster a kubeconfig points at; creates and removes nothing in it but models."""

    kind: ClassVar[str] = "existing"
    Settings = ExistingSettings
    cli_options: ClassVar[tuple[str, ...]] = ("controller", "kubeconfig")
    cluster_timeouts: ClassVar[tuple[int, int]] = (0, 0)   # the cluster is not ours

    @classmethod
    def ci_needs(cls, settings: Any) -> CiNeeds:
        return CiNeeds(unattended="" if settings.kubeconfig else
                       "tests a cluster someone already runs: needs its kubeconfig; run it by hand")

    def kubeconfig_path(self) -> Path:
        given = self.context.options.get("kubeconfig") or self.settings.kubeconfig
        if given:
            return Path(str(given)).expanduser()
        env = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        return Path(env) if env else Path.home() / ".kube" / "config"

    def cluster_plan(self) -> list[str]:
        ctx = self.settings.context or "its current context"
        return [f"use the cluster of {self.kubeconfig_path()} ({ctx}); nothing is installed",
                "check the API answers: GET /api/v1/nodes (lightkube)"]

    def cluster_down_plan(self) -> list[str]:
        return ["down: the cluster is left as it was"]

    def create_cluster(self) -> Substrate:
        path = self.kubeconfig_path()
        if not path.is_file():
            raise ConfigError(f"no kubeconfig at {path}",
                              hint="pass --kubeconfig PATH or set `kubeconfig:` for the platform")
        context = self.settings.context or None
        from harness.system.kube import load_config

        config = load_config(path, context)
        try:
            from lightkube import Client
            from lightkube.resources.core_v1 import Node

            with Client(config) as client:
                nodes = list(client.list(Node))
        except Exception as exc:  # lightkube/httpx raise many types for an unreachable API
            raise InfrastructureError(
                f"the cluster of {path} does not answer: {redact(str(exc))[:300]}",
                hint="check the kubeconfig's server, credentials and context") from None
        return Substrate(name=self.context.platform.name, kubeconfig=path, kube_context=context,
                         cluster_goes_away=False, details={"nodes": str(len(nodes))})

    def delete_cluster(self) -> None:
        """The cluster is not ours: nothing to delete."""

    def cluster_goes_away(self) -> bool:
        return False

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        base = kubectl_argv(self.kubeconfig_path(), self.settings.context or None, None, [])
        return [("version.txt", [*base, "version"]),
                ("nodes.txt", [*base, "get", "nodes", "-o", "wide"])]
