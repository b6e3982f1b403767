"""One cached virtualenv per MLflow version (+ its install pins), built with uv.

The same env runs the local MLflow server and the cell's scenario client, so client and server
versions always match. Envs are keyed by everything that goes into them and guarded by a file
lock, so two runs that need the same env build it once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from harness.system.cache import MlflowEnv, cache_root
from harness.system.errors import CommandError, InfrastructureError
from harness.system.procs import run

# What every cell env needs besides MLflow: the scenario runner and its xdist workers, Allure,
# S3 and MySQL clients, the Prometheus exporter the charm's `--expose-prometheus` loads, and a
# model library.
CLIENT_REQUIREMENTS = (
    "pytest>=7",
    "pytest-xdist>=3.5",
    "allure-pytest>=2.13",
    "boto3",
    "pymysql",
    "prometheus-flask-exporter",
    "scikit-learn",
)
# 2: byte-compiled at build time, so the first server and its workers do not each compile MLflow.
ENV_FORMAT = 2


def env_spec(mlflow_version: str, pins: Sequence[str]) -> dict[str, object]:
    return {
        "format": ENV_FORMAT,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "mlflow": mlflow_version,
        "pins": sorted(pins),
        "client": list(CLIENT_REQUIREMENTS),
    }


def env_path(mlflow_version: str, pins: Sequence[str]) -> Path:
    spec = env_spec(mlflow_version, pins)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / "envs" / f"mlflow-{mlflow_version}-py{spec['python']}-{digest}"


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if not found:
        raise InfrastructureError("uv is not installed",
                                  hint="pip install uv (it is a dependency of this project)")
    return found


def ensure_env(mlflow_version: str, pins: Sequence[str], *, timeout: float,
               progress: Callable[[str], None] = lambda _: None) -> MlflowEnv:
    """Return the env for this MLflow version and pins, building it on first use."""
    path = env_path(mlflow_version, pins)
    env = MlflowEnv(path, mlflow_version)
    marker = path / ".mlflow-matrix-ready"
    spec = json.dumps(env_spec(mlflow_version, pins), sort_keys=True)
    if _ready(marker, spec):
        return env
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path) + ".lock", timeout=timeout):
            if _ready(marker, spec):
                return env
            progress(f"building the MLflow {mlflow_version} environment (cached after this run)")
            _build(env, pins, timeout=timeout)
            marker.write_text(spec, encoding="utf-8")
    except Timeout:
        raise InfrastructureError(
            f"another run has been building {path} for over {timeout:.0f}s",
            hint=f"wait for it, or remove {path}.lock if no other mlflow-matrix is running",
        ) from None
    return env


def _ready(marker: Path, spec: str) -> bool:
    try:
        return marker.read_text(encoding="utf-8") == spec
    except OSError:
        return False


def _build(env: MlflowEnv, pins: Sequence[str], *, timeout: float) -> None:
    shutil.rmtree(env.path, ignore_errors=True)
    uv = uv_binary()
    requirements = [f"mlflow=={env.mlflow_version}", *pins, *CLIENT_REQUIREMENTS]
    try:
        run([uv, "venv", "--quiet", "--python", sys.executable, str(env.path)], timeout=120)
        run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(env.python),
             *requirements],
            timeout=timeout)
    except CommandError as exc:
        shutil.rmtree(env.path, ignore_errors=True)
        raise InfrastructureError(
            f"could not install MLflow {env.mlflow_version} with {' '.join(pins) or 'no pins'}"
            f":\n  " + "\n  ".join((exc.stderr or exc.stdout).strip().splitlines()[-8:]),
            hint="check the version exists on PyPI and the install_pins in matrix.yaml",
        ) from None
