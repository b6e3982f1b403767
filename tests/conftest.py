"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# tests/fakes is loaded by path, once: putting tests/ on sys.path would let tests/harness shadow
# the `harness` package under --import-mode=importlib.
if "fakes" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "fakes", Path(__file__).resolve().parent / "fakes" / "__init__.py")
    sys.modules["fakes"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fakes"])


@pytest.fixture
def harness_cmd():
    """`mlflow-matrix` as a subprocess of this interpreter (what `tox -e matrix` runs)."""
    return [sys.executable, "-m", "harness"]


@pytest.fixture
def slow_scenarios(tmp_path: Path) -> Path:
    """A scenarios dir whose tracking suite signals it started, then blocks."""
    root = tmp_path / "scenarios"
    root.mkdir()
    shutil.copy(ROOT / "scenarios" / "pytest.ini", root / "pytest.ini")
    (root / "test_tracking.py").write_text(
        "import os, time, pathlib\n\n"
        "def test_blocks(mlflow_client):\n"
        "    assert mlflow_client.search_experiments()\n"
        "    marker = os.environ.get('SLOW_SCENARIO_MARKER')  # tox passes no such variable\n"
        "    pathlib.Path(marker or pathlib.Path(__file__).parent.parent / 'started')"
        ".write_text('started')\n"
        "    time.sleep(300)\n",
        encoding="utf-8")
    return root


def run_harness(args: list[str], env: dict[str, str] | None = None, timeout: float = 600,
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=ROOT)


@pytest.fixture(autouse=True)
def _outside_tox(monkeypatch):
    """The harness words its hints for the shell it runs in (harness/system/hints.py): under
    `tox -e unit` that would be tox's. Tests see a plain shell; test_hints sets tox's own."""
    for name in [k for k in os.environ if k.startswith("TOX_")]:
        monkeypatch.delenv(name)
