"""The provisioner plugin interface: what the core calls, and the values it passes around.

A provisioner stands a platform up and tears it down (kubetest2-style: a small required core,
every member the core calls declared here). What MLflow runs on top is a *deployment*, which the
provisioner hands out: Juju's bundle on Kubernetes platforms (`provisioners.kubernetes`), its
own processes for `local`, a server someone else runs for `external`. Optional capabilities are
separate protocols, detected with `isinstance`.

Kinds are registered under the entry-point group `mlflow_matrix.provisioners` (harness.config.registry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from harness.config.model import PlatformTraits
from harness.system.errors import InfrastructureError

if TYPE_CHECKING:
    from harness.config.guides import Guide, GuideStep, Remedy
    from harness.config.model import Cell, Channel, Platform
    from harness.system.cache import MlflowEnv
    from harness.system.endpoint import Endpoint
    from harness.system.state import RunState


@dataclass(frozen=True)
class Substrate:
    """What `up` produced. Kubernetes provisioners fill `kubeconfig`; local ones leave it empty."""

    name: str
    kubeconfig: Path | None = None
    kube_context: str | None = None
    juju_controller: str | None = None
    # `down` deletes the cluster: a Juju controller that cannot be killed is then only forgotten
    cluster_goes_away: bool = False
    details: Mapping[str, str] = dataclasses.field(default_factory=dict)  # for humans only


@dataclass(frozen=True)
class RunContext:
    """Everything a provisioner may need from the run, without depending on the runner."""

    run_id: str
    platform: Platform
    work_dir: Path
    state: RunState
    env_for: Callable[[Channel], MlflowEnv]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentPlan:
    """What a deployment does, step by step: deploy, upgrade (upgrade cells), restart (when the
    runner restarts the server), close (diagnostics and teardown). Empty: nothing to say."""

    deploy: tuple[str, ...] = ()
    upgrade: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    close: tuple[str, ...] = ()


@runtime_checkable
class Deployment(Protocol):
    """One MLflow deployment for one cell."""

    server_log: Path | None
    """The MLflow server's log file when the harness runs the server itself, else None."""

    def deploy(self, channel: Channel) -> Endpoint:
        """Bring MLflow of `channel` up and return its endpoint once it answers."""

    def collect(self, dest: Path) -> None:
        """Write logs and state of the deployment under `dest` (redacted). May run several times."""

    def teardown(self) -> None:
        """Remove the deployment. Idempotent; safe after a failed or partial deploy."""


