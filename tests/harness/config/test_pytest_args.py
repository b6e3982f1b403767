"""Pytest arguments after `--`: what overrides the harness is refused (exit 2) before anything
starts; what narrows the run is kept as the run's selection."""

from __future__ import annotations

import time

import pytest

from harness.cli import main
from harness.config.pytest_args import check_pytest_args
from harness.system.errors import EXIT_BAD_INPUT, ConfigError

REFUSED = [
    ["--co"], ["--collect-only"], ["--setup-plan"], ["--fixtures"], ["--help"],
    ["--junitxml=/tmp/out.xml"], ["--junitxml", "/tmp/out.xml"], ["--junit-xml=x.xml"],
    ["--alluredir", "/tmp/a"], ["--alluredir=/tmp/a"], ["--clean-alluredir"],
    ["-p", "no:harness.incell.plugin"], ["-pno:harness.incell.plugin"],
    ["-p", "no:allure_pytest"], ["-p", "no:xdist"], ["-p", "cacheprovider"],
    ["--lf"], ["--last-failed"], ["--ff"], ["--sw"], ["--cache-clear"],
    ["-c", "other.ini"], ["--rootdir=/"], ["-n", "8"], ["--numprocesses=8"], ["--pdb"],
    ["scenarios/test_tracking.py::test_x"], ["-k"],
]


@pytest.mark.parametrize("args", REFUSED, ids=lambda a: " ".join(a))
def test_arguments_that_override_the_harness_are_refused(args):
    with pytest.raises(ConfigError) as info:
        check_pytest_args(args)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.hint


@pytest.mark.parametrize(("args", "selection"), [
    (["-k", "search"], ("-k search",)),
    (["-ksearch"], ("-ksearch",)),
    (["-m", "not large", "-x", "-v"], ("-m not large",)),
    (["--deselect", "test_tracking.py::test_a", "--tb=short"],
     ("--deselect test_tracking.py::test_a",)),
    (["-x", "--maxfail=2", "-p", "no:randomly", "-W", "error"], ()),
])
def test_narrowing_arguments_are_the_selection(args, selection):
    parsed = check_pytest_args(args)
    assert parsed.selection == selection
    assert parsed.selects == bool(selection)


@pytest.mark.parametrize("extra", [["--co"], ["--junitxml=/tmp/x.xml"], ["--lf"]])
def test_run_refuses_them_in_a_second_before_anything_deploys(tmp_path, capsys, extra):
    start = time.monotonic()
    code = main(["run", "--platform", "local", "--channel", "2.22/stable", "--reports-dir",
                 str(tmp_path / "reports"), "--", *extra])
    assert code == EXIT_BAD_INPUT
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert f"pytest argument `{extra[0]}" in err
    assert not (tmp_path / "reports").exists()  # nothing started, nothing written
