"""The scenarios of one cell phase, as a pytest child process with the client's MLflow env.

The child gets the endpoint and the cell through environment variables (harness.system.endpoint), a
PYTHONPATH holding only `harness`, and none of the harness's own credentials (cloud, S3).
It runs in its own session under a deadline (timeouts.scenarios), recorded in the run state.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
from harness.config.defects import KnownDefect
from harness.config.matrix import Cell, Matrix, cell_facts
from harness.run.cell_steps import log_path, pytest_argv, suite_files
from harness.run.verdicts import pytest_verdict
from harness.system.cache import MlflowEnv
from harness.system.endpoint import (
    CELL_ENV,
    DEFECTS_ENV,
    MANIFEST_ENV,
    PHASE_ENV,
    SERVER_LOG_ENV,
    WITH_PHASE_ENV,
    CellInfo,
    Endpoint,
)
from harness.system.errors import (
    Interrupted,
    MatrixError,
)
from harness.system.procs import stop_group
from harness.system.redact import redact
from harness.system.state import RunState
from harness.system.waits import CANCEL
from provisioners.api import (
    Deployment,
)

if TYPE_CHECKING:
    from harness.run.cell import CellOutcome
    from harness.run.runner import RunOptions

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
SCENARIOS_DIR_ENV = "MLFLOW_MATRIX_SCENARIOS_DIR"
# never handed to a cell: the harness's own credentials (cloud, S3) and tool state
CHILD_ENV_DROP_PREFIXES = ("TOX_", "MLFLOW_MATRIX_", "PYTEST_", "AWS_", "AZURE_", "ARM_",
                           "GOOGLE_", "CLOUDSDK_", "GCE_", "GCLOUD_")


class ScenarioProcess:
    """Runs the pytest children of one run's cells; `stop_all` ends them on Ctrl-C."""

    def __init__(self, matrix: Matrix, options: RunOptions, progress: Callable[[str], None],
                 work_dir: Path, state: RunState) -> None:
        self.matrix = matrix
        self.options = options
        self.progress = progress
        self.work_dir = work_dir
        self.state = state
        self._children: set[int] = set()
        self._children_lock = threading.Lock()

    def stop_all(self) -> None:
        with self._children_lock:
            children = list(self._children)
        for pgid in children:
            stop_group(pgid, timeout=10)

    def run(self, outcome: CellOutcome, env: MlflowEnv, endpoint: Endpoint, cell_dir: Path,
            suites: Sequence[str], *, phase: str | None, deployment: Deployment,
            manifest: Path | None = None, informational: bool = False,
            serial: bool = False, with_phase: str | None = None, workers: int = 1) -> None:
        cell = outcome.cell
        scenarios_dir = scenarios_root()
        missing = [f for f in suite_files(scenarios_dir, suites) if not Path(f).is_file()]
        if missing:
            raise MatrixError(f"scenario module missing: {', '.join(missing)}",
                              hint="check `scenarios:` in matrix.yaml against scenarios/")
        log = log_path(cell_dir, phase, serial)
        # the same command line `plan` prints
        argv = pytest_argv(str(env.python), scenarios_dir, suites, cell_dir, phase,
                           self.options.pytest_args, workers=workers,
                           serial=serial)
        child_env = self._child_env(env, endpoint, cell, phase, manifest, informational,
                                    deployment)
        if with_phase:
            child_env[WITH_PHASE_ENV] = with_phase
        what = f"scenarios {', '.join(suites)}" + (f" [{phase}]" if phase else
                                                    " [alone]" if serial else
                                                    f" [+{with_phase}]" if with_phase else "")
        self.progress(f"{cell.title}  {what} with MLflow {env.mlflow_version} client… "
                      f"(log: {log})")
        t0 = time.monotonic()
        code = self._run_child(argv, child_env, log)
        summary = _pytest_summary(log)
        self.progress(f"{cell.title}  {what}: {summary} ({time.monotonic() - t0:.0f}s)")
        if CANCEL.is_set():
            raise Interrupted()
        if code == 0:
            return
        if informational:
            self.progress(f"{cell.title}  {what} is informational (cross-version client); "
                          "not counted against the cell")
            return
        verdict = pytest_verdict(code, what, summary, str(log))
        outcome.worsen(verdict.status, verdict.message, log=log)

    def _child_env(self, env: MlflowEnv, endpoint: Endpoint, cell: Cell, phase: str | None,
                   manifest: Path | None, informational: bool,
                   deployment: Deployment) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "MLFLOW_TRACKING_URI")
                and not k.startswith(CHILD_ENV_DROP_PREFIXES)}
        shim = self._pythonpath()
        info = CellInfo(
            platform=cell.platform.name, cell=cell.id, channel=cell.channel_label,
            mlflow_version=endpoint.mlflow_version, platform_kind=cell.platform.kind,
            database=cell.platform.database)
        facts = cell_facts(cell, server_versions=(endpoint.mlflow_version,),
                           client_version=env.mlflow_version,
                           artifacts=endpoint.artifact_mode or None)
        defects = [d.to_dict() for d in self.matrix.defects_for(cell, facts) if d.tests]
        child = {**base, **endpoint.child_env(), CELL_ENV: info.to_json(),
                 DEFECTS_ENV: json.dumps(defects), "PYTHONPATH": str(shim),
                 "PATH": f"{env.bin_dir}:{base.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                 "MLFLOW_MATRIX_CLIENT_VERSION": env.mlflow_version,
                 "MLFLOW_MATRIX_INFORMATIONAL": "1" if informational else ""}
        if deployment.server_log is not None:
            child[SERVER_LOG_ENV] = str(deployment.server_log)
        if phase:
            child[PHASE_ENV] = phase
        if manifest:
            child[MANIFEST_ENV] = str(manifest)
        return child

    def _pythonpath(self) -> Path:
        """A dir holding only `harness`, for the cell env's PYTHONPATH (nothing else leaks in)."""
        shim = self.work_dir / "pythonpath"
        with self._children_lock:
            if not (shim / "harness").exists():
                shim.mkdir(parents=True, exist_ok=True)
                (shim / "harness").symlink_to(Path(harness.__file__).resolve().parent)
        return shim

    def _run_child(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.matrix.timeouts.scenarios
        with open(log, "w", encoding="utf-8") as out:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, text=True,
                                    errors="replace", start_new_session=True)
            rid = self.state.add("process", name="pytest", pid=proc.pid, pgid=proc.pid,
                                 argv=argv[:3])
            with self._children_lock:
                self._children.add(proc.pid)
            timer = threading.Timer(max(1.0, deadline - time.monotonic()),
                                    lambda: stop_group(proc.pid, timeout=10))
            timer.start()
            try:
                assert proc.stdout
                for line in proc.stdout:
                    out.write(redact(line))
                    out.flush()
                code = proc.wait()
            finally:
                timer.cancel()
                with self._children_lock:
                    self._children.discard(proc.pid)
                if proc.poll() is None:
                    stop_group(proc.pid, timeout=10)
                self.state.release(rid)
        if time.monotonic() > deadline:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"\nmlflow-matrix: scenarios stopped after the "
                          f"{self.matrix.timeouts.scenarios}s deadline (timeouts.scenarios)\n")
            return 3
        return code


def scenarios_root() -> Path:
    """The scenario suites: the project's own, or another directory of the same shape."""
    return Path(os.environ.get(SCENARIOS_DIR_ENV) or SCENARIOS_DIR)


def defect_dict(defect: KnownDefect | None) -> dict[str, Any] | None:
    if defect is None:
        return None
    return defect.to_dict()


def _pytest_summary(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    for line in reversed(lines):
        if (" passed" in line or " failed" in line or " error" in line or " skipped" in line
                or "no tests ran" in line) and " in " in line:
            return line.strip("= ")
    return lines[-1][:200] if lines else "no output"
