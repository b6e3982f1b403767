"""`KubernetesProvisioner`: everything a Kubernetes platform does except its cluster verbs.

The base implements the `Provisioner` protocol around a small set of provider hooks:

    preflight(settings, options)  classmethod: credentials/CLI checks before anything exists
    create_cluster()            create or find the cluster → Substrate with its kubeconfig
    delete_cluster()            remove what create_cluster created (idempotent)
    cluster_goes_away()         does delete_cluster remove the cluster itself?
    cluster_plan()              the create steps, for `mlflow-matrix plan`
    cluster_down_plan()         the delete steps, for `mlflow-matrix plan`
    collect_commands()          (file name, argv) pairs that describe the cluster
    release_cluster_resource()  janitor: release one recorded resource of this kind
    juju_kubeconfig(substrate)  optional: a kubeconfig Juju can use, when it differs

and owns the order: Juju's controller and cloud are released *before* the cluster is deleted
(their load balancers and volumes live in it), the deployment of every cell is Juju's bundle.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from deployments.juju.settings import JujuSettings
from harness.config.model import CiNeeds, PlatformTraits
from harness.system.errors import InfrastructureError, MatrixError
from harness.system.procs import run
from harness.system.redact import redact
from provisioners.api import DeploymentPlan, RunContext, Substrate

if TYPE_CHECKING:
    from deployments.juju.deployment import JujuDeployment
    from harness.config.model import Cell

COLLECT_TIMEOUT = 60
JUJU_SNAP = "juju:3.6/stable"   # what a nightly runner installs to drive Juju


class KubernetesProvisioner(ABC):
    """A Kubernetes cluster from a provider, with Juju deploying the bundle onto it."""

    kind: ClassVar[str]
    Settings: ClassVar[type[JujuSettings]] = JujuSettings
    cli_options: ClassVar[tuple[str, ...]] = ("controller",)
    takes_mlflow_version: ClassVar[bool] = False  # Juju deploys charm channels, not releases
    cluster_timeouts: ClassVar[tuple[int, int]] = (900, 600)  # create, delete s (CI budgets)
    ci_cloud: ClassVar[str | None] = None     # whose short-lived credentials a nightly job needs

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.settings: Any = context.platform.settings

    @classmethod
    def traits(cls, settings: Any) -> PlatformTraits:
        """The bundle's mysql-k8s is MySQL; the cluster's create/delete time is the kind's."""
        return PlatformTraits(database="mysql", cluster_timeouts=cls.cluster_timeouts,
                              ci=cls.ci_needs(settings))

    @classmethod
    def ci_needs(cls, settings: Any) -> CiNeeds:
        region = next((str(getattr(settings, key)) for key in ("region", "location", "zone")
                       if getattr(settings, key, "")), "")
        return CiNeeds(cloud=cls.ci_cloud, region=region, snaps=(JUJU_SNAP,))

    # ------------------------------------------------------------ provider hooks

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Called by `run` and `up` before anything is created: fail fast on missing or
        expired credentials (cloud.CredentialsError, exit 2) or a missing CLI. Default: none."""
        return

    @abstractmethod
    def create_cluster(self) -> Substrate:
        """Create (or find) the cluster and return it with a kubeconfig.

        Record every resource in `self.context.state` *before* creating it, so `down` and the
        janitor can release it after a partial create. Set `cluster_goes_away=True` when
        `delete_cluster` will remove the cluster."""

    @abstractmethod
    def delete_cluster(self) -> None:
        """Remove what `create_cluster` created; idempotent, also after a partial create.
        Called by `down` after Juju's controller and cloud are released."""

    @abstractmethod
    def cluster_goes_away(self) -> bool:
        """Whether `delete_cluster` removes the cluster (then an unreachable Juju controller is
        only unregistered instead of failing `down`)."""

    @abstractmethod
    def cluster_plan(self) -> list[str]:
        """The create steps, one line each, exact commands or API calls; no side effects."""

    def cluster_down_plan(self) -> list[str]:
        """The delete steps (after Juju's release), one line each; no side effects."""
        return []

    @abstractmethod
    def collect_commands(self) -> list[tuple[str, list[str]]]:
        """(file name, argv) of read-only commands describing the cluster, for diagnostics."""

    @classmethod
    def release_cluster_resource(cls, resource: Mapping[str, Any]) -> bool:
        """Janitor: release one non-Juju resource a crashed run recorded under this kind.
        Return False when the resource is not one of this provider's."""
        return False

    def juju_kubeconfig(self, substrate: Substrate) -> Path | None:
        """A kubeconfig Juju (and the endpoint lookup) should use instead of the substrate's,
        e.g. one with a static token because the juju snap cannot run exec plugins."""
        return None

    # ------------------------------------------------------------ Provisioner protocol

    @classmethod
    def check_options(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Kubernetes platforms take --kubeconfig/--controller; nothing to reject up front."""
        return

    @classmethod
    def release_recorded(cls, resource: Mapping[str, Any]) -> None:
        from deployments.juju.controller import release_recorded_juju

        if release_recorded_juju(resource) or cls.release_cluster_resource(resource):
            return
        raise InfrastructureError(f"no way to release a {resource['type']!r} resource",
                                  hint="release it by hand; its details are in the state file")

    def plan(self) -> list[str]:
        from deployments.juju.plan import platform_down_plan

        collect = "; ".join(" ".join(argv) for _, argv in self.collect_commands())
        return [*self.cluster_plan(), *platform_down_plan(self.context),
                *self.cluster_down_plan(), f"collect: {collect}"]

    def deployment_plan(self, cell: Cell) -> DeploymentPlan:
        from deployments.juju.plan import cell_sections

        sections = cell_sections(self.context, cell)
        return DeploymentPlan(**{name: tuple(lines) for name, lines in sections.items()})

    def up(self) -> Substrate:
        return self.create_cluster()

    def down(self) -> None:
        """Juju's controller and cloud first, then the cluster; every step runs even if one
        before it failed, and the failures are reported together."""
        from deployments.juju.controller import release_platform

        problems: list[MatrixError] = []
        try:
            release_platform(self.context, timeout=self.teardown_timeout(),
                             cluster_goes_away=self.cluster_goes_away())
        except MatrixError as exc:
            problems.append(exc)
        try:
            self.delete_cluster()
        except MatrixError as exc:
            problems.append(exc)
        if problems:
            raise InfrastructureError("; ".join(p.message for p in problems),
                                      hint=next((p.hint for p in problems if p.hint), None))

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, argv in self.collect_commands():
            try:
                proc = run(argv, timeout=COLLECT_TIMEOUT, check=False)
                text = f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}"
                if proc.returncode != 0:
                    text += f"\n(exit {proc.returncode})\n"
            except MatrixError as exc:
                text = f"$ {' '.join(argv)}\n({exc.message})\n"
            (dest / name).write_text(redact(text), encoding="utf-8")

    def deployment(self, substrate: Substrate, cell_dir: Path) -> JujuDeployment:
        from deployments.juju.deployment import JujuDeployment

        kubeconfig = self.juju_kubeconfig(substrate)
        if kubeconfig is not None:
            substrate = dataclasses.replace(substrate, kubeconfig=kubeconfig)
        return JujuDeployment(self.context, substrate, cell_dir)

    # ------------------------------------------------------------ helpers for providers

    def record(self, type_: str, **data: Any) -> str:
        """Note a resource in the run state *before* creating it; `kind` is this provisioner's,
        so `janitor` and `down --run-id` hand it back to `release_recorded`. Returns its id."""
        return self.context.state.add(type_, kind=self.kind, **data)

    def forget(self, rid: str) -> None:
        """The recorded resource `rid` is gone (deleted by `delete_cluster`)."""
        self.context.state.release(rid)

    def teardown_timeout(self) -> float:
        return float(self.context.options.get("teardown_timeout") or 600)
