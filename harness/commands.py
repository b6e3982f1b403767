"""The CLI's subcommands, kept apart from argument parsing so they read top to bottom."""

from __future__ import annotations

import argparse
import re
from typing import Any

from harness.errors import EXIT_OK, ConfigError
from harness.matrix import (
    DETECT,
    Cell,
    Matrix,
    Selection,
    adhoc_channel,
    expand_cells,
    load_matrix,
)
from harness.options import provisioner_options as _provisioner_options

EXTERNAL_KIND = "external"  # one cell per platform, at the version the server reports
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # it names models and cloud resources


def selected_cells(args: argparse.Namespace) -> tuple[Matrix, list[Cell]]:
    matrix = load_matrix(args.matrix)
    defaults = matrix.defaults
    platforms = tuple(args.platform) or defaults.platforms
    if "all" in platforms:  # an external platform only when there is a server to point it at
        platforms = tuple(n for n, p in matrix.platforms.items() if p.kind != EXTERNAL_KIND
                          or args.tracking_uri or getattr(p.settings, "tracking_uri", ""))
    external = tuple(n for n in platforms
                     if n in matrix.platforms and matrix.platforms[n].kind == EXTERNAL_KIND)
    platforms = tuple(n for n in platforms if n not in external)
    if external and not platforms and (args.channel or args.upgrade):
        raise ConfigError("--platform external tests the MLflow the server runs: --channel and "
                          "--upgrade do not apply",
                          hint="drop them, or pass --mlflow-version V to require version V")
    explicit = bool(args.channel or args.upgrade)
    channels = tuple(args.channel) if explicit else defaults.channels
    upgrades = tuple(args.upgrade) if explicit else defaults.upgrades
    if args.mlflow_version:
        if args.channel:
            raise ConfigError("--mlflow-version and --channel are alternatives",
                              hint="use one: a channel from matrix.yaml, or an MLflow version")
        channel = adhoc_channel(args.mlflow_version)
        matrix = _with_channel(matrix, channel)
        channels = (channel.name,)
        upgrades = upgrades if args.upgrade else ()
    matrix, upgrades = _adhoc_upgrades(matrix, upgrades)
    scenarios = tuple(args.scenario) or defaults.scenarios
    selection = Selection(platforms=platforms, channels=channels, upgrades=upgrades,
                          scenarios=scenarios)
    cells = expand_cells(matrix, selection) if platforms else []
    if external:
        detect = matrix.channels[channels[0]] if args.mlflow_version else adhoc_channel(DETECT)
        matrix = _with_channel(matrix, detect)
        cells += expand_cells(matrix, Selection(platforms=external, channels=(detect.name,),
                                                scenarios=scenarios))
    _check_platform_options(matrix, {cell.platform.name for cell in cells}, args)
    if not cells:
        raise ConfigError("the selection has no cells",
                          hint="check --platform/--channel/--scenario against `mlflow-matrix list`")
    return matrix, cells


def _check_platform_options(matrix: Matrix, names: set[str], args: argparse.Namespace) -> None:
    """Bad platform options (e.g. external without --tracking-uri) fail before a run starts."""
    from harness.registry import load_provisioner_class

    for name in sorted(names):
        platform = matrix.platforms[name]
        load_provisioner_class(platform.kind).check_options(platform.settings,
                                                            _provisioner_options(args))


def _with_channel(matrix: Matrix, channel: Any) -> Matrix:
    import dataclasses

    return dataclasses.replace(matrix, channels={**matrix.channels, channel.name: channel})


def _adhoc_upgrades(matrix: Matrix, upgrades: tuple[str, ...]) -> tuple[Matrix, tuple[str, ...]]:
    """`--upgrade 2.20.0:3.1.0`: a side that is a version, not a channel, becomes a channel."""
    resolved = []
    for label in upgrades:
        if ":" not in label:
            raise ConfigError(f"--upgrade {label!r} is not FROM:TO",
                              hint="write e.g. --upgrade 2.15/stable:2.22/stable")
        sides = []
        for side in label.split(":", 1):
            if side not in matrix.channels and side and side[0].isdigit() and "/" not in side:
                channel = adhoc_channel(side)
                matrix = _with_channel(matrix, channel)
                side = channel.name
            sides.append(side)
        resolved.append(":".join(sides))
    return matrix, tuple(resolved)


def cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix, cells = selected_cells(args)
    if args.dry_run:
        return _print_plan(matrix, cells, args)
    from harness.registry import load_provisioner_class
    from harness.runner import Runner, RunOptions

    run_id = _new_run_id(args)
    for name in sorted({cell.platform.name for cell in cells}):  # before anything is created
        platform = matrix.platforms[name]
        load_provisioner_class(platform.kind).preflight(platform.settings,
                                                        _provisioner_options(args))

    options = RunOptions(reports_dir=args.reports_dir.resolve(), run_id=run_id,
                         parallel=args.parallel or matrix.defaults.parallel,
                         keep=args.keep, keep_on_failure=args.keep_on_failure,
                         pytest_args=tuple(pytest_args),
                         provisioner_options=_provisioner_options(args))
    return Runner(matrix, cells, options).run()


def _new_run_id(args: argparse.Namespace) -> str:
    """`--run-id`: checked, and never one whose state file exists (it may hold leftovers)."""
    run_id = getattr(args, "run_id", None) or ""
    if not run_id:
        return ""
    if not RUN_ID.match(run_id):
        raise ConfigError(f"--run-id {run_id!r} is not a valid run id",
                          hint="use 1-40 lower-case letters, digits and '-', starting with a "
                               "letter or digit")
    state = args.reports_dir.resolve() / "state" / f"{run_id}.json"
    if state.exists():
        raise ConfigError(f"run id {run_id} was used before ({state})",
                          hint=f"pick a new id; `mlflow-matrix down --run-id {run_id}` releases "
                               "what that run left")
    return run_id


def cmd_plan(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix, cells = selected_cells(args)
    return _print_plan(matrix, cells, args)


def _print_plan(matrix: Matrix, cells: list[Cell], args: argparse.Namespace) -> int:
    from harness.planning import plan_lines

    for line in plan_lines(matrix, cells, _provisioner_options(args)):
        print(line)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix = load_matrix(args.matrix)
    if getattr(args, "json", False):
        import json

        from harness.ci_matrix import list_data

        print(json.dumps(list_data(matrix), indent=1))
        return EXIT_OK
    print(f"matrix: {matrix.path}\n\nplatforms:")
    for p in matrix.platforms.values():
        default = " (default)" if p.name in matrix.defaults.platforms else ""
        print(f"  {p.name:<22} kind={p.kind:<14} {p.description}{default}")
    print("\nchannels:")
    for c in matrix.channels.values():
        flags = " experimental" if c.experimental else ""
        default = " (default)" if c.name in matrix.defaults.channels else ""
        pins = ", ".join(matrix.requirements_for(c)) or "-"
        print(f"  {c.name:<16} MLflow {c.mlflow_version:<8} pins: {pins}{flags}{default}")
    print("\nupgrade paths:")
    for u in matrix.upgrades:
        default = " (default)" if f"{u.source}:{u.target}" in matrix.defaults.upgrades else ""
        print(f"  {u.source}:{u.target}{default}")
    print("\nscenario suites:")
    for s in matrix.suites.values():
        where = "all platforms" if s.platforms is None else ", ".join(s.platforms)
        print(f"  {s.name:<12} {s.description} [{where}]")
    if matrix.known_defects:
        print("\nknown defects:")
        for d in matrix.known_defects:
            print(f"  {d.id}: {d.summary} ({d.link})")
    return EXIT_OK


def cmd_up(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.lifecycle import platform_up

    return platform_up(args)


def cmd_down(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.lifecycle import platform_down

    return platform_down(args)


def cmd_janitor(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.lifecycle import cloud_janitor, janitor

    if args.cloud:
        return cloud_janitor(args.cloud, older_than=args.older_than, dry_run=args.dry_run,
                             matrix_path=args.matrix, platforms=args.platform)
    if args.older_than or args.platform:
        raise ConfigError("--older-than and --platform go with --cloud KIND",
                          hint="`mlflow-matrix janitor --cloud eks --older-than 6h`")
    return janitor(args.reports_dir.resolve(), dry_run=args.dry_run)


def cmd_report(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """Allure 3 report (reports/allure-report/) and matrix page (reports/matrix.*)."""
    from harness.reporting.build import build_reports

    reports = args.reports_dir.resolve()
    matrix = load_matrix(args.matrix) if args.matrix else _default_matrix()
    if getattr(args, "merge", None) or getattr(args, "previous", None):
        from harness.reporting.merge import merge_and_build

        outcome = merge_and_build(reports, list(args.merge), previous=args.previous,
                                  matrix=matrix, progress=print)
    else:
        outcome = build_reports(reports, matrix, progress=print)
    for path in outcome.paths:
        print(path)
    print(f"{outcome.cells} cell(s); " + ", ".join(f"{name} {seconds:.1f}s"
                                                  for name, seconds in outcome.timings.items()))
    if outcome.error is not None:
        raise outcome.error
    return EXIT_OK


def _default_matrix() -> Matrix | None:
    """./matrix.yaml when it loads (orders rows and columns), else none: reports stand alone."""
    try:
        return load_matrix(None)
    except Exception:
        return None
