"""Run cells: provision → environment → deploy → scenarios → collect → teardown.

The runner owns the lifecycle (kubetest2-style): teardown and platform `down` always run,
on success, failure, Ctrl-C and SIGTERM; every phase becomes an Allure result of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness.endpoint import (
    CELL_ENV,
    DEFECTS_ENV,
    MANIFEST_ENV,
    PHASE_ENV,
    SERVER_LOG_ENV,
    CellInfo,
    Endpoint,
)
from harness.envs import MlflowEnv, ensure_env
from harness.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCENARIO_FAILED,
    CellSkipped,
    Interrupted,
    MatrixError,
)
from harness.matrix import DETECT, Cell, Channel, KnownDefect, Matrix, adhoc_channel
from harness.procs import stop_group
from harness.redact import redact, redact_tree
from harness.registry import load_provisioner_class
from harness.reporting.allure_results import (
    PhaseResult,
    clear_results,
    now_ms,
    read_statuses,
    write_phase_result,
)
from harness.reporting.enrich import enrich_cell
from harness.state import RunState, new_run_id
from harness.waits import CANCEL
from provisioners.api import (
    Deployment,
    Provisioner,
    Restartable,
    RunContext,
    Substrate,
    Upgradable,
)

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SCENARIOS_DIR_ENV = "MLFLOW_MATRIX_SCENARIOS_DIR"
RESTART_SUITE = "persistence"
KNOWN_DEFECT = "known-defect"
STATUS_EXIT = {"passed": EXIT_OK, "skipped": EXIT_OK, KNOWN_DEFECT: EXIT_OK,
               "failed": EXIT_SCENARIO_FAILED,
               "broken": EXIT_INFRASTRUCTURE, "interrupted": EXIT_INTERRUPTED}


@dataclass(frozen=True)
class RunOptions:
    reports_dir: Path
    parallel: int = 1
    keep: bool = False
    keep_on_failure: bool = False
    pytest_args: tuple[str, ...] = ()
    provisioner_options: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""


@dataclass
class CellOutcome:
    cell: Cell
    status: str = "passed"
    phases: list[PhaseResult] = field(default_factory=list)
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    kept: bool = False

    def worsen(self, status: str, message: str = "") -> None:
        order = ["passed", "skipped", KNOWN_DEFECT, "failed", "broken", "interrupted"]
        if order.index(status) > order.index(self.status):
            self.status = status
            if message:
                self.message = message


class Progress:
    """One line per phase start/end with elapsed run time; safe from several threads."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.t0)
        with self.lock:
            print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {redact(text)}", file=self.stream,
                  flush=True)


class _PlatformSlot:
    """Brings a platform up once for all its cells and down after the last one."""

    def __init__(self, provisioner: Provisioner, cells: int) -> None:
        self.provisioner = provisioner
        self.remaining = cells
        self.lock = threading.Lock()
        self.substrate: Substrate | None = None
        self.error: BaseException | None = None
        self.started = False
        self.duration = 0.0
        self.keep = False

    def up(self) -> Substrate:
        with self.lock:
            if not self.started:
                self.started = True
                t0 = time.monotonic()
                try:
                    self.substrate = self.provisioner.up()
                except BaseException as exc:
                    self.error = exc
                self.duration = time.monotonic() - t0
            if self.error:
                raise self.error
            assert self.substrate
            return self.substrate


