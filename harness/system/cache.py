"""Where the harness keeps what outlives a run (MLflow envs, release lists, cell durations),
and the value every layer passes around for one MLflow env. Standard library only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("MLFLOW_MATRIX_CACHE"):
        return Path(os.environ["MLFLOW_MATRIX_CACHE"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mlflow-matrix"))


@dataclass(frozen=True)
class MlflowEnv:
    """A built virtualenv with one MLflow release: the server and the cell's client run from it."""

    path: Path
    mlflow_version: str

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    def executable(self, name: str) -> Path:
        return self.bin_dir / name
