"""The matrix as CI sees it: the real matrix.yaml, and the same with the three cloud platforms.

The cloud kinds (eks, aks, gke) come with the cloud platforms issue; until their provisioners are
registered, a cloud platform is added here the way matrix.yaml will hold it (kind, region,
create/delete timeouts), so the generator and the workflow are checked against it today.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.config.matrix import Matrix, Platform, load_matrix

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


@dataclass(frozen=True)
class CloudSettings:
    region: str = ""
    up_timeout: int = 0
    down_timeout: int = 0


CLOUD_PLATFORMS = {
    "eks-1.32": Platform("eks-1.32", "eks", CloudSettings("eu-west-1", 2400, 2700), "EKS"),
    "aks-1.32": Platform("aks-1.32", "aks", CloudSettings("westeurope", 1800, 1200), "AKS"),
    "gke-1.32": Platform("gke-1.32", "gke", CloudSettings("europe-west1-b", 1800, 1200), "GKE"),
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
