"""The provisioner plugin interface and its registry.

A provisioner stands a platform up and tears it down (kubetest2-style: a small required core).
What MLflow runs on top is a *deployment*: Juju deploys the bundle onto Kubernetes substrates,
while `local` and `external` provide their own deployment. Optional capabilities are separate
protocols, detected with `isinstance` at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.endpoint import Endpoint
    from harness.envs import MlflowEnv
    from harness.matrix import Channel, Platform
    from harness.state import RunState

ENTRY_POINT_GROUP = "mlflow_matrix.provisioners"

BUILTIN_PROVISIONERS = {
    "local": "provisioners.local:LocalProvisioner",
    "external": "provisioners.external:ExternalProvisioner",
    "microk8s": "provisioners.microk8s:MicroK8sProvisioner",
    "canonical-k8s": "provisioners.canonical_k8s:CanonicalK8sProvisioner",
    "existing": "provisioners.existing:ExistingClusterProvisioner",
    "eks": "provisioners.eks:EksProvisioner",
    "aks": "provisioners.aks:AksProvisioner",
    "gke": "provisioners.gke:GkeProvisioner",
}


@dataclass(frozen=True)
class Substrate:
    """What `up` produced. Kubernetes provisioners fill `kubeconfig`; local ones leave it empty."""

    name: str
    kubeconfig: Path | None = None
    kube_context: str | None = None
    juju_controller: str | None = None
    details: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Everything a provisioner may need from the run, without depending on the runner."""

    run_id: str
    platform: Platform
    work_dir: Path
    state: RunState
    env_for: Callable[[Channel], MlflowEnv]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Provisioner(Protocol):
    kind: ClassVar[str]

    def plan(self) -> list[str]:
        """Human-readable steps `up` would take. Called by `mlflow-matrix plan`; no side effects."""

    def up(self) -> Substrate:
        """Create the platform. Called once per platform per run, before any cell."""

    def down(self) -> None:
        """Release everything `up` created. Idempotent; called after a failed or partial `up` too."""

    def collect(self, dest: Path) -> None:
        """Write platform diagnostics under `dest`. May be called several times."""


@runtime_checkable
class Deployment(Protocol):
    """One MLflow deployment for one cell."""

    def deploy(self, channel: Channel) -> Endpoint:
        """Bring MLflow of `channel` up and return its endpoint once it answers."""

    def collect(self, dest: Path) -> None:
        """Write logs and state of the deployment under `dest` (redacted). May run several times."""

    def teardown(self) -> None:
        """Remove the deployment. Idempotent; safe after a failed or partial deploy."""


@runtime_checkable
class DeploysItself(Protocol):
    """Capability: the provisioner runs MLflow itself instead of Juju (local, external)."""

    def deployment(self, cell_dir: Path) -> Deployment: ...


@runtime_checkable
class Upgradable(Protocol):
    """Capability of a deployment: move to another channel exactly as the charm would."""

    def upgrade(self, channel: Channel) -> Endpoint: ...


@runtime_checkable
class Restartable(Protocol):
    """Capability of a deployment: restart the MLflow server on the same stores."""

    def restart(self) -> Endpoint: ...


def provisioner_classes() -> dict[str, type]:
    """Built-in provisioners plus any registered by third parties under the entry-point group."""
    found: dict[str, Any] = dict(BUILTIN_PROVISIONERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep
    return {kind: _LazyClass(kind, target) for kind, target in found.items()}  # type: ignore[misc]


class _LazyClass:
    """Defers importing a provisioner module until its kind is used."""

    def __init__(self, kind: str, target: Any) -> None:
        self.kind = kind
        self._target = target

    def load(self) -> type:
        if isinstance(self._target, str):
            import importlib

            module_name, _, attr = self._target.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                raise ConfigError(
                    f"provisioner kind {self.kind!r} is not available ({exc})",
                    hint="install the package that provides it, or pick another kind",
                ) from exc
            return getattr(module, attr)
        return self._target.load()


def load_provisioner_class(kind: str) -> type:
    classes = provisioner_classes()
    if kind not in classes:
        raise ConfigError(
            f"unknown provisioner kind {kind!r}",
            hint=f"use one of: {', '.join(sorted(classes))}",
        )
    return classes[kind].load()  # type: ignore[attr-defined]


def known_kinds() -> list[str]:
    return sorted(provisioner_classes())
