"""`mlflow-matrix`: run, plan, up, down, list, janitor, report.

Exit codes: 0 all green, 1 a scenario failed, 2 bad input, 3 infrastructure failure,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, MatrixError

EPILOG = """\
examples:
  mlflow-matrix run                                  default selection (local platforms)
  mlflow-matrix run --platform local --channel 2.22/stable
  mlflow-matrix run --upgrade 2.15/stable:2.22/stable --platform local-mysql
  mlflow-matrix run --platform local --mlflow-version 3.1.0      qualify an upstream release
  mlflow-matrix run --platform external --tracking-uri http://mlflow:5000 \\
      --s3-endpoint-url http://minio:9000 --artifact-bucket mlflow
  mlflow-matrix run --scenario tracking -- -k search -x   (after `--`: extra pytest args)
  mlflow-matrix plan --platform microk8s-1.32        print the commands, touch nothing

exit codes: 0 all green · 1 a scenario failed · 2 bad input · 3 infrastructure failure
            (provision/deploy/teardown) · 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlflow-matrix",
        description="Prove Charmed MLflow behaves the same on every platform it supports.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--matrix", type=Path, help="matrix file (default: ./matrix.yaml)")
        p.add_argument("--platform", action="append", default=[], metavar="NAME",
                       help="platform from matrix.yaml; repeatable; `all` for every platform")
        p.add_argument("--channel", action="append", default=[], metavar="CHANNEL",
                       help="Charmed MLflow channel, e.g. 2.22/stable; repeatable")
        p.add_argument("--upgrade", action="append", default=[], metavar="FROM:TO",
                       help="upgrade path, e.g. 2.15/stable:2.22/stable; repeatable")
        p.add_argument("--scenario", action="append", default=[], metavar="SUITE",
                       help="scenario suite (tracking, artifacts, …); repeatable")
        p.add_argument("--mlflow-version", metavar="V",
                       help="test upstream MLflow V instead of a channel (local, external)")
        p.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR",
                       help="where reports and run state go (default: ./reports)")
        p.add_argument("--tracking-uri", help="external: URL of the MLflow server to test")
        p.add_argument("--s3-endpoint-url", help="external: S3 endpoint of its artifact store")
        p.add_argument("--artifact-bucket", help="external: bucket of its artifact store")
        p.add_argument("--kubeconfig", type=Path, help="existing: kubeconfig of the cluster")
        p.add_argument("--controller", help="reuse this Juju controller instead of bootstrapping")

    run = sub.add_parser("run", help="run the matrix (default command)", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    selection(run)
    run.add_argument("--keep", action="store_true", help="leave every deployment running")
    run.add_argument("--keep-on-failure", action="store_true",
                     help="leave failed or broken deployments running for inspection")
    run.add_argument("--parallel", type=_positive, default=None, metavar="N",
                     help="cells to run at once (default: defaults.parallel in matrix.yaml)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    run.add_argument("--run-id", metavar="ID",
                     help="name this run (default: a new id); CI sets it up front so an "
                          "always-run teardown can call `down --run-id ID`")

    plan = sub.add_parser("plan", help="print every step a run would take; touch nothing")
    selection(plan)

    up = sub.add_parser("up", help="provision a platform and leave it up")
    selection(up)
    down = sub.add_parser("down", help="release a platform or what a run left behind")
    selection(down)
    down.add_argument("--run-id", help="release what this run recorded in reports/state/")

    lst = sub.add_parser("list", help="list platforms, channels, upgrade paths and suites")
    lst.add_argument("--matrix", type=Path)
    lst.add_argument("--json", action="store_true",
                     help="machine-readable, with what a CI job per platform needs "
                          "(cloud, snaps, timeouts)")

    janitor = sub.add_parser(
        "janitor", help="release leftovers of crashed or killed runs (state files, or cloud "
                        "resources by tag with --cloud)",
        epilog="examples:\n  mlflow-matrix janitor                       what state files recorded"
               "\n  mlflow-matrix janitor --cloud eks --older-than 6h --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    janitor.add_argument("--reports-dir", type=Path, default=Path("reports"))
    janitor.add_argument("--dry-run", action="store_true", help="only show what would go")
    janitor.add_argument("--cloud", metavar="KIND",
                         help="sweep this cloud kind (eks, aks, gke…) for resources tagged "
                              "mlflow-matrix-run that are expired")
    janitor.add_argument("--older-than", metavar="AGE",
                         help="with --cloud: also resources created longer ago (90m, 6h, 2d)")
    janitor.add_argument("--matrix", type=Path,
                         help="with --cloud: region/project settings come from its platforms")
    janitor.add_argument("--platform", action="append", default=[], metavar="NAME",
                         help="with --cloud: only these platforms' settings")

    report = sub.add_parser("report", help="build the matrix page and the Allure report")
    report.add_argument("--reports-dir", type=Path, default=Path("reports"))
    report.add_argument("--matrix", type=Path)
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    own, pytest_args = split_pytest_args(argv)
    args = build_parser().parse_args(own)
    if args.command is None:
        build_parser().print_help()
        return EXIT_BAD_INPUT
    try:
        from harness import commands

        return getattr(commands, f"cmd_{args.command}")(args, pytest_args)
    except MatrixError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a harness bug: one line, the traceback in a file
        log = Path(getattr(args, "reports_dir", None) or "reports") / "harness-error.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            from harness.redact import redact

            log.write_text(redact(traceback.format_exc()), encoding="utf-8")
            where = f"; traceback in {log}"
        except OSError:
            where = ""
        print(f"internal error: {type(exc).__name__}: {exc}{where}\n"
              "  this is a bug in mlflow-matrix; please report it with that file",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
