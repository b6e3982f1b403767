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
