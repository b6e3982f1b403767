"""Run the selected cells: platforms up once, cells in parallel, everything down at the end.

The runner owns the lifecycle (kubetest2-style): teardown and platform `down` always run,
on success, failure, Ctrl-C and SIGTERM. One cell's phases are in `harness.run.cell`, the pytest
children in `harness.run.scenario_process`, progress lines in `harness.run.progress`.
"""

from __future__ import annotations

import shutil
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
from harness.config.statuses import KNOWN_DEFECT
from harness.reporting.run_folders import finish_run
from harness.run.cell import RESTART_SUITE, STATUS_EXIT, CellOutcome, CellRun, PlatformSlot
from harness.run.cell_steps import context_options
from harness.run.envs import ensure_env
from harness.run.eta import Eta, durations_file, record_durations
from harness.run.interrupts import Interrupts
from harness.run.progress import Progress
from harness.run.scenario_process import SCENARIOS_DIR, SCENARIOS_DIR_ENV, ScenarioProcess, scenarios_root
from harness.run.scheduling import (
    EnvPrebuilder,
    Sizing,
    channels_of,
    duration_key,
    expected_durations,
)
from harness.run.summary import cell_line
from harness.run.summary import render as render_summary
from harness.system import hints
from harness.system.cache import MlflowEnv
from harness.system.errors import EXIT_INTERRUPTED, EXIT_OK, Interrupted
from harness.system.owned import make_owned_dir
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
    selection: tuple[str, ...] = ()  # the pytest args among them that narrow what runs (-k, -m)
    strict: bool = False  # an unexpected skip fails its cell
    # "platform/cell" → {"selected": N, "total": M, "by": [...]} (commands.collection)
    partial: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    provisioner_options: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""
    history: Mapping[tuple[str, str], float] = field(default_factory=dict)  # cell → seconds


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
        self.work_dir = make_owned_dir(self.run_id, "run")
        try:
            self._work_rid = self.state.add("dir", path=str(self.work_dir))
        except BaseException:  # a full disk under the reports dir: leave no temp dir behind
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        self.slots: dict[str, PlatformSlot] = {}
        self.eta = Eta({}, 1)  # run() replaces it with the run's estimate
        self.outcomes: list[CellOutcome] = []
        self.scenarios = ScenarioProcess(matrix, options, self.progress, self.work_dir, self.state)
        self._env_cache: dict[tuple[str, tuple[str, ...]], MlflowEnv] = {}
        self._env_locks: dict[tuple[str, tuple[str, ...]], threading.Lock] = defaultdict(
            threading.Lock)

    # ------------------------------------------------------------ top level

    def run(self) -> int:
        CANCEL.clear()
        expected, measured = expected_durations(self.cells, self.options.history)
        self.eta = Eta(expected, self.options.parallel, measured=measured)
        self.progress(f"run {self.run_id}: {len(self.cells)} cell(s), {self.options.parallel} at "
                      f"once, {self.sizing.describe()}; reports in {self.reports}; "
                      f"{self.eta.describe()}")
        if isinstance(self.progress, Progress):
            self.progress.left = self.eta.left
        counts: dict[str, int] = defaultdict(int)
        for cell in self.cells:
            counts[cell.platform.name] += 1
        for name, count in counts.items():
            platform = self.matrix.platforms[name]
            cls = load_provisioner_class(platform.kind)
            self.slots[name] = PlatformSlot(cls(self._context(platform)), count)
        interrupts = Interrupts(self._abandon).install()
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
        except (KeyboardInterrupt, Interrupted):
            interrupts.first = interrupts.first or time.monotonic()  # a Ctrl-C before install
            self.progress(f"{interrupts.name or 'SIGINT'} received: stopping scenarios and tearing "
                          "down what this run created… (Ctrl-C again to abandon)")
            self._cancel(futures)
        finally:
            interrupts.armed = False
            pool.shutdown(wait=True)
            prebuild.shutdown()
        try:
            self._finish_run(interrupts.interrupted)
        finally:
            interrupts.restore()
        if interrupts.interrupted:
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
        for future in futures:
            future.cancel()
        self.scenarios.stop_all()

    def _abandon(self, signal_name: str) -> str:
        """The last words when the user interrupts the teardown itself."""
        return (f"abandoning the teardown; what is left is recorded in {self.state.path}; "
                f"release it with `{hints.command('janitor', reports_dir=self.reports)}`")

    def _finish_run(self, interrupted: bool) -> None:
        import shutil

        if isinstance(self.progress, Progress):
            self.progress.left = None
        self._record_durations()
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
        lines = [cell_line(o.cell.title, o.status, o.message,
                           self.reports / o.cell.platform.name / o.cell.id, o.log)
                 for o in self.outcomes]
        for line in render_summary(lines, run_id=self.run_id,
                                   duration_s=time.time() - self.started, matrix_page=page):
            self.progress(line)
        if leftover:
            release = hints.command("down", "--run-id", self.run_id, reports_dir=self.reports)
            self.progress(f"{len(leftover)} resource(s) kept (--keep or failed teardown): "
                          f"`{release}` releases them")

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
                    progress=self.progress, state=self.state, cancel=CANCEL)
            return self._env_cache[key]


    def _run_cell(self, cell: Cell) -> CellOutcome:
        key = duration_key(cell)
        self.eta.started(key)
        try:
            return CellRun(self, cell, self.slots[cell.platform.name]).run()
        finally:
            self.eta.finished(key)

    def _record_durations(self) -> None:
        """What each cell took, for the next run's estimate and order (harness.run.eta)."""
        if self.options.pytest_args:  # `-- -k x` runs part of a cell: not its duration
            return
        measured = {duration_key(o.cell): o.finished - o.started for o in self.outcomes
                    if o.finished and o.status not in ("skipped", "interrupted")}
        try:
            record_durations(durations_file(), measured)
        except OSError as exc:  # an estimate is a convenience, never a reason to fail a run
            self.progress(f"could not record cell durations: {exc}")



