"""What a cell's results add up to, and what one pytest run executed (its real JUnit file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.statuses import is_not_applicable, result_status
from harness.run.verdicts import cell_verdict, read_junit, run_verdict

SUITE = '''
import pytest

def test_passes():
    pass

def test_not_applicable():
    pytest.skip("not applicable: MLflow 2.22 has no such API")

def test_skipped():
    pytest.skip("no S3 endpoint here")

@pytest.mark.xfail(strict=True)
def test_known_defect():
    assert False
'''


def _junit(tmp_path: Path, body: str, *args: str) -> Path:
    (tmp_path / "test_suite.py").write_text(body)
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}", str(tmp_path / "test_suite.py"), *args],
                   cwd=tmp_path, capture_output=True, timeout=120)
    return junit


def test_a_real_junit_file_tells_executed_from_skipped(tmp_path):
    tally = read_junit(_junit(tmp_path, SUITE))
    assert tally is not None
    assert (tally.tests, tally.executed, tally.skipped, tally.not_applicable) == (4, 2, 2, 1)
    assert not tally.only_not_applicable


def test_exit_0_with_every_test_skipped_is_no_test_ran(tmp_path):
    junit = _junit(tmp_path, SUITE, "-k", "skipped")
    verdict = run_verdict(0, read_junit(junit), what="scenarios x", summary="", log="l",
                          selects=False)
    assert verdict.status == "failed" and "no test ran" in verdict.message


def test_only_not_applicable_is_not_no_test_ran(tmp_path):
    junit = _junit(tmp_path, SUITE, "-k", "not_applicable")
    assert read_junit(junit).only_not_applicable
    assert run_verdict(0, read_junit(junit), what="x", summary="", log="l",
                       selects=False).status == "passed"


def test_an_empty_step_of_a_user_selection_is_not_red():
    assert run_verdict(5, None, what="x", summary="", log="l", selects=True).status == "passed"
    assert run_verdict(5, None, what="x", summary="", log="l", selects=False).status == "failed"


@pytest.mark.parametrize(("message", "expected"), [
    ("Skipped: not applicable: MLflow 2.22 lacks it", True),
    ("scenarios/test_x.py:12: not applicable: MLflow 2.22 lacks it", True),
    ("Skipped: no S3 endpoint; not applicable here?", False),
    ("", False),
])
def test_not_applicable_is_told_by_its_prefix(message, expected):
    assert is_not_applicable(message) is expected


def _result(name, status, message="", **extra):
    return {"name": name, "status": status, "message": message, "suite": "tracking",
            "known": False, "informational": False, **extra}


RESULTS = [_result("a", "passed"), _result("b", "passed"),
           _result("na", "skipped", "Skipped: not applicable: no such API in 2.22"),
           _result("s3", "skipped", "Skipped: this platform exposes no S3 endpoint")]


def test_an_unexpected_skip_makes_a_green_cell_passed_with_skips():
    verdict = cell_verdict(RESULTS, [], "passed", strict=False, ran_scenarios=True)
    assert verdict.status == "passed-with-skips"
    assert verdict.skips == [{"test": "s3", "reason": "this platform exposes no S3 endpoint"}]
    assert verdict.not_applicable == [{"test": "na", "reason": "no such API in 2.22"}]
    assert verdict.counts == {"passed": 2, "not-applicable": 1, "skipped": 1}
    assert "1 skipped: s3 (this platform exposes no S3 endpoint)" in verdict.message


def test_strict_mode_fails_the_cell_on_an_unexpected_skip():
    verdict = cell_verdict(RESULTS, [], "passed", strict=True, ran_scenarios=True)
    assert verdict.status == "failed" and "--strict" in verdict.message


def test_a_skipped_phase_is_a_skip_too():
    phases = [{"name": "restart", "status": "skipped", "message": "restart SKIPPED: external "
               "cannot restart the MLflow server", "known": ""}]
    verdict = cell_verdict(RESULTS[:2], phases, "passed", strict=False, ran_scenarios=True)
    assert verdict.status == "passed-with-skips"
    assert verdict.skips[0]["test"] == "restart phase"


def test_not_applicable_alone_keeps_a_cell_passed():
    verdict = cell_verdict(RESULTS[:3], [], "passed", strict=True, ran_scenarios=True)
    assert verdict.status is None and verdict.skips == []


def test_no_test_ran_is_red_even_when_pytest_said_0():
    verdict = cell_verdict(RESULTS[3:], [], "passed", strict=False, ran_scenarios=True)
    assert verdict.status == "failed" and verdict.message.startswith("no test ran")


def test_known_defects_are_named_and_failures_listed():
    results = [_result("a", "passed"),
               _result("kd", "failed", "XFAIL known defect mlflow-x: summary", known=True,
                       defect="mlflow-x"),
               _result("bad", "broken", "ConnectionResetError: reset by peer")]
    assert result_status(results[1]) == "known-defect"
    verdict = cell_verdict(results, [], "failed", strict=False, ran_scenarios=True)
    assert verdict.known_defects == ["mlflow-x"]
    assert verdict.failed_tests == [{"test": "bad", "status": "broken",
                                     "message": "ConnectionResetError: reset by peer"}]
    assert verdict.status is None  # already failed: nothing worse to say
    green = cell_verdict(results[:2], [], "passed", strict=False, ran_scenarios=True)
    assert green.status == "known-defect" and "mlflow-x" in green.message


@pytest.mark.parametrize("answer", ["", "<html>", "not-a-version"])
def test_an_answer_that_is_no_version_is_never_taken_for_one(answer):
    from harness.config.matrix import adhoc_channel
    from harness.run.verdicts import check_server_version
    from harness.system.endpoint import Endpoint
    from harness.system.errors import InfrastructureError

    endpoint = Endpoint(tracking_uri="http://127.0.0.1:1", mlflow_version=answer,
                        s3_endpoint_url=None, artifact_bucket=None, s3_credentials=None)
    for channel in (adhoc_channel("2.22.0"), adhoc_channel("detect")):
        with pytest.raises(InfrastructureError, match="not an MLflow version"):
            check_server_version(endpoint, channel, "deploy")
