"""A small reports tree made of real cell results (tests/harness/reporting/data/reports, see README)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data" / "reports"
ROOT = Path(__file__).resolve().parents[3]

# what each fixture cell ended as (cell.json `status`) and why it is in the set
EXPECTED = {
    "local/2.15-stable": "passed",
    "local/2.22-stable": "failed",            # test_demo::test_deliberate_failure, server log attached
    "local/latest-edge": "broken",            # pytest could not start (bad option): harness error
    "local-bad-s3/2.22-stable": "broken",     # deploy failed (S3 rejects the bucket): infrastructure
    "local-mysql/2.15-stable": "skipped",     # no MariaDB: skipped with the install hint
    "local-mysql/2.22-stable": "known-defect",  # the deliberate failure is known defect DEMO-1 (xfail)
    "local-mysql/latest-edge": "passed",
}


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A fresh copy of the fixture tree: reports/<platform>/<cell>/{cell.json,allure-results,…}."""
    target = tmp_path / "reports"
    shutil.copytree(DATA, target)
    return target


def cell_json(reports: Path, column: str) -> dict:
    return json.loads((reports / column / "cell.json").read_text(encoding="utf-8"))
