"""The CLI's subcommands, kept apart from argument parsing so they read top to bottom."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.commands.collection import as_dicts
from harness.commands.options import provisioner_options
from harness.commands.preflight import preflight
from harness.commands.selection import check_reports_dir, print_notes, select
from harness.config.matrix import Cell, Matrix, load_matrix
from harness.config.pytest_args import check_pytest_args
from harness.system import hints
from harness.system.errors import EXIT_OK, ConfigError

if TYPE_CHECKING:
    from harness.run.scheduling import Sizing

RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # it names models and cloud resources


def selected_cells(args: argparse.Namespace) -> tuple[Matrix, list[Cell]]:
    """The cells `run` and `plan` act on; notes (a flag given twice …) go to stderr."""
    again = None
    if getattr(args, "last_failed", False):
        from harness.commands.rerun import last_failed
        from harness.reporting.run_folders import read_run

        again = last_failed(args, read_run)
    selected = select(args)
    print_notes(selected.notes)
    if again is None:
        return selected.matrix, selected.cells
    cells = again.keep(selected.cells)
    print_notes([f"--last-failed: {len(cells)} of {len(selected.cells)} cell(s) of run "
                 f"{again.run_id} did not pass; running those"])
    return selected.matrix, cells


def _provisioner_options(args: argparse.Namespace) -> dict[str, Any]:
    return provisioner_options(args)


def cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    extra = check_pytest_args(pytest_args)
    matrix, cells = selected_cells(args)
    if not cells:  # --last-failed after a green run
        print("nothing to re-run: every cell of the previous run passed", file=sys.stderr)
        return EXIT_OK
    if args.dry_run:
        return _print_plan(matrix, cells, args, pytest_args)
    reports = check_reports_dir(args.reports_dir)
    from harness.reporting.run_folders import start_run
    from harness.run.runner import Runner, RunOptions
    from harness.system.state import new_run_id

    run_id = _new_run_id(args) or new_run_id()
    for name in sorted({cell.platform.name for cell in cells}):  # before anything is created
        platform = matrix.platforms[name]
        preflight(platform, _provisioner_options(args))
    from harness.run.scheduling import longest_first, previous_durations

    partial = _check_selection(matrix, cells, extra, args)  # exit 2 before anything deploys
    sizing = _sizing(args, matrix, cells)
    from harness.run.eta import durations_file

    history = previous_durations(reports, durations_file())  # before the last run is archived
    cells = longest_first(cells, history)
    from harness.commands.rerun import selection_record

    start_run(reports, run_id, progress=lambda text: print(text, file=sys.stderr),
              selection=selection_record(args))
    options = RunOptions(reports_dir=reports, parallel=sizing.parallel, workers=sizing.workers,
                         late_workers=sizing.late_workers,
                         keep=args.keep, keep_on_failure=args.keep_on_failure,
                         pytest_args=tuple(pytest_args), selection=extra.selection,
                         partial=as_dicts(partial),
                         strict=strict_mode(args),
                         provisioner_options=_provisioner_options(args), run_id=run_id,
                         history=history)
    return Runner(matrix, cells, options).run()


def _check_selection(matrix: Matrix, cells: list[Cell], extra: Any,
                     args: argparse.Namespace) -> dict[str, Any]:
    """A -k/-m selection or a --scenario subset: collect each cell's tests in its env first."""
    from harness.commands.collection import check_selection
    from harness.run.envs import ensure_env
    from harness.run.scenario_process import scenarios_root

    def env_for(cell: Cell) -> Any:
        channel = cell.channel
        return ensure_env(channel.mlflow_version, matrix.requirements_for(channel),
                          timeout=matrix.timeouts.env_build,
                          progress=lambda text: print(text, file=sys.stderr))

    return check_selection(matrix, cells, extra, tuple(args.scenario or ()), env_for,
                           scenarios_root(), lambda text: print(text, file=sys.stderr))


def strict_mode(args: argparse.Namespace) -> bool:
    """`--strict`/`--no-strict`, else on in CI ($CI, set by GitHub Actions, GitLab, Jenkins …)."""
    flag = getattr(args, "strict", None)
    if flag is not None:
        return bool(flag)
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


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
                          hint="pick a new id; `" + hints.command(
                              "down", "--run-id", run_id, reports_dir=args.reports_dir)
                          + "` releases what that run left")
    return run_id


def _sizing(args: argparse.Namespace, matrix: Matrix, cells: list[Cell]) -> Sizing:
    """Cells at once and pytest-xdist workers per cell: flags, else matrix.yaml, else sized to
    this machine's cores and memory; `run` and `plan` use the same numbers."""
    from harness.run.scheduling import Machine, sized

    return sized(cells, Machine.here(),
                 parallel=getattr(args, "parallel", None) or matrix.defaults.parallel,
                 workers=getattr(args, "workers", None) or matrix.defaults.workers)


def cmd_plan(args: argparse.Namespace, pytest_args: list[str]) -> int:
    check_pytest_args(pytest_args)
    matrix, cells = selected_cells(args)
    if not cells:
        print("nothing to re-run: every cell of the previous run passed", file=sys.stderr)
        return EXIT_OK
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
                          hint="`" + hints.command("janitor", "--cloud", "KIND",
                                                   "--older-than", "6h") + "`")
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
