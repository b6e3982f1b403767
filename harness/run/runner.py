"""Run the selected cells: platforms up once, cells in parallel, everything down at the end.

The runner owns the lifecycle (kubetest2-style): teardown and platform `down` always run,
on success, failure, Ctrl-C and SIGTERM. One cell's phases are in `harness.run.cell`, the pytest
children in `harness.run.scenario_process`, progress lines in `harness.run.progress`.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.matrix import Cell, Channel, Matrix
from harness.config.registry import load_provisioner_class
from harness.reporting.run_folders import finish_run
from harness.run.cell import KNOWN_DEFECT, RESTART_SUITE, STATUS_EXIT, CellOutcome, CellRun, PlatformSlot
from harness.run.cell_steps import context_options
from harness.run.envs import ensure_env
from harness.run.progress import Progress
from harness.run.scenario_process import SCENARIOS_DIR, SCENARIOS_DIR_ENV, ScenarioProcess, scenarios_root
from harness.run.scheduling import EnvPrebuilder, Sizing, channels_of
from harness.run.summary import CellLine, log_for
from harness.run.summary import render as render_summary
from harness.system.cache import MlflowEnv
from harness.system.errors import EXIT_INTERRUPTED, EXIT_OK, Interrupted
from harness.system.state import RunState, new_run_id
from harness.system.waits import CANCEL
from provisioners.api import RunContext

__all__ = ["KNOWN_DEFECT", "RESTART_SUITE", "SCENARIOS_DIR", "SCENARIOS_DIR_ENV", "STATUS_EXIT",
           "CellOutcome", "Progress", "RunOptions", "Runner", "scenarios_root"]


@dataclass(frozen=True)
class RunOptions:
    reports_dir: Path
    parallel: int = 1
    workers: int = 1
    late_workers: int = 0  # workers for cells whose server answers late (scheduling.Sizing)
    keep: bool = False
    keep_on_failure: bool = False
    pytest_args: tuple[str, ...] = ()
    provisioner_options: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""


class Runner:
    def __init__(self, matrix: Matrix, cells: Sequence[Cell], options: RunOptions,
                 progress: Callable[[str], None] | None = None) -> None:
        self.matrix = matrix
        self.cells = list(cells)
        self.options = options
        self.sizing = Sizing(options.parallel, options.workers,
                             options.late_workers or options.workers)
        self.progress = progress or Progress()
        self.started = time.time()
        self.run_id = options.run_id or new_run_id()
        self.reports = options.reports_dir
        self.state = RunState(self.reports / "state" / f"{self.run_id}.json", self.run_id)
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"mlflow-matrix-{self.run_id}-run-"))
        self._work_rid = self.state.add("dir", path=str(self.work_dir))
        self.slots: dict[str, PlatformSlot] = {}
        self.outcomes: list[CellOutcome] = []
        self.scenarios = ScenarioProcess(matrix, options, self.progress, self.work_dir, self.state)
        self._env_cache: dict[tuple[str, tuple[str, ...]], MlflowEnv] = {}
        self._env_locks: dict[tuple[str, tuple[str, ...]], threading.Lock] = defaultdict(
            threading.Lock)

    # ------------------------------------------------------------ top level

    def run(self) -> int:
        CANCEL.clear()
        self.progress(f"run {self.run_id}: {len(self.cells)} cell(s), {self.options.parallel} at "
                      f"once, {self.sizing.describe()}; reports in {self.reports}")
        counts: dict[str, int] = defaultdict(int)
        for cell in self.cells:
            counts[cell.platform.name] += 1
        for name, count in counts.items():
            platform = self.matrix.platforms[name]
            cls = load_provisioner_class(platform.kind)
            self.slots[name] = PlatformSlot(cls(self._context(platform)), count)
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupted)
        interrupted = False
        envs = channels_of(self.cells)
        prebuild = EnvPrebuilder(self.env_for, envs, concurrency=len(envs)).start()
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                  thread_name_prefix="cell")
        futures: dict[Future[CellOutcome], Cell] = {}
        try:
            futures = {pool.submit(self._run_cell, cell): cell for cell in self.cells}
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            self._collect_crashes(futures)
        except (KeyboardInterrupt, Interrupted) as exc:
            interrupted = True
            name = "SIGTERM" if isinstance(exc, Interrupted) else "SIGINT"
            self.progress(f"{name} received: stopping scenarios and tearing down what this run "
                          "created (Ctrl-C twice more to abandon)")
            self._cancel(futures)
        finally:
            pool.shutdown(wait=True)
            prebuild.shutdown()
            signal.signal(signal.SIGTERM, previous_term)
            if interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        self._finish_run(interrupted)
        if interrupted:
            return EXIT_INTERRUPTED
        return max((STATUS_EXIT[o.status] for o in self.outcomes), default=EXIT_OK)

    def _collect_crashes(self, futures: Mapping[Future[CellOutcome], Cell]) -> None:
        """A cell thread that raised is a broken cell with its cell.json, never a silent pass."""
        for future, cell in futures.items():
            error = None if future.cancelled() else future.exception()
            if error is None:
                continue
            outcome = next((o for o in self.outcomes if o.cell is cell), None)
            if outcome is None:
                outcome = CellOutcome(cell)
                self.outcomes.append(outcome)
            outcome.worsen("broken", f"harness error: the cell's thread raised {error!r}")
            outcome.finished = outcome.finished or time.time()
            self.progress(f"{cell.title}  BROKEN: the cell's thread raised {error!r}")
            try:
                CellRun(self, cell, self.slots[cell.platform.name])._write_cell_summary(
                    outcome, self.reports / cell.platform.name / cell.id)
            except Exception as exc:
                self.progress(f"{cell.title}  could not write cell.json: {exc}")

    def _cancel(self, futures: Mapping[Future[CellOutcome], Cell]) -> None:
        CANCEL.set()
        presses = {"n": 0}

        def on_sigint(signum: int, frame: Any) -> None:
            presses["n"] += 1
            if presses["n"] >= 2:
                print(f"\nabandoning teardown; leftovers are recorded in {self.state.path}; "
                      "run `mlflow-matrix janitor` to release them", file=sys.stderr)
                os._exit(EXIT_INTERRUPTED)
            print("\nstill tearing down; Ctrl-C once more to abandon", file=sys.stderr)

        signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGTERM, on_sigint)
        for future in futures:
            future.cancel()
        self.scenarios.stop_all()

    def _finish_run(self, interrupted: bool) -> None:
        import shutil

        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.state.release(self._work_rid)
        leftover = self.state.resources()
        self.state.finish("interrupted" if interrupted else "finished")
        summary = [{"platform": o.cell.platform.name, "cell": o.cell.id, "status": o.status}
                   for o in self.outcomes]
        finish_run(self.reports, self.run_id, interrupted=interrupted, cells=summary)
        page: Path | None = self.reports / "matrix.md"
        try:
            from harness.reporting.matrix_page import write_matrix_page

            write_matrix_page(self.reports, self.matrix)
        except Exception as exc:  # a report bug must not hide the run's own result
            self.progress(f"could not write the matrix page: {exc}")
            page = None
        lines = [CellLine(o.cell.title, o.status, o.message,
                          log_for(self.reports / o.cell.platform.name / o.cell.id, o.log))
                 for o in self.outcomes]
        for line in render_summary(lines, run_id=self.run_id,
                                   duration_s=time.time() - self.started, matrix_page=page):
            self.progress(line)
        if leftover:
            self.progress(f"{len(leftover)} resource(s) kept (--keep or failed teardown): "
                          f"`mlflow-matrix down --run-id {self.run_id}` releases them")

    def _context(self, platform: Any) -> RunContext:
        options = context_options(self.matrix, self.options.provisioner_options)
        return RunContext(run_id=self.run_id, platform=platform,
                          work_dir=self.work_dir / platform.name, state=self.state,
                          env_for=self.env_for, options=options)

    def env_for(self, channel: Channel) -> MlflowEnv:
        pins = self.matrix.requirements_for(channel)
        key = (channel.mlflow_version, pins)
        with self._env_locks[key]:
            if key not in self._env_cache:
                self._env_cache[key] = ensure_env(
                    channel.mlflow_version, pins, timeout=self.matrix.timeouts.env_build,
                    progress=self.progress)
            return self._env_cache[key]


    def _run_cell(self, cell: Cell) -> CellOutcome:
        return CellRun(self, cell, self.slots[cell.platform.name]).run()


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted("SIGTERM")

