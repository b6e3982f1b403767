"""Known defects: signatures decide what is excused, selectors decide where, the loader validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.defects import Facts, Failure, KnownDefect, Signature, applies, judge, matches_test
from harness.config.matrix import DEFAULT_MATRIX, load_matrix
from harness.system.errors import MatrixFileError


def _defect(**kwargs) -> KnownDefect:
    base = {"id": "d", "link": "https://example.invalid/d", "summary": "s",
            "signature": Signature(exception="AssertionError", message="alias still points"),
            "tests": ("test_x.py::test_y",)}
    return KnownDefect(**{**base, **kwargs})


def _failure(exc: BaseException) -> Failure:
    return Failure.of(exc)


def test_only_a_failure_that_looks_like_the_defect_is_excused():
    defect = _defect()
    assert judge([defect], _failure(AssertionError("the alias still points at v2")),
                 "t").status == "known-defect"
    for other in (KeyError("aliases"), ConnectionError("refused"),
                  AssertionError("expected 3 versions, got 2")):
        judged = judge([defect], _failure(other), "test_y")
        assert judged.status == "failed"
        assert "expected (d): exception AssertionError and message matching /alias still points/" \
            in judged.message
        assert f"actual: builtins.{type(other).__name__}" in judged.message
        assert str(other.args[0]) in judged.message


def test_a_pass_is_xpass_and_red():
    judged = judge([_defect()], None, "test_y")
    assert judged.status == "failed" and "XPASS" in judged.message


def test_exception_names_match_bare_dotted_and_base_classes():
    class RestException(RuntimeError):
        pass

    failure = _failure(RestException("boom"))
    assert Signature(exception="RestException").matches(failure)
    assert Signature(exception="RuntimeError").matches(failure)
    assert Signature(exception=f"{__name__}.RestException").matches(failure)
    assert not Signature(exception="ValueError").matches(failure)
    assert not Signature(exception="Exception", message="bam").matches(failure)


def test_selectors():
    facts = Facts(platform="local-mysql", database="mysql", artifacts="direct",
                  server_versions=("2.22.0",), client_version="2.22.0", channels=("2.22/stable",))
    assert applies(_defect(databases=("mysql",)), facts)
    assert not applies(_defect(databases=("sqlite",)), facts)
    assert not applies(_defect(artifacts=("proxied",)), facts)
    assert applies(_defect(introduced_in="2.22.0"), facts)
    assert not applies(_defect(fixed_in="2.22.0"), facts)
    assert applies(_defect(introduced_in="2.11", fixed_in="3.2"), facts)
    assert not applies(_defect(client=">=3"), facts)
    assert not applies(_defect(upgrades=("2.15/stable:2.22/stable",)), facts)
    upgrade = Facts(upgrade="2.15/stable:2.22/stable", server_versions=("2.15.1", "2.22.0"))
    assert applies(_defect(upgrades=("2.15/stable:2.22/stable",), fixed_in="2.16"), upgrade)
    unknown = Facts(platform="external")
    assert not applies(_defect(databases=("mysql",)), unknown), "unknown facts excuse nothing"
    assert applies(_defect(databases=("mysql",)), unknown, strict=False), "but may apply (list)"


def test_test_globs_take_brackets_and_url_characters_literally():
    short = "test_artifacts.py::test_download_url_special_characters_in_names[query?x=1.txt-client]"
    assert matches_test("test_artifacts.py::test_download_url_special_characters_in_names[query?x=1.txt*",
                        short, "scenarios/" + short)
    assert not matches_test("test_artifacts.py::test_download_url_special_characters_in_names[hash#*",
                            short, "scenarios/" + short)
    assert matches_test("test_tracking.py::test_keys_*", "test_tracking.py::test_keys_a[x]", "")


def _matrix_with(tmp_path: Path, defect: dict) -> Path:
    raw = yaml.safe_load(DEFAULT_MATRIX.read_text())
    raw["known_defects"] = [defect]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"signature": None}, "known_defects[0].signature", "missing required key"),
    ({"signature": {}}, "known_defects[0].signature", "neither `exception` nor `message`"),
    ({"signature": {"message": "(unclosed"}}, "known_defects[0].signature.message",
     "not a valid regex"),
    ({"signature": {"messsage": "x"}}, "known_defects[0].signature.messsage", "did you mean"),
    ({"phases": ["upgrades"]}, "known_defects[0].phases[0]", "unknown lifecycle phase"),
    ({"databases": ["mysql-k8s"]}, "known_defects[0].databases[0]", "write mysql"),
    ({"artifacts": ["s3"]}, "known_defects[0].artifacts[0]", "direct, proxied"),
    ({"fixed_in": "soon"}, "known_defects[0].fixed_in", "is not a version"),
    ({"introduced_in": "3.2", "fixed_in": "3.1"}, "known_defects[0].fixed_in", "not after"),
    ({"client": "three"}, "known_defects[0].client", "not a version range"),
])
def test_bad_entries_are_refused_with_key_and_hint(tmp_path, change, key, words):
    entry = {"id": "x", "link": "https://example.invalid", "summary": "s", "phases": ["upgrade"],
             "signature": {"message": "out-of-date database schema"}}
    entry.update(change)
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(MatrixFileError) as caught:
        load_matrix(_matrix_with(tmp_path, entry))
    text = caught.value.render()
    assert key in text and words in text, text


def test_every_shipped_defect_has_a_signature():
    matrix = load_matrix()
    assert matrix.known_defects
    for defect in matrix.known_defects:
        assert defect.signature.exception or defect.signature.message, defect.id


# ---------------------------------------------------------------- every shipped entry, narrowly
# Per entry of matrix.yaml: the failure its test emits for the defect (measured, or the message
# the test raises only for that shape) and an unrelated failure of the same test, which must stay
# red. A new entry without a row here fails test_every_shipped_entry_has_a_row.

MLFLOW_EXC = ("mlflow.exceptions.MlflowException", "builtins.Exception", "builtins.BaseException")
FAILED = ("_pytest.outcomes.Failed", "_pytest.outcomes.OutcomeException",
          "builtins.BaseException")
ASSERT = ("builtins.AssertionError", "builtins.Exception", "builtins.BaseException")
HTTP_ERROR = ("requests.exceptions.HTTPError", "builtins.OSError", "builtins.Exception",
              "builtins.BaseException")
PHASE = ("harness.system.errors.InfrastructureError", "harness.system.errors.MatrixError",
         "builtins.Exception", "builtins.BaseException")
PARTIAL = ("botocore.exceptions.PartialCredentialsError", "builtins.Exception",
           "builtins.BaseException")


def _f(types: tuple[str, ...], text: str) -> Failure:
    return Failure(types, f"{types[0].rsplit('.', 1)[-1]}: {text}")


FACES: dict[str, tuple[Failure, Failure]] = {
    "charm-2.15-to-2.22-no-db-migration": (
        _f(PHASE, "mlflow-server did not start: Detected out-of-date database schema"),
        _f(PHASE, "mlflow-server did not start: connection refused")),
    "mlflow-dangling-alias-after-version-delete": (
        _f(ASSERT, "the deleted version's alias still points at it: {'champion': '1'}"),
        _f(ASSERT, "expected 2 versions after the delete, found 3")),
    "mlflow-search-model-versions-no-aliases": (
        _f(ASSERT, "search_model_versions lists version 2 without its aliases: []"),
        _f(ASSERT, "search_model_versions found 1 version, expected 2")),
    "mlflow-mysql-collation-merges-keys": (
        _f(ASSERT, "run_tags 'alpha' and 'Alpha' were merged: 'Alpha' replaced 'alpha'; the "
                   "server holds {'alpha': '2'}"),
        # both keys lost: a mismatch, not the collation's face
        _f(ASSERT, "run_tags 'alpha' and 'Alpha': the server holds {}, expected "
                   "{'alpha': '1', 'Alpha': '2'}")),
    "mlflow-mysql-collation-refuses-keys": (
        _f(FAILED, "param 'Alpha' after 'alpha' was refused: (pymysql.err.IntegrityError) "
                   "(1062, \"Duplicate entry 'alpha-abc' for key 'PRIMARY'\")"),
        _f(FAILED, "param 'Alpha' after 'alpha' was refused: RESOURCE_DOES_NOT_EXIST: Run "
                   "'abc' not found")),
    "mlflow-mysql-collation-experiment-names": (
        _f(ASSERT, "get_experiment_by_name('x') found the experiment named 'X'"),
        _f(ASSERT, "get_experiment_by_name('x') returned None")),
    "mlflow-mysql-collation-order-by": (
        _f(ASSERT, "search_runs ordered by params.x sorted by a case-insensitive collation: "
                   "['a', 'B', 'c']"),
        _f(ASSERT, "search_runs ordered by params.x returned 2 runs, expected 3")),
    "mlflow-proxied-empty-file-size-none": (
        _f(ASSERT, "the empty file is listed with size None"),
        _f(ASSERT, "the empty file is not listed: {}")),
    "mlflow-proxied-artifact-path-not-url-encoded": (
        _f(ASSERT, "'hash#fragment.txt' is listed as 'hash': the upload URL did not "
                   "percent-encode the name"),
        _f(ASSERT, "'hash#fragment.txt' is not listed under its own name: {}")),
    "mlflow-proxied-download-non-ascii-name": (
        _f(ASSERT, "only names outside Latin-1 fail to download (HTTPError: 500 Server Error: "
                   "INTERNAL SERVER ERROR for url: …) while 'caf\u00e9.txt' downloads: the "
                   "server cannot send a non-Latin-1 name"),
        _f(HTTP_ERROR, "500 Server Error: INTERNAL SERVER ERROR for url: http://127.0.0.1/"
                       "api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/%E4%BD%A0")),
    "mlflow3-download-artifacts-path-parsed-as-uri": (
        _f(MLFLOW_EXC, "Failed to download artifacts from path 'hash', please ensure that "
                       "the path is correct."),
        # the whole name not found: any failed download says this, not the cut-name face
        _f(MLFLOW_EXC, "Failed to download artifacts from path 'hash#fragment.txt', please "
                       "ensure that the path is correct.")),
    "mlflow3.0-download-artifacts-path-parsed-as-uri": (
        _f(("builtins.TypeError", "builtins.Exception", "builtins.BaseException"),
           "expected str, bytes or os.PathLike object, not NoneType"),
        _f(MLFLOW_EXC, "Failed to download artifacts from path 'hash', please ensure")),
    "mlflow3.1-s3-repo-tracking-uri-as-access-key": (
        _f(PARTIAL, "Partial credentials found in explicit, missing: aws_secret_access_key"),
        _f(("botocore.exceptions.NoCredentialsError", "builtins.Exception",
            "builtins.BaseException"), "Unable to locate credentials")),
    "mlflow3.1-s3-repo-tracking-uri-as-access-key-download": (
        _f(MLFLOW_EXC, "Failed to download artifacts from path 'deep.bin', please ensure"),
        _f(MLFLOW_EXC, "Failed to download artifacts from path 'dir/a.txt', please ensure")),
    "mlflow3.1-s3-repo-tracking-uri-as-access-key-after-restart": (
        _f(FAILED, "the before-restart phase recorded no 'artifacts' section"),
        _f(FAILED, "the before-restart phase recorded no 'tracking' section")),
    "mlflow-ghsa-42h5-prompt-tag-source-bypass": (
        _f(ASSERT, "GHSA-42h5-h8qh-vv9v: MLflow 2.22.0 served the harness's canary from "
                   "outside the artifact root (2 of 2 probes)"),
        # a 500 or a crash is not the measured leak
        _f(ASSERT, "GHSA-42h5-h8qh-vv9v: MLflow 2.22.0 did not refuse the detection request "
                   "with HTTP 400 INVALID_PARAMETER_VALUE (1 of 2 probes): HTTP 500")),
    "mlflow-ghsa-5cvj-source-regex-opt-in": (
        _f(ASSERT, "GHSA-5cvj-7rg6-jggj: MLflow 2.22.0 served the harness's canary from "
                   "outside the artifact root (1 of 1 probes)"),
        _f(ASSERT, "GHSA-5cvj-7rg6-jggj: MLflow 2.22.0 did not refuse the detection request "
                   "with HTTP 400 INVALID_PARAMETER_VALUE (1 of 1 probes): HTTP 500")),
    "juju-refresh-across-bases": (
        _f(PHASE, "mlflow-server runs on ubuntu@20.04, and 2.22/stable is published for "
                  "ubuntu@24.04 only (juju/juju#20830)"),
        _f(PHASE, "juju refresh mlflow-server failed: ERROR cannot acquire lock file")),
    "mlflow-fastapi-cors-allows-any-origin": (
        _f(ASSERT, "CORS: MLflow 3.5.1 grants the foreign origin http://mm-cors-probe.invalid:"
                   "\n  GET experiments/search (HTTP 200)"),
        _f(ASSERT, "CORS validation: MLflow 3.5.1 answered HTTP 200 to a cross-origin POST")),
}


def test_every_shipped_entry_has_a_row():
    shipped = {d.id for d in load_matrix(DEFAULT_MATRIX).known_defects}
    assert shipped == set(FACES), ("add a (face, unrelated failure) row for "
                                   f"{sorted(shipped - set(FACES))}; drop {sorted(set(FACES) - shipped)}")


@pytest.mark.parametrize("defect_id", sorted(FACES))
def test_each_entry_accepts_its_face_and_nothing_else_of_the_same_test(defect_id):
    defect = next(d for d in load_matrix(DEFAULT_MATRIX).known_defects if d.id == defect_id)
    face, unrelated = FACES[defect_id]
    assert judge([defect], face, "t").status == "known-defect"
    judged = judge([defect], unrelated, "t")
    assert judged.status == "failed" and judged.defect is None, judged.message
