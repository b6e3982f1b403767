"""`EksProvisioner`: the `KubernetesProvisioner` hooks on top of `EksCluster`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from provisioners.api import RunContext, Substrate, SweptResource
from provisioners.kubernetes.base import KubernetesProvisioner
from provisioners.kubernetes.eks.settings import EksSettings

if TYPE_CHECKING:
    from provisioners.kubernetes.eks.cluster import EksCluster


def _cluster_class() -> type[EksCluster]:
    """boto3 loads with the cluster, when a run uses EKS, never for `list` or another kind."""
    from provisioners.kubernetes.eks.cluster import EksCluster

    return EksCluster


class EksProvisioner(KubernetesProvisioner):
    """`eks`: the cluster of `EksCluster`; the base releases Juju first and deploys the bundle."""

    kind: ClassVar[str] = "eks"
    cluster_timeouts: ClassVar[tuple[int, int]] = (2400, 2700)
    ci_cloud: ClassVar[str | None] = "aws"
    Settings = EksSettings

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.cluster = _cluster_class()(self.settings, context.run_id, state=context.state,
                                  work_dir=context.work_dir,
                                  log=lambda text: print(text, file=sys.stderr, flush=True))

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Credentials and region via STS GetCallerIdentity (seconds), before anything exists."""
        _cluster_class()(settings, "preflight", log=lambda _: None).check_credentials()

    def create_cluster(self) -> Substrate:
        self.cluster.check_credentials()
        kubeconfig = self.cluster.create()
        return Substrate(name=self.context.platform.name, kubeconfig=kubeconfig,
                         cluster_goes_away=True,
                         details={"cluster": self.cluster.names.cluster,
                                  "region": self.cluster.region})

    def delete_cluster(self) -> None:
        if self.cluster.recorded or self._recorded_in_state():
            self.cluster.delete()

    def _recorded_in_state(self) -> bool:
        """`down` in a new process (`mlflow-matrix down`): the run state names the cluster."""
        return any(r.type == "eks-cluster" and r.data.get("run_id") == self.context.run_id
                   for r in self.context.state.resources())

    def cluster_goes_away(self) -> bool:
        return True

    def cluster_plan(self) -> list[str]:
        return self.cluster.plan_lines()

    def cluster_down_plan(self) -> list[str]:
        return self.cluster.down_plan_lines()

    def plan(self) -> list[str]:
        return [*super().plan(), *self.cluster.collect_lines()]

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        from harness.system.kubectl import kubectl_argv

        base = kubectl_argv(self.cluster.kubeconfig_path, None, None, [])
        return [("nodes.txt", [*base, "get", "nodes", "-o", "wide"]),
                ("storageclasses.txt", [*base, "get", "storageclass"]),
                ("kube-system-pods.txt", [*base, "get", "pods", "-n", "kube-system", "-o",
                                          "wide"])]

    def collect(self, dest: Path) -> None:
        if not self.cluster.recorded:
            return
        if self.cluster.kubeconfig_path.exists():
            super().collect(dest)
        self.cluster.collect(dest)

    @classmethod
    def sweep(cls, settings: Any, *, older_than: timedelta | None, dry_run: bool,
              progress: Callable[[str], None]) -> list[SweptResource]:
        """`janitor --cloud eks`: see `EksCluster.sweep`."""
        return _cluster_class().sweep(settings, older_than=older_than, dry_run=dry_run,
                                progress=progress)

    @classmethod
    def release_cluster_resource(cls, resource: Mapping[str, Any]) -> bool:
        if resource.get("type") != "eks-cluster":
            return False
        _cluster_class().release_recorded(resource)
        return True
