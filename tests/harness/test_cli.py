"""The CLI as a user meets it: real `python -m harness` processes, exit codes and what they print."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import __version__
from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})


def test_bare_command_prints_help_and_starts_nothing(tmp_path):
    result = cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: mlflow-matrix" in result.stderr and "run" in result.stderr
    assert "a command is required" in result.stderr
    assert not (tmp_path / "reports").exists()


def test_help_and_version_exit_0():
    help_ = cli("--help")
    assert help_.returncode == 0 and "exit codes:" in help_.stdout
    version = cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"mlflow-matrix {__version__}")


def test_flags_without_a_command_are_a_usage_error_not_a_run(tmp_path):
    result = cli("--platform", "local", cwd=tmp_path)
    assert result.returncode == 2
    assert "did you mean `mlflow-matrix run --platform local`" in result.stderr
    assert not (tmp_path / "reports").exists()


def test_unknown_flag_after_a_subcommand_shows_that_subcommands_usage():
    result = cli("run", "--platfrom", "local")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: mlflow-matrix run ")
    assert "unrecognized arguments: --platfrom" in result.stderr
    assert "pytest options go after `--`" in result.stderr
    janitor = cli("janitor", "--channel", "2.22/stable")
    assert janitor.returncode == 2 and janitor.stderr.startswith("usage: mlflow-matrix janitor")


def _options(command: str) -> dict[str, str | None]:
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions).choices[command]
    return {opt: action.help for action in sub._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", ["run", "plan", "up", "down", "list", "janitor", "report"])
def test_every_option_of_every_command_is_described(command):
    options = _options(command)
    assert options
    for option, text in options.items():
        assert text and len(text) > 10, f"{command} {option} has no help"
    result = cli(command, "--help")
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout


def test_up_and_down_list_only_flags_that_apply():
    for command in ("up", "down"):
        options = _options(command)
        for meaningless in ("--channel", "--upgrade", "--scenario", "--mlflow-version",
                            "--tracking-uri", "--keep"):
            assert meaningless not in options, f"{command} lists {meaningless}"
    assert "--run-id" in _options("down")
    assert "PYTEST_ARGS" in cli("run", "--help").stdout


def test_plan_into_a_closed_pipe_exits_quietly():
    """`plan | head -1`: the shell's convention for a closed pipe (141), no traceback, no log."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            f"{sys.executable} -m harness plan --platform local --reports-dir {tmp}/r "
            f"2>{tmp}/err | head -1; echo \"${{PIPESTATUS[0]}}\" > {tmp}/rc",
            shell=True, executable="/bin/bash", cwd=ROOT, stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=120)
        assert out.startswith("matrix: ")
        assert Path(f"{tmp}/rc").read_text().strip() == "141"
        assert Path(f"{tmp}/err").read_text() == ""
        assert not list(Path(tmp).rglob("harness-error.log"))


