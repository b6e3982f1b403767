"""From command-line flags to the cells of a run, refusing every selection that would surprise.

Everything here runs before anything starts, so bad input is exit 2 with one screen that says
what to do: a flag given twice, a downgrade or an `X:X` upgrade, a bare MLflow version on a
platform that deploys charm channels, a version PyPI does not have, an option no selected
platform reads, a platform the matrix file does not have. `run`, `--dry-run` and `plan` all go
through `select()`, so what `plan` shows is what `run` gets.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from harness.commands.options import provisioner_options
from harness.config.matrix import (
    DETECT,
    Cell,
    Channel,
    Matrix,
    Selection,
    adhoc_channel,
    expand_cells,
    load_matrix,
)
from harness.system.errors import CellSkipped, ConfigError


@dataclass(frozen=True)
class Selected:
    matrix: Matrix
    cells: list[Cell]
    notes: tuple[str, ...] = field(default=())


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def takes_bare_versions(matrix: Matrix, platform: str) -> bool:
    """Whether `--mlflow-version V` means something on a platform (its kind declares it)."""
    return matrix.platforms[platform].traits.takes_mlflow_version


def option_applies(matrix: Matrix, option: str, platform: str) -> bool:
    """Which platforms read which command-line option: each kind declares the ones it reads."""
    return option in matrix.platforms[platform].traits.cli_options


def unique(values: Iterable[str], option: str, notes: list[str]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    for value in values:
        seen[value] = seen.get(value, 0) + 1
    for value, count in seen.items():
        if count > 1:
            notes.append(f"{flag(option)} {value} given {count} times; selected once")
    return tuple(seen)


def select(args: argparse.Namespace,
           release_exists: Callable[[str], tuple[bool | None, str]] | None = None) -> Selected:
    notes: list[str] = []
    matrix = load_matrix(args.matrix)
    defaults = matrix.defaults
    requested = unique(args.platform, "platform", notes)
    platforms = _platforms(matrix, requested or defaults.platforms, args, notes)
    # a fixed server: one cell per platform, at the version the server reports
    external = tuple(n for n in platforms if matrix.platforms[n].traits.fixed_server)
    others = tuple(n for n in platforms if n not in external)
    if external and not others and (args.channel or args.upgrade):
        raise ConfigError(f"--platform {' '.join(external)} tests the MLflow the server runs: "
                          "--channel and --upgrade do not apply",
                          hint="drop them, or pass --mlflow-version V to require version V")
    channel_flags = unique(args.channel, "channel", notes)
    upgrade_flags = unique(args.upgrade, "upgrade", notes)
    explicit = bool(channel_flags or upgrade_flags)
    channels = channel_flags if explicit else defaults.channels
    upgrades = upgrade_flags if explicit else defaults.upgrades
    version_given: list[str] = []
    if args.mlflow_version:
        if channel_flags:
            raise ConfigError("--mlflow-version and --channel are alternatives",
                              hint="use one: a channel from the matrix file, or an MLflow version")
        from harness.config.releases import resolve_versions

        versions = resolve_versions(unique(args.mlflow_version, "mlflow_version", notes))
        if external and len(versions) > 1:
            raise ConfigError(f"--platform {' '.join(external)} tests the one MLflow its server "
                              "runs",
                              hint="give one --mlflow-version (or none) with that platform")
        for version in versions:
            channel = adhoc_channel(version)
            version_given.append(channel.mlflow_version)
            matrix = _with_channel(matrix, channel)
        channels = tuple(adhoc_channel(v).name for v in versions)
        upgrades = upgrades if upgrade_flags else ()
    matrix, upgrades, adhoc = _adhoc_upgrades(matrix, upgrades)
    version_given += adhoc
    _check_upgrade_directions(matrix, upgrades)
    if version_given:
        juju = [n for n in others if not takes_bare_versions(matrix, n)]
        if juju:
            what = (f"--mlflow-version {' '.join(args.mlflow_version)}" if args.mlflow_version
                    else "--upgrade with a bare version")
            raise ConfigError(
                f"{what}: {', '.join(juju)} {'deploys' if len(juju) == 1 else 'deploy'} "
                "Charmed MLflow channels, where a bare MLflow version names no charm",
                hint=f"use --channel / --upgrade with channels from the matrix file "
                     f"({', '.join(n for n in matrix.channels if not n.startswith('mlflow-'))}),"
                     " or a local platform for an upstream release")
        for version in dict.fromkeys(version_given):
            _check_release(version, release_exists, notes)
    scenarios = unique(args.scenario, "scenario", notes) or defaults.scenarios
    restores = matrix.restore_paths() if getattr(args, "guides", False) else ()
    selection = Selection(platforms=others, channels=channels, upgrades=upgrades,
                          scenarios=scenarios, restores=restores)
    cells = expand_cells(matrix, selection) if others else []
    if external:
        detect = matrix.channels[channels[0]] if args.mlflow_version else adhoc_channel(DETECT)
        matrix = _with_channel(matrix, detect)
        cells += expand_cells(matrix, Selection(platforms=external, channels=(detect.name,),
                                                scenarios=scenarios))
    _check_option_scope(matrix, platforms, args)
    _check_platform_options(matrix, {cell.platform.name for cell in cells}, args,
                            explicit=set(requested), notes=notes)
    if not cells:
        raise ConfigError("the selection has no cells",
                          hint="check --platform/--channel/--scenario against `mlflow-matrix list`")
    folders = [(c.platform.name, c.id) for c in cells]
    if len(set(folders)) != len(folders):  # two cells, one report folder: never
        raise ConfigError("two cells of this selection would share a report folder",
                          hint="remove the repeated --channel/--upgrade/--mlflow-version")
    return Selected(matrix, cells, tuple(notes))


def _platforms(matrix: Matrix, names: tuple[str, ...], args: argparse.Namespace,
               notes: list[str]) -> tuple[str, ...]:
    if "all" in names:
        chosen = []
        for name, platform in matrix.platforms.items():
            needs = platform.traits.needs_option
            if needs and not getattr(args, needs, None):
                notes.append(f"--platform all leaves out {name}: it needs {flag(needs)}")
                continue
            chosen.append(name)
        names = tuple(dict.fromkeys([*chosen, *(n for n in names if n != "all")]))
    from harness.config.kinds import unknown_platform_error

    expanded: list[str] = []
    for name in names:
        of_kind = [n for n, p in matrix.platforms.items() if p.kind == name]
        if name not in matrix.platforms and of_kind:  # `--platform eks`: every platform of kind eks
            notes.append(f"--platform {name}: the platforms of kind {name}: {', '.join(of_kind)}")
            expanded += of_kind
        elif name not in matrix.platforms:
            raise unknown_platform_error(name, matrix.platforms, matrix.path)
        else:
            expanded.append(name)
    return tuple(dict.fromkeys(expanded))


def _check_option_scope(matrix: Matrix, platforms: Iterable[str],
                        args: argparse.Namespace) -> None:
    """An option no selected platform reads is a mistake, not something to ignore silently."""
    platforms = list(platforms)
    for option, value in provisioner_options(args).items():
        if value is None or any(option_applies(matrix, option, p) for p in platforms):
            continue
        readers = [n for n in matrix.platforms if option_applies(matrix, option, n)]
        raise ConfigError(
            f"{flag(option)} applies to none of the selected platforms "
            f"({', '.join(platforms)})",
            hint=(f"add --platform {readers[0]} (platforms that read it: {', '.join(readers)})"
                  if readers else "no platform in the matrix file reads it; drop it")
            + f", or drop {flag(option)}")


def _check_platform_options(matrix: Matrix, names: set[str], args: argparse.Namespace, *,
                            explicit: set[str], notes: list[str]) -> None:
    """Bad platform options (e.g. external without --tracking-uri) fail before a run starts.

    A platform this machine cannot run (local-mysql without MariaDB) is bad input when the user
    named it (exit 2 with the install hint); in the default selection it is a visible warning
    and its cells are reported `skipped`.
    """
    from harness.config.registry import load_provisioner_class

    for name in sorted(names):
        platform = matrix.platforms[name]
        try:
            load_provisioner_class(platform.kind).check_options(platform.settings,
                                                                provisioner_options(args))
        except CellSkipped as exc:
            if name in explicit or "all" in explicit:
                raise ConfigError(f"--platform {name} cannot run here: {exc.message}",
                                  hint=exc.hint) from None
            notes.append(f"warning: platform {name} (default selection) cannot run here: "
                         f"{exc.message}; its cells are reported as skipped"
                         + (f" ({exc.hint})" if exc.hint else ""))


def _check_upgrade_directions(matrix: Matrix, upgrades: tuple[str, ...]) -> None:
    for label in upgrades:
        source, _, target = label.partition(":")
        if source not in matrix.channels or target not in matrix.channels:
            continue  # expand_cells names the unknown channel
        shown = label.replace("mlflow-", "")
        if source == target:
            raise ConfigError(f"--upgrade {shown} upgrades a channel to itself",
                              hint="name two different channels, e.g. "
                                   f"{_example(matrix)}")
        old, new = matrix.channels[source], matrix.channels[target]
        if DETECT in (old.mlflow_version, new.mlflow_version):
            continue
        if Version(new.mlflow_version) < Version(old.mlflow_version):
            raise ConfigError(
                f"--upgrade {shown} is a downgrade (MLflow {old.mlflow_version} → "
                f"{new.mlflow_version}); Charmed MLflow documents upgrades only",
                hint=f"swap the sides: --upgrade {target}:{source}".replace("mlflow-", ""))


def _check_release(version: str, lookup: Callable[[str], tuple[bool | None, str]] | None,
                   notes: list[str]) -> None:
    exists, detail = (lookup or _pypi_lookup)(version)
    if exists is False:
        raise ConfigError(f"MLflow {version} is not a release on PyPI ({detail})",
                          hint="pick a released version: `pip index versions mlflow` lists them")
    if exists is None:
        notes.append(f"could not check that MLflow {version} exists on PyPI ({detail}); "
                     "if it does not, the environment build will fail")


def _pypi_lookup(version: str) -> tuple[bool | None, str]:
    from harness.config.pypi import release_exists

    found = release_exists("mlflow", version)
    return found.exists, f"{found.url}: {found.reason}" if found.reason else found.url


def _with_channel(matrix: Matrix, channel: Channel) -> Matrix:
    return dataclasses.replace(matrix, channels={**matrix.channels, channel.name: channel})


def _adhoc_upgrades(matrix: Matrix, upgrades: tuple[str, ...]
                    ) -> tuple[Matrix, tuple[str, ...], list[str]]:
    """`--upgrade 2.20.0:3.1.0`: a side that is a version, not a channel, becomes a channel."""
    resolved, versions = [], []
    for label in upgrades:
        if ":" not in label:
            raise ConfigError(f"--upgrade {label!r} is not FROM:TO",
                              hint=f"write e.g. --upgrade {_example(matrix)}")
        sides = []
        for side in label.split(":", 1):
            if side not in matrix.channels and side and side[0].isdigit() and "/" not in side:
                channel = adhoc_channel(side)
                matrix = _with_channel(matrix, channel)
                versions.append(channel.mlflow_version)
                side = channel.name
            sides.append(side)
        resolved.append(":".join(sides))
    return matrix, tuple(resolved), versions


def _example(matrix: Matrix) -> str:
    if matrix.upgrades:
        return f"{matrix.upgrades[0].source}:{matrix.upgrades[0].target}"
    names = list(matrix.channels)
    return f"{names[0]}:{names[-1]}"


def print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def check_reports_dir(path: Path) -> Path:
    """The reports dir must be a writable directory before anything starts (exit 2 if not)."""
    import tempfile

    target = path.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--reports-dir {path}: {target} exists and is not a directory",
                          hint="pass a directory (it is created if missing), e.g. "
                               "--reports-dir reports")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"--reports-dir {path}: cannot write there ({exc.strerror or exc})",
                          hint="pass a directory you can write to, e.g. --reports-dir reports"
                          ) from None
    return target
