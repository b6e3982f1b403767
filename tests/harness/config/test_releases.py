"""`--mlflow-version`: plain versions, ranges resolved to the newest patch of each minor."""

from __future__ import annotations

import pytest
from packaging.version import Version

from harness.config.releases import latest_patches, resolve_versions
from harness.system.errors import ConfigError

LISTED = [Version(v) for v in ("2.14.3", "2.15.0", "2.15.1", "2.16.0", "2.16.2", "3.0.0rc1",
                                "3.0.0", "3.0.1", "3.1.4", "3.18.0")]


def test_range_is_the_latest_patch_of_each_minor():
    assert resolve_versions([">=2.15,<3.18"], lambda: LISTED) == [
        "2.15.1", "2.16.2", "3.0.1", "3.1.4"]


def test_plain_versions_need_no_lookup_and_are_deduplicated_in_release_order():
    def never():
        raise AssertionError("looked up PyPI for plain versions")

    assert resolve_versions(["3.1.0", "2.15.1", "3.1.0"], never) == ["2.15.1", "3.1.0"]
    assert resolve_versions(["2.15.1", ">=3.1"], lambda: LISTED) == ["2.15.1", "3.1.4", "3.18.0"]


def test_prereleases_are_never_picked():
    assert Version("3.0.1") in latest_patches(LISTED)
    assert all(not v.is_prerelease for v in latest_patches(LISTED))


@pytest.mark.parametrize("value", ["latest", ">=two", ">=4"])
def test_bad_values_are_bad_input(value):
    with pytest.raises(ConfigError):
        resolve_versions([value], lambda: LISTED)


def test_a_minor_is_its_newest_patch_and_the_run_says_which():
    notes: list[str] = []
    assert resolve_versions(["3.1", "2.16", "2.16.0"], lambda: LISTED, notes) == [
        "2.16.0", "2.16.2", "3.1.4"]
    assert notes == ["--mlflow-version 3.1: MLflow 3.1.4, the newest patch of 3.1 on PyPI",
                     "--mlflow-version 2.16: MLflow 2.16.2, the newest patch of 2.16 on PyPI"]
    with pytest.raises(ConfigError, match=r"PyPI lists no final MLflow 3\.2\.x release"):
        resolve_versions(["3.2"], lambda: LISTED)
