"""`mlflow-matrix`: run, plan, up, down, list, janitor, report.

Exit codes: 0 all green, 1 a scenario failed, 2 bad input (also a usage error), 3 infrastructure
failure, 130 interrupted, 141 stdout closed early (`plan | head`; what the shell reports for any
tool a closed pipe stops, kubectl included).

Only the standard library and `harness.system.errors` are imported at module level, so a missing
dependency is reported as such instead of as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from harness import __version__
from harness.system.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, MatrixError

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
OWN_PACKAGES = ("harness", "provisioners", "scenarios", "deployments")
# import name → the distribution that provides it, where the two differ
DISTRIBUTIONS = {"yaml": "pyyaml", "jinja2": "jinja2", "google": "google-cloud-container",
                 "azure": "azure-mgmt-containerservice"}

EPILOG = """\
examples:
  mlflow-matrix run --platform local --channel 2.22/stable --scenario tracking   (~1 min warm)
  mlflow-matrix run                                  default selection (local platforms, ~10 min)
  mlflow-matrix run --upgrade 2.15/stable:2.22/stable --platform local-mysql
  mlflow-matrix run --platform local --mlflow-version 3.1.0      qualify an upstream release
  mlflow-matrix run --platform local --mlflow-version '>=2.15,<3.18' --parallel 2
                                                     release sweep: latest patch of each minor
  mlflow-matrix run --platform external --tracking-uri http://mlflow:5000 \\
      --s3-endpoint-url http://minio:9000 --artifact-bucket mlflow
  mlflow-matrix run --scenario tracking -- -k search -x   (after `--`: extra pytest args)
  mlflow-matrix plan --platform microk8s-1.32        print every step, touch nothing

exit codes: 0 all green · 1 a scenario failed · 2 bad input or usage · 3 infrastructure
            failure (provision/deploy/teardown) · 130 interrupted · 141 output pipe closed
