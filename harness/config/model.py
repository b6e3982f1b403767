"""The matrix as frozen values: channels, platforms, cells, and what each platform's kind
declares about it. No loading here (harness.config.matrix), so the provisioner interface can
speak of cells and channels without reaching the registry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from harness.config.defects import Facts, KnownDefect, applies

if TYPE_CHECKING:
    from harness.config.guides import Guide


SUITE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PLATFORM_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
UPGRADE_SCENARIO = "upgrade"
DETECT = "detect"  # an `external` cell's version: read from the server's /version


@dataclass(frozen=True)
class CiNeeds:
    """What a nightly job needs to run a platform unattended (`mlflow-matrix list --json`)."""

    unattended: str = ""            # non-empty: why no nightly job can run it (run it by hand)
    cloud: str | None = None        # whose short-lived credentials the job gets: aws, azure, gcp
    region: str = ""
    snaps: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlatformTraits:
    """What the core needs to know of a platform, declared by its kind from its settings
    (`Provisioner.traits`), so that no module of the core names a kind."""

    database: str = "mysql"             # SQL store family; "" when someone else's server hides it
    artifacts: str = ""                 # direct | proxied when the platform fixes it, else ""
    on_kubernetes: bool = True          # the Charmed MLflow bundle on a cluster through Juju
    self_deploying: bool = False        # MLflow as the harness's own processes: deploy = a start
    fixed_server: bool = False          # tests the one MLflow a server runs: no channels
    needs_option: str = ""              # a CLI option this platform cannot run without
    takes_mlflow_version: bool = False  # `--mlflow-version V` means something here
    cli_options: tuple[str, ...] = ()   # the command-line options this platform reads
    cluster_timeouts: tuple[int, int] = (0, 0)  # create, delete seconds (CI budgets)
    ci: CiNeeds = field(default_factory=CiNeeds)


@dataclass(frozen=True)
class Channel:
    """A Charmed MLflow channel and the upstream MLflow it ships."""

    name: str
    mlflow_version: str
    migrates_db_on_upgrade: bool = False
    # where `migrates_db_on_upgrade` was read (a charm revision's source, a guide): a verdict
    # that rests on it names it
    migration_source: str = ""
    experimental: bool = False
    bundle: str | None = None
    constraints: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return self.name.replace("/", "-")


@dataclass(frozen=True)
class Platform:
    name: str
    kind: str
    settings: Any
    description: str = ""

    traits: PlatformTraits = field(default_factory=lambda: PlatformTraits())

    @property
    def database(self) -> str:
        """The SQL store family (sqlite, mysql), "" when unknown: what defects and reports key on."""
        return self.traits.database


@dataclass(frozen=True)
class UpgradePath:
    source: str
    target: str

    @property
    def label(self) -> str:
        return f"{self.source}→{self.target}"


@dataclass(frozen=True)
class InstallPin:
    mlflow: str
    requirements: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    platforms: tuple[str, ...] | None  # None: every platform
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selection:
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    upgrades: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()
    restores: tuple[str, ...] = ()  # FROM:TO backup → destroy → restore paths (`--guides`)
    parallel: int = 1  # cells at once; 0: from cores and memory (harness/run/scheduling.py)
    workers: int = 0   # pytest-xdist workers per cell; 0: from cores and parallel, 1: serial


@dataclass(frozen=True)
class Timeouts:
    env_build: int = 900
    deploy: int = 1800
    scenarios: int = 1800
    teardown: int = 600
    server_start: int = 180


@dataclass(frozen=True)
class Cell:
    """One (platform, channel) pair, or one (platform, upgrade path)."""

    platform: Platform
    channel: Channel
    scenarios: tuple[str, ...]
    upgrade_to: Channel | None = None
    # "upgrade": the channel's upgrade to `upgrade_to`; "restore": the backup guide on
    # `channel`, the deployment destroyed, the restore guide on a fresh `upgrade_to`
    procedure: str = "upgrade"

    @property
    def id(self) -> str:
        if self.upgrade_to:
            return f"{self.procedure}-{self.channel.slug}-to-{self.upgrade_to.slug}"
        return self.channel.slug

    @property
    def path(self) -> str:
        """FROM:TO of an upgrade or restore cell, "" otherwise."""
        return f"{self.channel.name}:{self.upgrade_to.name}" if self.upgrade_to else ""

    @property
    def channel_label(self) -> str:
        if self.upgrade_to:
            return f"{self.channel.name}→{self.upgrade_to.name}"
        return self.channel.name

    @property
    def mlflow_label(self) -> str:
        if self.upgrade_to:
            return f"{self.channel.mlflow_version}→{self.upgrade_to.mlflow_version}"
        return self.channel.mlflow_version

    @property
    def title(self) -> str:
        return f"{self.platform.name} · {self.channel_label}"


@dataclass(frozen=True)
class Matrix:
    path: Path
    channels: Mapping[str, Channel]
    platforms: Mapping[str, Platform]
    suites: Mapping[str, Suite]
    upgrades: tuple[UpgradePath, ...]
    install_pins: tuple[InstallPin, ...]
    known_defects: tuple[KnownDefect, ...]
    defaults: Selection
    timeouts: Timeouts = field(default_factory=Timeouts)
    guides: tuple[Guide, ...] = ()

    def guides_for(self, cell: Cell) -> tuple[Guide, ...]:
        """The documented procedure a cell follows, in order: an upgrade path's guide, or the
        backup then the restore guide; () when no published guide covers the path."""
        if not cell.upgrade_to:
            return ()
        kinds = ("upgrade",) if cell.procedure == "upgrade" else ("backup", "restore")
        return tuple(g for kind in kinds for g in self.guides
                     if g.kind == kind and cell.path in g.paths)

    def restore_paths(self) -> tuple[str, ...]:
        """FROM:TO paths the restore guide is run on (`--guides`)."""
        return tuple(p for g in self.guides if g.kind == "restore" for p in g.paths)

    def requirements_for(self, channel: Channel) -> tuple[str, ...]:
        """Install pins for an MLflow version: the data-driven table plus the channel's own."""
        if channel.mlflow_version == DETECT:
            return channel.constraints
        version = Version(channel.mlflow_version)
        pins = [
            req
            for pin in self.install_pins
            if version in SpecifierSet(pin.mlflow)
            for req in pin.requirements
        ]
        return (*pins, *channel.constraints)

    def defects_for(self, cell: Cell, facts: Facts | None = None) -> list[KnownDefect]:
        """Defects that apply to a cell: for sure with `facts` measured in the run, or that may
        apply (unknown facts match) when only the matrix is known (list, plan)."""
        if facts is None:
            return [d for d in self.known_defects if applies(d, cell_facts(cell), strict=False)]
        return [d for d in self.known_defects if applies(d, facts)]


def platform_database(platform: Platform) -> str:
    """The SQL store family: a local platform's own setting; a Kubernetes bundle's `mysql-k8s`
    is MySQL; unknown ("") for a server someone else runs."""
    return platform.traits.database


def platform_artifacts(platform: Platform) -> str:
    """The artifact mode a platform declares (direct | proxied), "" when it declares none."""
    return platform.traits.artifacts


def cell_facts(cell: Cell, *, server_versions: tuple[str, ...] | None = None,
               client_version: str = "", artifacts: str | None = None) -> Facts:
    """What the matrix says of a cell, completed with what the run measured."""
    if server_versions is None:
        server_versions = tuple(v for v in (cell.channel.mlflow_version,
                                            cell.upgrade_to.mlflow_version if cell.upgrade_to
                                            else None) if v and v != DETECT)
    channels = (cell.channel.name,) + ((cell.upgrade_to.name,) if cell.upgrade_to else ())
    return Facts(platform=cell.platform.name, database=platform_database(cell.platform),
                 artifacts=platform_artifacts(cell.platform) if artifacts is None else artifacts,
                 server_versions=server_versions, client_version=client_version,
                 channels=channels,
                 upgrade=cell.channel_label.replace("→", ":") if cell.upgrade_to else "")