class Runner:
    def __init__(self, matrix: Matrix, cells: Sequence[Cell], options: RunOptions,
                 progress: Callable[[str], None] | None = None) -> None:
        self.matrix = matrix
        self.cells = list(cells)
        self.options = options
        self.progress = progress or Progress()
        self.run_id = options.run_id or new_run_id()
        self.reports = options.reports_dir
        self.state = RunState(self.reports / "state" / f"{self.run_id}.json", self.run_id)
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"mlflow-matrix-{self.run_id}-run-"))
        self._work_rid = self.state.add("dir", path=str(self.work_dir))
        self.slots: dict[str, _PlatformSlot] = {}
        self.outcomes: list[CellOutcome] = []
        self._children: set[int] = set()
        self._children_lock = threading.Lock()
        self._env_cache: dict[tuple[str, tuple[str, ...]], MlflowEnv] = {}
        self._env_locks: dict[tuple[str, tuple[str, ...]], threading.Lock] = defaultdict(
            threading.Lock)

    # ------------------------------------------------------------ top level

    def run(self) -> int:
        CANCEL.clear()
        self.progress(f"run {self.run_id}: {len(self.cells)} cell(s), reports in {self.reports}")
        counts: dict[str, int] = defaultdict(int)
        for cell in self.cells:
            counts[cell.platform.name] += 1
        for name, count in counts.items():
            platform = self.matrix.platforms[name]
            cls = load_provisioner_class(platform.kind)
            self.slots[name] = _PlatformSlot(cls(self._context(platform)), count)
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupted)
        interrupted = False
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                  thread_name_prefix="cell")
        futures: dict[Future[CellOutcome], Cell] = {}
        try:
            futures = {pool.submit(self._run_cell, cell): cell for cell in self.cells}
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        except (KeyboardInterrupt, Interrupted) as exc:
            interrupted = True
            name = "SIGTERM" if isinstance(exc, Interrupted) else "SIGINT"
            self.progress(f"{name} received: stopping scenarios and tearing down what this run "
                          "created (Ctrl-C twice more to abandon)")
            self._cancel(futures)
        finally:
            pool.shutdown(wait=True)
            signal.signal(signal.SIGTERM, previous_term)
            if interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        self._finish_run(interrupted)
        if interrupted:
            return EXIT_INTERRUPTED
        return max((STATUS_EXIT[o.status] for o in self.outcomes), default=EXIT_OK)

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
        with self._children_lock:
            children = list(self._children)
        for pgid in children:
            stop_group(pgid, timeout=10)

    def _finish_run(self, interrupted: bool) -> None:
        import shutil

        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.state.release(self._work_rid)
        leftover = self.state.resources()
        self.state.finish("interrupted" if interrupted else "finished")
        summary = [{"platform": o.cell.platform.name, "cell": o.cell.id, "status": o.status}
                   for o in self.outcomes]
        (self.reports / "runs").mkdir(parents=True, exist_ok=True)
        (self.reports / "runs" / f"{self.run_id}.json").write_text(
            json.dumps({"run_id": self.run_id, "interrupted": interrupted, "cells": summary},
                       indent=2), encoding="utf-8")
        try:
            from harness.reporting.matrix_page import write_matrix_page

            write_matrix_page(self.reports, self.matrix)
        except Exception as exc:  # a report bug must not hide the run's own result
            self.progress(f"could not write the matrix page: {exc}")
        tally: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            tally[outcome.status] += 1
        self.progress("done: " + ", ".join(f"{n} {s}" for s, n in sorted(tally.items()))
                      + f"; matrix: {self.reports / 'matrix.md'}")
        if leftover:
            self.progress(f"{len(leftover)} resource(s) kept (--keep or failed teardown): "
                          f"`mlflow-matrix down --run-id {self.run_id}` releases them")

    def _context(self, platform: Any) -> RunContext:
        timeouts = self.matrix.timeouts
        options = {"server_start_timeout": timeouts.server_start,
                   "deploy_timeout": timeouts.deploy, "teardown_timeout": timeouts.teardown,
                   **self.options.provisioner_options}
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

    # ------------------------------------------------------------ one cell

    def _run_cell(self, cell: Cell) -> CellOutcome:
        outcome = CellOutcome(cell)
        self.outcomes.append(outcome)
        cell_dir = self.reports / cell.platform.name / cell.id
        results = cell_dir / "allure-results"
        clear_results(results)
        for stale in ("diagnostics",):
            import shutil

            shutil.rmtree(cell_dir / stale, ignore_errors=True)
        slot = self.slots[cell.platform.name]
        deployment: Deployment | None = None
        try:
            if CANCEL.is_set():
                raise Interrupted()
            substrate = self._phase(outcome, "provision", slot.up)
            deployment = slot.provisioner.deployment(substrate, cell_dir)
            channels = [cell.channel] + ([cell.upgrade_to] if cell.upgrade_to else [])
            for channel in channels:
                if channel.mlflow_version != DETECT:
                    self._environment(outcome, channel)
            endpoint = self._phase(outcome, "deploy", lambda: deployment.deploy(cell.channel))
            outcome.versions["mlflow_server"] = endpoint.mlflow_version
            if cell.upgrade_to:
                self._upgrade_steps(outcome, deployment, endpoint, cell_dir)
            else:
                self._scenario_steps(outcome, deployment, endpoint, cell_dir)
        except CellSkipped as exc:
            outcome.worsen("skipped", exc.render().replace("error: ", "", 1))
            self.progress(f"{cell.title}  skipped: {exc.message}"
                          + (f" ({exc.hint})" if exc.hint else ""))
        except Interrupted:
            outcome.worsen("interrupted", "interrupted")
        except _PhaseFailed:
            pass
        except Exception as exc:  # a harness bug: report it as broken, keep other cells going
            outcome.worsen("broken", f"harness error: {exc}")
            self.progress(f"{cell.title}  harness error: {exc}\n{traceback.format_exc()}")
        finally:
            self._close_cell(outcome, deployment, slot, cell_dir)
        return outcome

    def _close_cell(self, outcome: CellOutcome, deployment: Deployment | None,
                    slot: _PlatformSlot, cell_dir: Path) -> None:
        """Collect, tear down, write results; a bug here still leaves a cell.json behind."""
        cell = outcome.cell
        results = cell_dir / "allure-results"
        try:
            self._collect(outcome, deployment, slot, cell_dir)
        finally:
            self._teardown(outcome, deployment, slot)
        outcome.finished = time.time()
        try:
            for phase in outcome.phases:
                write_phase_result(results, cell, phase)
            redact_tree(cell_dir)
        except Exception as exc:
            outcome.worsen("broken", f"harness error while writing results: {exc}")
            self.progress(f"{cell.title}  harness error while writing results: {exc}\n"
                          f"{traceback.format_exc()}")
        try:
            self._write_cell_summary(outcome, cell_dir)
        except Exception as exc:
            outcome.worsen("broken", f"harness error while summarising the cell: {exc}")
            (cell_dir / "cell.json").write_text(json.dumps({
                "run_id": self.run_id, "platform": cell.platform.name, "cell": cell.id,
                "channel": cell.channel_label, "mlflow_version": cell.mlflow_label,
                "status": outcome.status, "message": redact(outcome.message), "counts": {},
                "phases": [], "tests": [], "duration_s": 0.0}), encoding="utf-8")
        enrich_cell(cell_dir)  # Allure environment/categories/executor; never raises
        self.progress(f"{cell.title}  {outcome.status.upper()}"
                      f" ({outcome.finished - outcome.started:.0f}s)"
                      + (f": {outcome.message}" if outcome.status not in ("passed",)
                         and outcome.message else ""))

    def _phase(self, outcome: CellOutcome, name: str, action: Callable[[], Any], *,
               label: str | None = None, attach: Callable[[], list[Path]] | None = None) -> Any:
        """Run one lifecycle phase and record it; infrastructure errors end the cell."""
        cell = outcome.cell
        defect = self._phase_defect(cell, name)
        self.progress(f"{cell.title}  {label or name}…")
        start = now_ms()
        try:
            value = action()
        except CellSkipped as exc:
            outcome.phases.append(PhaseResult(name, "skipped", start, now_ms(), exc.render()))
            raise
        except Interrupted:
            outcome.phases.append(PhaseResult(name, "broken", start, now_ms(), "interrupted"))
            raise
        except MatrixError as exc:
            attachments = attach() if attach else []
            status = "skipped" if defect else "broken"
            message = exc.render()
            if defect:
                message = f"known defect {defect.id}: {defect.summary}\n{message}"
            outcome.phases.append(PhaseResult(name, status, start, now_ms(), message,
                                              attachments=attachments,
                                              known_defect=_defect_dict(defect)))
            self.progress(f"{cell.title}  {name} FAILED" + (" (known defect)" if defect else "")
                          + f": {exc.message.splitlines()[0]}")
            outcome.worsen("broken" if not defect else KNOWN_DEFECT, message.splitlines()[0])
            raise _PhaseFailed() from exc
        except Exception as exc:
            outcome.phases.append(PhaseResult(name, "broken", start, now_ms(),
                                              f"harness error in {name}: {exc}",
                                              trace=traceback.format_exc()))
            outcome.worsen("broken", f"harness error in {name}: {exc}")
            self.progress(f"{cell.title}  {name} harness error: {exc}")
            raise _PhaseFailed() from exc
        stop = now_ms()
        if defect:
            outcome.phases.append(PhaseResult(
                name, "failed", start, stop,
                f"known defect {defect.id} no longer reproduces: {name} passed. Remove it from "
                "known_defects in matrix.yaml.", known_defect=_defect_dict(defect)))
            outcome.worsen("failed", f"{name} passed although known defect {defect.id} says "
                           "it fails (XPASS)")
        else:
            outcome.phases.append(PhaseResult(name, "passed", start, stop))
        self.progress(f"{cell.title}  {label or name} ok ({(stop - start) / 1000:.1f}s)")
        return value

    def _phase_defect(self, cell: Cell, phase: str) -> KnownDefect | None:
        for defect in self.matrix.defects_for(cell):
            if phase in defect.phases:
                return defect
        return None

    def _environment(self, outcome: CellOutcome, channel: Channel) -> MlflowEnv:
        return self._phase(outcome, "environment", lambda: self.env_for(channel),
                           label=f"MLflow {channel.mlflow_version} environment")

    def _client_env(self, outcome: CellOutcome, endpoint: Endpoint) -> MlflowEnv:
        """The client must match the server: use the version the server reports."""
        channel = outcome.cell.channel
        if endpoint.mlflow_version != channel.mlflow_version:
            channel = adhoc_channel(endpoint.mlflow_version)
            return self._environment(outcome, channel)
        return self.env_for(channel)

    def _scenario_steps(self, outcome: CellOutcome, deployment: Deployment, endpoint: Endpoint,
                        cell_dir: Path) -> None:
        cell = outcome.cell
        env = self._client_env(outcome, endpoint)
        self._pytest(outcome, env, endpoint, cell_dir, cell.scenarios, phase=None,
                     deployment=deployment)
        if RESTART_SUITE in cell.scenarios:
            if not isinstance(deployment, Restartable):
                self.progress(f"{cell.title}  {RESTART_SUITE}: this platform cannot restart "
                              "the server; restart checks skipped")
                return
            manifest = cell_dir / "persistence-manifest.json"
            self._pytest(outcome, env, endpoint, cell_dir, (RESTART_SUITE,),
                         phase="before-restart", manifest=manifest, deployment=deployment)
            endpoint = self._phase(outcome, "restart", deployment.restart,
                                   attach=lambda: _collect_to(deployment, cell_dir))
            self._pytest(outcome, env, endpoint, cell_dir, (RESTART_SUITE,),
                         phase="after-restart", manifest=manifest, deployment=deployment)

    def _upgrade_steps(self, outcome: CellOutcome, deployment: Deployment, endpoint: Endpoint,
                       cell_dir: Path) -> None:
        cell = outcome.cell
        assert cell.upgrade_to
        if not isinstance(deployment, Upgradable):
            raise CellSkipped(f"{cell.platform.name} cannot upgrade a deployment")
        manifest = cell_dir / "upgrade-manifest.json"
        source_env, target_env = self.env_for(cell.channel), self.env_for(cell.upgrade_to)
        self._pytest(outcome, source_env, endpoint, cell_dir, cell.scenarios,
                     phase="before-upgrade", manifest=manifest, deployment=deployment)
        if outcome.status != "passed":
            self.progress(f"{cell.title}  seeding failed; not upgrading")
            return
        target = cell.upgrade_to
        endpoint = self._phase(outcome, "upgrade", lambda: deployment.upgrade(target),
                               label=f"upgrade to {target.name}",
                               attach=lambda: _collect_to(deployment, cell_dir))
        outcome.versions["mlflow_server"] = endpoint.mlflow_version
        self._pytest(outcome, target_env, endpoint, cell_dir, cell.scenarios,
                     phase="after-upgrade", manifest=manifest, deployment=deployment)
        self._pytest(outcome, source_env, endpoint, cell_dir, cell.scenarios,
                     phase="old-client", manifest=manifest, deployment=deployment,
                     informational=True)

    def _pytest(self, outcome: CellOutcome, env: MlflowEnv, endpoint: Endpoint, cell_dir: Path,
                suites: Sequence[str], *, phase: str | None, deployment: Deployment,
                manifest: Path | None = None, informational: bool = False) -> None:
        cell = outcome.cell
        scenarios_dir = scenarios_root()
        files = [str(scenarios_dir / f"test_{suite}.py") for suite in suites]
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise MatrixError(f"scenario module missing: {', '.join(missing)}",
                              hint="check `scenarios:` in matrix.yaml against scenarios/")
        results = cell_dir / "allure-results"
        log = cell_dir / f"pytest{'-' + phase if phase else ''}.log"
        argv = [str(env.python), "-m", "pytest", *files, "-p", "harness.plugin",
                "-c", str(scenarios_dir / "pytest.ini"), "--rootdir", str(scenarios_dir),
                "--alluredir", str(results), "-p", "no:cacheprovider", "-q", "-rfEX",
                f"--junitxml={cell_dir / ('junit' + ('-' + phase if phase else '') + '.xml')}",
                *self.options.pytest_args]
        child_env = self._child_env(env, endpoint, cell, phase, manifest, informational,
                                    deployment)
        what = f"scenarios {', '.join(suites)}" + (f" [{phase}]" if phase else "")
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
        if code == 1:
            outcome.worsen("failed", f"{what}: {summary}")
        elif code == 5:
            outcome.worsen("skipped", f"{what}: no scenario selected")
        else:
            outcome.worsen("broken", f"{what}: pytest exited {code}; see {log}")

    def _child_env(self, env: MlflowEnv, endpoint: Endpoint, cell: Cell, phase: str | None,
                   manifest: Path | None, informational: bool,
                   deployment: Deployment) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "MLFLOW_TRACKING_URI")
                and not k.startswith(("TOX_", "MLFLOW_MATRIX_", "AWS_", "PYTEST_"))}
        shim = self._pythonpath()
        info = CellInfo(
            platform=cell.platform.name, cell=cell.id, channel=cell.channel_label,
            mlflow_version=endpoint.mlflow_version, platform_kind=cell.platform.kind,
            database=str(getattr(cell.platform.settings, "database", "")))
        defects = [_defect_dict(d) for d in self.matrix.defects_for(cell) if d.tests]
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

    def _collect(self, outcome: CellOutcome, deployment: Deployment | None, slot: _PlatformSlot,
                 cell_dir: Path) -> None:
        diagnostics = cell_dir / "diagnostics"
        start = now_ms()
        problems = []
        for name, target in (("deployment", deployment), ("platform", slot.provisioner)):
            if target is None:
                continue
            try:
                target.collect(diagnostics if name == "deployment" else diagnostics / "platform")
            except Exception as exc:
                problems.append(f"{name}: {exc}")
        files = sorted(p for p in diagnostics.rglob("*") if p.is_file()) \
            if diagnostics.is_dir() else []
        failed_phase = next((p for p in outcome.phases if p.status in ("broken", "skipped")
                             and p.message), None)
        if failed_phase is not None and not failed_phase.attachments:
            failed_phase.attachments = files
        status = "broken" if problems else "passed"
        outcome.phases.append(PhaseResult("collect", status, start, now_ms(),
                                          "; ".join(problems), attachments=files))

    def _teardown(self, outcome: CellOutcome, deployment: Deployment | None,
                  slot: _PlatformSlot) -> None:
        keep = self.options.keep or (self.options.keep_on_failure
                                     and outcome.status in ("failed", "broken"))
        if deployment is not None:
            if keep:
                outcome.kept = True
                self.progress(f"{outcome.cell.title}  kept running (--keep); release with "
                              f"`mlflow-matrix down --run-id {self.run_id}`")
            else:
                start = now_ms()
                try:
                    deployment.teardown()
                    outcome.phases.append(PhaseResult("teardown", "passed", start, now_ms()))
                except Exception as exc:
                    outcome.phases.append(PhaseResult("teardown", "broken", start, now_ms(),
                                                      f"teardown failed: {exc}"))
                    outcome.worsen("broken", f"teardown failed: {exc}")
        with slot.lock:
            slot.remaining -= 1
            slot.keep = slot.keep or keep
            last = slot.remaining == 0
        if last and slot.started and not slot.keep:
            try:
                slot.provisioner.down()
            except Exception as exc:
                outcome.worsen("broken", f"platform down failed: {exc}")
                self.progress(f"{outcome.cell.platform.name}  down FAILED: {exc}")

    def _write_cell_summary(self, outcome: CellOutcome, cell_dir: Path) -> None:
        cell = outcome.cell
        tests = [r for r in read_statuses(cell_dir / "allure-results")]
        counts: dict[str, int] = defaultdict(int)
        for result in tests:
            status = result["status"]
            if result["known"] and status == "skipped":
                status = KNOWN_DEFECT
            counts[f"informational-{status}" if result["informational"] else status] += 1
        if counts.get(KNOWN_DEFECT):
            outcome.worsen(KNOWN_DEFECT, outcome.message or "known defects reproduced")
        body = {
            "run_id": self.run_id,
            "platform": cell.platform.name,
            "platform_kind": cell.platform.kind,
            "cell": cell.id,
            "channel": cell.channel_label,
            "upgrade": bool(cell.upgrade_to),
            "mlflow_version": cell.mlflow_label,
            "scenarios": list(cell.scenarios),
            "status": outcome.status,
            "message": redact(outcome.message),
            "started": outcome.started,
            "duration_s": round(outcome.finished - outcome.started, 1),
            "versions": outcome.versions,
            "database": str(getattr(cell.platform.settings, "database", "")),
            "counts": dict(counts),
            "phases": [{"name": p.phase, "status": p.status,
                        "duration_s": round((p.stop_ms - p.start_ms) / 1000, 1),
                        "message": redact(p.message.splitlines()[0]) if p.message else ""}
                       for p in outcome.phases],
            "tests": tests,
        }
        (cell_dir / "cell.json").write_text(json.dumps(body, indent=1), encoding="utf-8")


def scenarios_root() -> Path:
    """The scenario suites: the project's own, or another directory of the same shape."""
    return Path(os.environ.get(SCENARIOS_DIR_ENV) or SCENARIOS_DIR)


class _PhaseFailed(Exception):
    """A lifecycle phase failed and was recorded; the cell stops here."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted("SIGTERM")


def _defect_dict(defect: KnownDefect | None) -> dict[str, Any] | None:
    if defect is None:
        return None
    return {"id": defect.id, "link": defect.link, "summary": defect.summary,
            "tests": list(defect.tests)}


def _collect_to(deployment: Deployment, cell_dir: Path) -> list[Path]:
    target = cell_dir / "diagnostics"
    try:
        deployment.collect(target)
    except Exception:
        return []
    return sorted(p for p in target.rglob("*") if p.is_file())


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