"""

RUN_USAGE = ("mlflow-matrix %(cmd)s [--platform NAME …] [--channel CH …] [--upgrade FROM:TO …] "
             "[--scenario SUITE …] [options] [-- PYTEST_ARGS]")


class _Parser(argparse.ArgumentParser):
    """argparse with the conventions of tox and kubectl: a usage error names the subcommand's
    usage, says how to get help, and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        hint = ""
        if "unrecognized arguments" in message and self.prog.split()[-1] in ("run", "plan"):
            hint = ("\n  pytest options go after `--`, e.g. "
                    f"`{self.prog} --scenario tracking -- -k search -x`")
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}{hint}\n"
                                  f"  see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="mlflow-matrix",
        description="Prove Charmed MLflow behaves the same on every platform it supports.",
        epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"mlflow-matrix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def matrix_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--matrix", type=Path, metavar="PATH",
                       help="matrix file (default: ./matrix.yaml when the current directory has "
                            "one, else the project's matrix.yaml)")

    def reports_flag(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR",
                       help=f"{what} (default: ./reports)")

    def selection(p: argparse.ArgumentParser) -> None:
        matrix_flag(p)
        p.add_argument("--platform", action="append", default=[], metavar="NAME",
                       help="platform from the matrix file; repeatable; `all` for every platform "
                            "(external only with --tracking-uri). Default: defaults.platforms")
        p.add_argument("--channel", action="append", default=[], metavar="CHANNEL",
                       help="Charmed MLflow channel, e.g. 2.22/stable; repeatable")
        p.add_argument("--upgrade", action="append", default=[], metavar="FROM:TO",
                       help="upgrade path, e.g. 2.15/stable:2.22/stable; repeatable; bare "
                            "versions (2.22.0:3.1.0) on local platforms only")
        p.add_argument("--guides", action="store_true",
                       help="also the backup → destroy → restore cells of the backup and restore "
                            "guides (their paths in matrix.yaml `upgrade_guides:`); nightly CI "
                            "runs them")
        p.add_argument("--scenario", action="append", default=[], metavar="SUITE",
                       help="scenario suite (tracking, artifacts, registry, persistence, "
                            "upgrade); repeatable; default: all")
        p.add_argument("--mlflow-version", action="append", default=[], metavar="V",
                       help="test upstream MLflow V (a release on PyPI) instead of a channel; "
                            "local platforms, or external to require the server runs V; "
                            "repeatable, one cell per release; a range such as '>=2.15,<3.18' "
                            "is every minor release in it at its latest patch (release sweep)")
        reports_flag(p, "where this run's reports and run state go; earlier runs move to "
                        "DIR/runs/<run-id>/")
        ext = p.add_argument_group("external platform (kind external)")
        ext.add_argument("--tracking-uri", metavar="URL", help="URL of the MLflow server to test")
        ext.add_argument("--s3-endpoint-url", metavar="URL",
                         help="S3 endpoint of its artifact store (keys from AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY)")
        ext.add_argument("--artifact-bucket", metavar="NAME",
                         help="bucket of its artifact store")
        ext.add_argument("--artifact-mode", choices=("direct", "proxied"),
                         help="how the server stores artifacts (direct s3:// or proxied "
                              "mlflow-artifacts:); asserted by the artifacts suite")
        cluster = p.add_argument_group("Kubernetes platforms (Juju)")
        cluster.add_argument("--kubeconfig", type=Path, metavar="PATH",
                             help="kind existing: kubeconfig of the cluster (default: $KUBECONFIG "
                                  "or ~/.kube/config)")
        cluster.add_argument("--controller", metavar="NAME",
                             help="reuse this Juju controller instead of bootstrapping one")

    run = sub.add_parser("run", help="run the matrix: provision, deploy, test, tear down",
                         usage=RUN_USAGE % {"cmd": "run"}, epilog=EPILOG, formatter_class=fmt,
                         description="Run every selected cell (platform × channel or upgrade "
                                     "path) and write the reports. Arguments after `--` go to "
                                     "pytest in every cell.")
    selection(run)
    opts = run.add_argument_group("run options")
    opts.add_argument("--keep", action="store_true", help="leave every deployment running")
    opts.add_argument("--keep-on-failure", action="store_true",
                      help="leave failed or broken deployments running for inspection")
    opts.add_argument("--parallel", type=_positive, default=None, metavar="N",
                      help="cells to run at once (default: defaults.parallel in the matrix file; "
                           "0 there: sized to this machine's cores and memory)")
    opts.add_argument("--workers", type=_positive, default=None, metavar="N",
                      help="pytest-xdist workers per cell, 1 = serial (default: defaults.workers "
                           "in the matrix file; 0 there: from cores and --parallel)")
    opts.add_argument("--dry-run", action="store_true",
                      help="print the plan (as `mlflow-matrix plan`) and exit")
    opts.add_argument("--run-id", metavar="ID",
                      help="name this run (default: a new id); CI sets it up front so an "
                           "always-run teardown can call `down --run-id ID`")

    plan = sub.add_parser("plan", help="print every step a run would take; touch nothing",
                          usage=RUN_USAGE % {"cmd": "plan"}, formatter_class=fmt,
                          description="Print exactly what `run` with the same arguments would "
                                      "do, cell by cell. Nothing is created or written.")
    selection(plan)

    up = sub.add_parser("up", help="provision one platform and leave it up",
                        description="Bring one platform up (cluster, Juju cloud) outside a run; "
                                    "`down` releases it.")
    matrix_flag(up)
    up.add_argument("--platform", action="append", default=[], metavar="NAME", required=True,
                    help="the platform to bring up (exactly one)")
    reports_flag(up, "where the run state goes (DIR/state/)")
    up.add_argument("--kubeconfig", type=Path, metavar="PATH",
                    help="kind existing: kubeconfig of the cluster")
    up.add_argument("--controller", metavar="NAME",
                    help="reuse this Juju controller instead of bootstrapping one")

    down = sub.add_parser("down", help="release a platform or what a run left behind",
                          description="Release a platform (--platform) and/or everything a run "
                                      "recorded in its state file (--run-id). Idempotent.")
    matrix_flag(down)
    down.add_argument("--platform", action="append", default=[], metavar="NAME",
                      help="platform to bring down; repeatable")
    down.add_argument("--run-id", metavar="ID",
                      help="release what this run recorded in DIR/state/<ID>.json")
    reports_flag(down, "where run state files are (DIR/state/)")
    down.add_argument("--kubeconfig", type=Path, metavar="PATH",
                      help="kind existing: kubeconfig of the cluster")
    down.add_argument("--controller", metavar="NAME",
                      help="the Juju controller the platform was registered with")

    lst = sub.add_parser("list", help="list platforms, channels, upgrade paths and suites",
                         description="Validate the matrix file and list what it declares.")
    matrix_flag(lst)
    lst.add_argument("--json", action="store_true",
                     help="machine-readable, with what a CI job per platform needs "
                          "(cloud, snaps, timeouts)")

    janitor = sub.add_parser(
        "janitor", help="release leftovers of crashed or killed runs (state files, or cloud "
                        "resources by tag with --cloud)",
        description="Release every resource recorded in DIR/state/*.json by a run whose process "
                    "is gone (SIGKILL, crash, power loss). Runs still alive are left alone. "
                    "With --cloud KIND: delete that cloud's run-tagged resources that are due.",
        epilog="examples:\n  mlflow-matrix janitor                       what state files recorded"
               "\n  mlflow-matrix janitor --cloud eks --older-than 6h --dry-run",
        formatter_class=fmt)
    reports_flag(janitor, "whose state/ folder to sweep")
    janitor.add_argument("--dry-run", action="store_true",
                         help="only print what would be released")
    janitor.add_argument("--cloud", metavar="KIND",
                         help="sweep this cloud kind (eks, aks, gke…) for resources tagged "
                              "mlflow-matrix-run that are expired")
    janitor.add_argument("--older-than", metavar="AGE",
                         help="with --cloud: also resources created longer ago (90m, 6h, 2d)")
    janitor.add_argument("--matrix", type=Path, metavar="PATH",
                         help="with --cloud: region/project settings come from its platforms")
    janitor.add_argument("--platform", action="append", default=[], metavar="NAME",
                         help="with --cloud: only these platforms' settings")

    report = sub.add_parser(
        "report", help="build the matrix page and the Allure report",
        description="Enrich the latest run's Allure results, build the Allure 3 report "
                    "(DIR/allure-report/) and the matrix page (DIR/matrix.html|md|json).")
    reports_flag(report, "the reports of a run")
    matrix_flag(report)
    report.add_argument("--merge", nargs="+", type=Path, default=[], metavar="DIR",
                        help="merge these reports directories (one per job/machine) into "
                             "--reports-dir, then build one report over all of them")
    report.add_argument("--previous", type=Path, metavar="DIR",
                        help="the previous published report (its matrix.json and "
                             "allure-history.jsonl): keeps Allure's history and trends, and "
                             "calls out regressions at the top of the matrix page")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def split_pytest_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`run ARGS -- PYTEST_ARGS`: everything after the first `--` goes to pytest."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            chosen: argparse.ArgumentParser = action.choices[command]
            return chosen
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Arguments → (namespace, pytest args); usage errors exit 2 with the subcommand's usage."""
    parser = build_parser()
    if not argv:  # like git and kubectl: a bare call explains itself
        parser.print_help(sys.stderr)
        parser.exit(EXIT_BAD_INPUT, "\nmlflow-matrix: error: a command is required "
                                    "(try `mlflow-matrix run --help`)\n")
    own, pytest_args = split_pytest_args(argv)
    if own and own[0].startswith("-") and own[0] not in ("-h", "--help", "--version"):
        parser.error(f"a command comes first; did you mean `mlflow-matrix run {' '.join(argv)}`?")
    args, unknown = parser.parse_known_args(own)
    sub = _subparser(parser, args.command or "")
    if unknown:
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    if pytest_args and args.command not in ("run", "plan"):
        sub.error("only `run` and `plan` take pytest arguments after `--`")
    return args, pytest_args


