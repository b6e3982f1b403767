"""The CLI's subcommands, kept apart from argument parsing so they read top to bottom."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.commands.options import provisioner_options
from harness.commands.selection import check_reports_dir, print_notes, select
from harness.config.matrix import Cell, Matrix, load_matrix
from harness.system.errors import EXIT_OK, ConfigError

if TYPE_CHECKING:
    from harness.run.scheduling import Sizing

RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # it names models and cloud resources


def selected_cells(args: argparse.Namespace) -> tuple[Matrix, list[Cell]]:
    """The cells `run` and `plan` act on; notes (a flag given twice …) go to stderr."""
    selected = select(args)
    print_notes(selected.notes)
    return selected.matrix, selected.cells


def _provisioner_options(args: argparse.Namespace) -> dict[str, Any]:
    return provisioner_options(args)


def cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix, cells = selected_cells(args)
    if args.dry_run:
        return _print_plan(matrix, cells, args, pytest_args)
    reports = check_reports_dir(args.reports_dir)
    from harness.config.registry import load_provisioner_class
    from harness.reporting.run_folders import start_run
    from harness.run.runner import Runner, RunOptions
    from harness.system.state import new_run_id

    run_id = _new_run_id(args) or new_run_id()
    for name in sorted({cell.platform.name for cell in cells}):  # before anything is created
        platform = matrix.platforms[name]
        load_provisioner_class(platform.kind).preflight(platform.settings,
                                                        _provisioner_options(args))
    from harness.run.scheduling import longest_first, previous_durations

    sizing = _sizing(args, matrix, cells)
    cells = longest_first(cells, previous_durations(reports))  # before the last run is archived
    start_run(reports, run_id, progress=lambda text: print(text, file=sys.stderr))
    options = RunOptions(reports_dir=reports, parallel=sizing.parallel, workers=sizing.workers,
                         late_workers=sizing.late_workers,
                         keep=args.keep, keep_on_failure=args.keep_on_failure,
                         pytest_args=tuple(pytest_args),
                         provisioner_options=_provisioner_options(args), run_id=run_id)
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


def _sizing(args: argparse.Namespace, matrix: Matrix, cells: list[Cell]) -> Sizing:
    """Cells at once and pytest-xdist workers per cell: flags, else matrix.yaml, else sized to
    this machine's cores and memory; `run` and `plan` use the same numbers."""
    from harness.run.scheduling import Machine, sized

    return sized(cells, Machine.here(),
                 parallel=getattr(args, "parallel", None) or matrix.defaults.parallel,
                 workers=getattr(args, "workers", None) or matrix.defaults.workers)


def cmd_plan(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix, cells = selected_cells(args)
    return _print_plan(matrix, cells, args, pytest_args)


def _print_plan(matrix: Matrix, cells: list[Cell], args: argparse.Namespace,
                pytest_args: list[str]) -> int:
    from harness.commands.planning import plan_lines

    for line in plan_lines(matrix, cells, _provisioner_options(args),
                           reports_dir=args.reports_dir.expanduser().resolve(),
                           pytest_args=tuple(pytest_args), sizing=_sizing(args, matrix, cells)):
        print(line)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, pytest_args: list[str]) -> int:
    matrix = load_matrix(args.matrix)
    if getattr(args, "json", False):
        import json

        from harness.commands.ci_matrix import list_data

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
        scope = "all platforms" if s.platforms is None else ", ".join(s.platforms)
        print(f"  {s.name:<12} {s.description} [{scope}]")
    if matrix.known_defects:
        print("\nknown defects:")
        for d in matrix.known_defects:
            where = [f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in (
                ("tests", d.tests), ("phases", d.phases), ("introduced_in", d.introduced_in),
                ("fixed_in", d.fixed_in), ("mlflow", d.mlflow), ("client", d.client),
                ("databases", d.databases), ("artifacts", d.artifacts),
                ("channels", d.channels), ("platforms", d.platforms), ("upgrades", d.upgrades))
                if v]
            print(f"  {d.id}: {d.summary} ({d.link})\n      where: {'; '.join(where)}"
                  f"\n      looks like: {d.signature.describe()}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.commands.lifecycle import platform_up

    check_reports_dir(args.reports_dir)

    return platform_up(args)


def cmd_down(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.commands.lifecycle import platform_down

    return platform_down(args)


def cmd_janitor(args: argparse.Namespace, pytest_args: list[str]) -> int:
    from harness.commands.lifecycle import cloud_janitor, janitor

    if args.cloud:
        return cloud_janitor(args.cloud, older_than=args.older_than, dry_run=args.dry_run,
                             matrix_path=args.matrix, platforms=args.platform)
    if args.older_than or args.platform:
        raise ConfigError("--older-than and --platform go with --cloud KIND",
                          hint="`mlflow-matrix janitor --cloud eks --older-than 6h`")
    return janitor(args.reports_dir.resolve(), dry_run=args.dry_run)


def cmd_report(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """Allure 3 report (reports/allure-report/) and matrix page (reports/matrix.*)."""
    from harness.reporting.allure_report import iter_cells
    from harness.reporting.build import build_reports

    reports = args.reports_dir.expanduser().resolve()
    if not args.merge and not any(iter_cells(reports)):
        what = "does not exist" if not reports.exists() else "holds no cell results"
        raise ConfigError(f"--reports-dir {args.reports_dir}: {reports} {what}; nothing to report",
                          hint="run the matrix first (`mlflow-matrix run …` or `tox -e matrix`), "
                               "or pass the --reports-dir that run used")
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


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "run": cmd_run, "plan": cmd_plan, "list": cmd_list, "up": cmd_up, "down": cmd_down,
    "janitor": cmd_janitor, "report": cmd_report}