@pytest.mark.parametrize("kind", ["proc", "file"])
def test_unusable_reports_dir_is_bad_input_before_anything_starts(tmp_path, kind):
    target = "/proc/mlflow-matrix-x" if kind == "proc" else str(tmp_path / "afile")
    if kind == "file":
        Path(target).write_text("x")
    result = cli("run", "--platform", "local", "--channel", "2.22/stable", "--reports-dir", target,
                 cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --reports-dir {target}")
    assert "fix:" in result.stderr and "bug" not in result.stderr
    assert not list(tmp_path.rglob("harness-error.log"))
    assert not list(tmp_path.rglob("state"))


def test_missing_dependency_outside_tox_says_how_to_install(tmp_path):
    """`python -S` has no site-packages: PyYAML and friends are missing, as in a bare checkout."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from harness.cli import main; "
            "sys.exit(main(['list']))")
    result = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is not installed" in result.stderr
    assert "pip install -e ." in result.stderr
    assert "bug" not in result.stderr and "Traceback" not in result.stderr


def test_up_on_an_unknown_platform_leaves_no_state_file(tmp_path):
    result = cli("up", "--platform", "gke", "--reports-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "--platform gke" in result.stderr
    assert not list((tmp_path / "r").rglob("*.json"))


def test_down_leaves_no_temp_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = cli("down", "--platform", "local", "--reports-dir", str(tmp_path / "r"),
                 env={"TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stderr
    assert "local: down" in result.stdout
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_report_without_results_is_bad_input_and_writes_nothing(tmp_path, state):
    reports = tmp_path / "reports"
    if state == "empty":
        reports.mkdir()
    result = cli("report", "--reports-dir", str(reports))
    assert result.returncode == 2
    assert "nothing to report" in result.stderr and "fix:" in result.stderr
    assert not list(tmp_path.rglob("matrix.*"))


def test_pytest_args_only_where_they_mean_something():
    result = cli("list", "--", "-k", "x")
    assert result.returncode == 2
    assert "only `run` and `plan` take pytest arguments" in result.stderr


def test_readme_documents_every_run_flag_the_run_time_and_a_first_example():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| flag | applies to | meaning |"):]
    table = table[:table.index("\n\n")]
    for option in _options("run"):
        if option.startswith("--") and option != "--help":
            assert f"`{option}" in table, f"README flag table misses {option}"
    assert "### In 30 seconds" in readme and "### How long it takes" in readme
    assert "**141**" in readme and "reports/runs/<its run id>/" in readme


def test_tox_venv_marker_is_ignored_by_git(tmp_path):
    """tox 4 writes a `.venv` *file* at the project root; `.venv/` alone would not match it."""
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", ".venv"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, "`.venv` (file) is not ignored"


def _readme_table(readme: str, header: str) -> list[str]:
    table = readme[readme.index(header):]
    return table[:table.index("\n\n")].splitlines()[2:]


def test_help_and_readme_have_one_source_the_flags_and_the_suites():
    """Every command's --help renders; the README's flag table is `run --help`, both ways, and
    its suite table is the suites --help lists, which are matrix.yaml's and scenarios/'s."""
    import re

    from harness.cli import suites
    from harness.config.matrix import load_matrix

    parser = build_parser()
    commands = next(a for a in parser._subparsers._group_actions).choices
    for command in commands.values():
        assert command.format_help()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = {flag for row in _readme_table(readme, "| flag | applies to | meaning |")
                  for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", row.split("|")[1])}
    run_flags = {o for o in _options("run") if o.startswith("--") and o != "--help"}
    assert documented == run_flags
    listed = {row.split("|")[1].strip().strip("`")
              for row in _readme_table(readme, "| suite | what it proves |")}
    assert listed == set(suites()) == set(load_matrix(None).suites)
    scenario_help = " ".join(_options("run")["--scenario"].split())
    assert all(suite in scenario_help for suite in suites())
    assert "How long it takes" in commands["run"].format_help()  # times live in the README only


def test_plan_takes_every_option_run_takes():
    assert set(_options("run")) - set(_options("plan")) == {"--dry-run"}
    result = cli("plan", "--platform", "local", "--channel", "2.22/stable", "--parallel", "2",
                 "--workers", "1", "--keep", "--keep-on-failure", "--run-id", "x1")
    assert result.returncode == 0, result.stderr
    assert "2 at once" in result.stdout or "1 cell(s)" in result.stdout


@pytest.mark.parametrize(("args", "suggestion"), [
    (["run", "--chanel", "2.22/stable"], "did you mean `--channel` (not `--chanel`)?"),
    (["plan", "--platfrom", "local"], "did you mean `--platform` (not `--platfrom`)?"),
    (["rnu"], "did you mean `run` (not `rnu`)?"),
    (["plan", "--platform", "local", "--channel", "2.22"], "did you mean `2.22/stable`?"),
    (["plan", "--platform", "local", "--channel", "latest"], "did you mean `latest/edge`?"),
])
def test_a_mistyped_flag_command_or_channel_gets_a_suggestion(args, suggestion):
    result = cli(*args)
    assert result.returncode == 2
    assert suggestion in result.stderr


@pytest.mark.parametrize("flag", ["--lf", "--last-failed", "--ff", "--sw"])
def test_pytest_cache_flags_are_refused_before_anything_starts(tmp_path, flag):
    result = cli("run", "--platform", "local", "--channel", "2.22/stable", "--reports-dir",
                 str(tmp_path / "r"), "--", flag)
    assert result.returncode == 2, result.stderr
    assert "needs pytest's cache" in result.stderr and flag in result.stderr
    assert not (tmp_path / "r").exists()
    if flag in ("--lf", "--last-failed", "--ff"):
        assert "run --last-failed" in result.stderr


@pytest.mark.parametrize(("args", "missing"), [
    (["--platform", "microk8s-1.32"], ["the `juju` command is missing", "the `snap` command"]),
    (["--platform", "existing", "--kubeconfig", "/nonexistent/kubeconfig"],
     ["the `juju` command is missing", "the cluster's kubeconfig (/nonexistent/kubeconfig)"]),
])
def test_a_platform_this_machine_cannot_start_is_bad_input_before_anything(tmp_path, args,
                                                                           missing):
    """PATH without juju or snap (the machine as a new user has it): exit 2, nothing created."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sudo",):
        (bare / tool).symlink_to("/bin/true")
    result = cli("run", *args, "--channel", "2.22/stable", "--reports-dir", str(tmp_path / "r"),
                 env={"PATH": f"{bare}:{Path(sys.executable).parent}"})
    assert result.returncode == 2, result.stderr
    for text in missing:
        assert text in result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "r").rglob("*.json"))