def main(argv: list[str] | None = None) -> int:
    try:
        args, pytest_args = parse(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `mlflow-matrix --help | head -1`
        return _closed_pipe()
    try:
        from harness.commands import subcommands

        code = subcommands.COMMANDS[args.command](args, pytest_args)
        sys.stdout.flush()  # a reader gone before the last block is written: same as mid-way
        return code
    except MatrixError as exc:
        return _say(exc.render(), exc.exit_code)
    except KeyboardInterrupt:
        return _say("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return _closed_pipe()
    except ImportError as exc:
        missing = _missing_dependency(exc)
        if missing is None:
            return _internal_error(exc, args)
        return _say(missing, EXIT_BAD_INPUT)
    except Exception as exc:
        return _internal_error(exc, args)


def _say(text: str, code: int) -> int:
    """The last words on stderr; a reader that went away (`2>&1 | head -1`) changes no exit code."""
    try:
        print(text, file=sys.stderr)
    except BrokenPipeError:
        _closed_pipe()
    return code


def _closed_pipe() -> int:
    """The reader went away (`plan | head -1`): say nothing, and keep Python's exit-time flush
    of stdout from printing a traceback about it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    return EXIT_BROKEN_PIPE


def _missing_dependency(exc: ImportError) -> str | None:
    name = (exc.name or "").split(".")[0]
    if not name or name in OWN_PACKAGES:
        return None
    dist = DISTRIBUTIONS.get(name, name)
    return (f"error: the Python package {dist!r} (module `{name}`) is not installed in "
            f"{sys.prefix}\n"
            f"  fix: install mlflow-matrix with its dependencies: `pip install -e .` in the "
            f"checkout (or `pip install {dist}`), or run it through tox: `tox -e matrix -- …`")


def _internal_error(exc: BaseException, args: argparse.Namespace) -> int:
    """A harness bug: one line on screen, the traceback in a file."""
    log = Path(getattr(args, "reports_dir", None) or "reports") / "harness-error.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        from harness.system.redact import redact

        log.write_text(redact(traceback.format_exc()), encoding="utf-8")
        where = f"; traceback in {log}"
    except (OSError, ImportError):
        where = ""
        traceback.print_exc()
    return _say(f"internal error: {type(exc).__name__}: {exc}{where}\n"
                "  this is a bug in mlflow-matrix; please report it with that file", 3)


if __name__ == "__main__":
    sys.exit(main())