@runtime_checkable
class Provisioner(Protocol):
    """A platform kind. Constructed once per platform per run with that run's `RunContext`."""

    kind: ClassVar[str]
    Settings: ClassVar[type]

    def __init__(self, context: RunContext) -> None:
        """One instance per platform per run."""
    """Frozen dataclass of the platform's settings in matrix.yaml (validated field by field)."""
    cli_options: ClassVar[tuple[str, ...]]
    """The command-line options this kind reads (`tracking_uri`, `kubeconfig`, `controller` …).
    An option no selected platform reads is refused before a run (it would be ignored)."""
    takes_mlflow_version: ClassVar[bool]
    """True when a bare MLflow version (`--mlflow-version 3.1.0`, `--upgrade 2.22.0:3.1.0`)
    means something here; False for kinds that deploy Charmed MLflow channels."""

    @classmethod
    def traits(cls, settings: Any) -> PlatformTraits:
        """What the core needs to know of a platform with these settings (its SQL store, whether
        it runs on Kubernetes, what a nightly job needs …). Called once when matrix.yaml loads."""

    @classmethod
    def check_options(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Reject bad CLI options for this kind (ConfigError) before a run starts. Called by
        `run`/`plan` for every selected platform of the kind."""

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Fail fast before anything is created: missing or expired credentials (a
        CredentialsError, exit 2), a missing CLI. Called by `run` (not `--dry-run`) and `up`
        for every selected platform of the kind, before the first cell; never by `plan`."""

    @classmethod
    def release_recorded(cls, resource: Mapping[str, Any]) -> None:
        """Release one resource a crashed run recorded in its state file under this kind.
        Called by `janitor` and `down --run-id`; raises when it cannot release it."""

    def plan(self) -> list[str]:
        """Human-readable steps `up` and `down` would take. Called by `mlflow-matrix plan`;
        no side effects."""

    def deployment_plan(self, cell: Cell) -> DeploymentPlan:
        """Steps of one cell's deployment, by step, for `plan` to print each where the runner
        takes it (harness.run.cell_steps); no side effects."""

    def up(self) -> Substrate:
        """Create the platform. Called once per platform per run, before any cell."""

    def down(self) -> None:
        """Release everything `up` created. Idempotent; called after a failed or partial `up`."""

    def collect(self, dest: Path) -> None:
        """Write platform diagnostics under `dest`. May be called several times."""

    def deployment(self, substrate: Substrate, cell_dir: Path) -> Deployment:
        """The deployment of one cell on `substrate` (not deployed yet)."""


class ProvisionerBase:
    """Defaults for the members of `Provisioner` that most kinds do not need, so a kind writes
    only what it does. Subclass it, or implement the protocol in full."""

    cli_options: ClassVar[tuple[str, ...]] = ()
    takes_mlflow_version: ClassVar[bool] = False

    @classmethod
    def traits(cls, settings: Any) -> PlatformTraits:
        return PlatformTraits()

    @classmethod
    def check_options(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """No options to check."""

    @classmethod
    def preflight(cls, settings: Any, options: Mapping[str, Any]) -> None:
        """Nothing to check before the run: the deployment checks what it needs."""

    @classmethod
    def release_recorded(cls, resource: Mapping[str, Any]) -> None:
        """Processes and temp dirs are released by the janitor itself; a kind that records
        other resources overrides this."""
        raise InfrastructureError(f"no way to release a {resource.get('type')!r} resource",
                                  hint="release it by hand; its details are in the state file")

    def down(self) -> None:
        """Nothing was created at platform level."""

    def collect(self, dest: Path) -> None:
        """No platform diagnostics."""

    def deployment_plan(self, cell: Cell) -> DeploymentPlan:
        return DeploymentPlan()


@runtime_checkable
class Upgradable(Protocol):
    """Capability of a deployment: move to another channel exactly as the charm would."""

    def upgrade(self, channel: Channel) -> Endpoint: ...


@runtime_checkable
class GuideRunner(Protocol):
    """Capability of a deployment: execute Charmed MLflow's documented procedures step by step
    (matrix.yaml `upgrade_guides:`): on Juju the guide's commands, elsewhere each step's
    process-level equivalent, which `guide_step_plan` states."""

    def guide_step_plan(self, guide: Guide, step: GuideStep, cell: Cell) -> list[str]:
        """What `run_guide_step` runs for the step, for `mlflow-matrix plan`; no side effects."""

    def run_guide_step(self, guide: Guide, step: GuideStep, target: Channel) -> Endpoint | None:
        """Run one step; the endpoint when the server answers after it, None when the step
        leaves it stopped by design (the charm blocked without its database)."""

    def run_remedy(self, remedy: Remedy, target: Channel) -> Endpoint:
        """Apply a documented remedy after a step hit its known defect; the server answers."""

    def destroy(self) -> None:
        """Remove the deployment but keep what the backup guide saved (restore paths)."""

    def refuse_rollback(self, source: Channel) -> str:
        """Move the server back to `source` after a one-way upgrade and return how that was
        refused; raise when the old server serves the migrated store."""


@runtime_checkable
class Restartable(Protocol):
    """Capability of a deployment: restart the MLflow server on the same stores."""

    def restart(self) -> Endpoint: ...


@dataclass(frozen=True)
class SweptResource:
    """One run-tagged cloud resource a sweep found (and deleted, unless dry-run)."""

    kind: str               # e.g. "eks-cluster", "resource-group"
    name: str
    run_id: str
    expires: str = ""       # the mlflow-matrix-expires tag as found
    deleted: bool = False
    error: str = ""


@runtime_checkable
class Sweepable(Protocol):
    """Capability of a provisioner *class*: find and delete run-tagged resources by age.

    Called by `mlflow-matrix janitor --cloud KIND` (the nightly safety net after a `kill -9`).
    Only resources carrying the `mlflow-matrix-run` tag are ever considered; a resource is swept
    when its `mlflow-matrix-expires` time has passed, or (with `older_than`) when it was created
    longer ago than that. Deletion uses the same code as `down`; `dry_run` only lists.
    """

    @classmethod
    def sweep(cls, settings: Any, *, older_than: timedelta | None, dry_run: bool,
              progress: Callable[[str], None]) -> list[SweptResource]: ...
