"""Every test here runs with the fake Juju-side CLIs on PATH (a machine that has juju, as the
platforms' prerequisites require: `run`/`up` refuse to start without it). Tests that script the
fakes create their own `FakeCluster`, whose bin dir then comes first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.cluster import FakeCluster


@pytest.fixture(autouse=True)
def juju_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    yield FakeCluster(tmp_path / "machine-clis").activate(monkeypatch)
