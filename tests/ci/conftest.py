"""The matrix as CI sees it: the real matrix.yaml, and the same with three cloud platforms whose
regions and create/delete timeouts the tests choose (the kinds' own traits, other settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.config.matrix import Matrix, Platform, load_matrix
from harness.config.registry import load_provisioner_class

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


@dataclass(frozen=True)
class CloudSettings:
    region: str = ""
    up_timeout: int = 0
    down_timeout: int = 0


def _cloud(name: str, kind: str, settings: CloudSettings) -> Platform:
    traits = load_provisioner_class(kind).traits(settings)
    return Platform(name, kind, settings, kind.upper(), traits)


CLOUD_PLATFORMS = {
    "eks-1.32": _cloud("eks-1.32", "eks", CloudSettings("eu-west-1", 2400, 2700)),
    "aks-1.32": _cloud("aks-1.32", "aks", CloudSettings("westeurope", 1800, 1200)),
    "gke-1.32": _cloud("gke-1.32", "gke", CloudSettings("europe-west1-b", 1800, 1200)),
}


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return load_matrix(ROOT / "matrix.yaml")


@pytest.fixture(scope="session")
def cloud_matrix(matrix: Matrix) -> Matrix:
    return dataclasses.replace(matrix, platforms={**matrix.platforms, **CLOUD_PLATFORMS})


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    if True in data:  # YAML 1.1 reads the key `on` as true
        data["on"] = data.pop(True)
    return data


@pytest.fixture
def nightly() -> dict:
    """.github/workflows/nightly.yaml, parsed afresh (tests may change their copy)."""
    return _load("nightly.yaml")


@pytest.fixture
def pr() -> dict:
    return _load("pr.yaml")


@pytest.fixture
def workflow_texts() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(WORKFLOWS.glob("*.y*ml"))}