def test_up_on_a_platform_without_one_says_why_and_creates_nothing(tmp_path):
    result = cli("up", "--platform", "local", "--reports-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("local: nothing to bring up: local platforms have no "
                                    "platform of their own")
    assert "run --platform local" in result.stdout
    assert not (tmp_path / "r" / "state").exists()


def test_readme_in_30_seconds_shows_what_the_commands_print(tmp_path):
    """The plan lines are the real output (paths as on a user's machine); the run's first line
    has the shape a real run prints (a run of no cells prints it too)."""
    import io
    import re

    from harness.config.matrix import load_matrix
    from harness.run.runner import Progress, Runner, RunOptions

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("### In 30 seconds"):]
    block = block[block.index("```\n") + 4:]
    block = block[:block.index("\n```")].splitlines()
    plan = cli("plan", "--platform", "local", "--channel", "2.22/stable", "--scenario",
               "tracking").stdout.splitlines()[:3]
    assert plan == [line.replace("/home/me/charmed-mlflow-matrix", str(ROOT))
                    for line in block[2:5]]
    shape = re.compile(r"^\[\d\d:\d\d\] run [\w-]+: \d+ cell\(s\), \d+ at once, \d+ pytest-xdist "
                       r"worker\(s\) per cell; reports in \S+; expected to take about \d+m \d\ds "
                       r"\((\d+ of \d+ cell\(s\) measured by earlier runs|no earlier run "
                       r"measured these cells: a guess)\)$")
    (documented,) = [line for line in block if line.startswith("[00:00] run ")]
    assert shape.match(documented), documented
    out = io.StringIO()
    Runner(load_matrix(None), [], RunOptions(reports_dir=tmp_path / "r"),
           progress=Progress(out)).run()
    assert shape.match(out.getvalue().splitlines()[0]), out.getvalue()


def _previous_run(reports: Path, statuses: dict[str, str]) -> None:
    import json

    reports.mkdir(parents=True)
    (reports / "run.json").write_text(json.dumps({
        "run_id": "20261208-010000-abcdef", "status": "finished", "pid": 1,
        "selection": {"platform": ["local"], "channel": ["2.15/stable", "2.22/stable"],
                      "scenario": ["tracking"]},
        "cells": [{"platform": "local", "cell": cell, "status": status}
                  for cell, status in statuses.items()]}))


def test_last_failed_runs_only_what_the_previous_run_did_not_pass(tmp_path):
    reports = tmp_path / "reports"
    _previous_run(reports, {"2.15-stable": "broken", "2.22-stable": "passed"})
    plan = cli("plan", "--last-failed", "--reports-dir", str(reports))
    assert plan.returncode == 0, plan.stderr
    assert "--last-failed: 1 of 2 cell(s) of run 20261208-010000-abcdef did not pass" in plan.stderr
    assert "1 cell(s)" in plan.stdout and "cell 2.15-stable: MLflow 2.15.1" in plan.stdout
    assert "cell 2.22-stable" not in plan.stdout


def test_last_failed_after_a_green_run_or_without_one(tmp_path):
    green = tmp_path / "green"
    _previous_run(green, {"2.15-stable": "passed", "2.22-stable": "known-defect"})
    done = cli("run", "--last-failed", "--reports-dir", str(green))
    assert done.returncode == 0, done.stderr
    assert "nothing to re-run" in done.stderr
    none = cli("run", "--last-failed", "--reports-dir", str(tmp_path / "empty"))
    assert none.returncode == 2
    assert "holds no earlier run" in none.stderr
