"""One cell's phases: provision → environment → deploy → scenarios → collect → teardown.

Every phase becomes a result of its own (a failed deploy is one *broken* result with its
diagnostics, not forty failed scenarios); collect and teardown run whatever happened before.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config.defects import KnownDefect
from harness.config.matrix import DETECT, Cell, Channel, adhoc_channel, cell_facts
from harness.reporting.allure_results import (
    PhaseResult,
    clear_results,
    now_ms,
    read_statuses,
    write_phase_result,
)
from harness.reporting.enrich import enrich_cell
from harness.run import guided
from harness.run.cell_steps import RESTART_SUITE as RESTART_SUITE  # re-exported
from harness.run.cell_steps import cell_steps
from harness.run.guided import procedure_summary
from harness.run.phases import PhaseFailed as _PhaseFailed
from harness.run.phases import collect_to as _collect_to
from harness.run.scenario_process import defect_dict
from harness.run.verdicts import check_server_version, judge_phase
from harness.system.cache import MlflowEnv
from harness.system.endpoint import Endpoint
from harness.system.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCENARIO_FAILED,
    CellSkipped,
    Interrupted,
    MatrixError,
)
from harness.system.redact import redact, redact_tree
from harness.system.waits import CANCEL
from provisioners.api import (
    Deployment,
    GuideRunner,
    Provisioner,
    Restartable,
    Substrate,
    Upgradable,
)

if TYPE_CHECKING:
    from harness.run.runner import Runner

KNOWN_DEFECT = "known-defect"
INTERRUPTED = "interrupted by Ctrl-C or SIGTERM before it ended"
STATUS_EXIT = {"passed": EXIT_OK, "skipped": EXIT_OK, KNOWN_DEFECT: EXIT_OK,
               "failed": EXIT_SCENARIO_FAILED,
               "broken": EXIT_INFRASTRUCTURE, "interrupted": EXIT_INTERRUPTED}


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
    log: Path | None = None  # the file to open first when the cell is not green
    procedure: dict[str, object] = field(default_factory=dict)  # guides followed (guided.py)

    def worsen(self, status: str, message: str = "", log: Path | None = None) -> None:
        order = ["passed", "skipped", KNOWN_DEFECT, "failed", "broken", "interrupted"]
        if order.index(status) > order.index(self.status):
            self.status = status
            if message:
                self.message = message
            if log is not None:
                self.log = log


class PlatformSlot:
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


class CellRun:
    """One cell on its platform's slot, using the run's services (envs, pytest children)."""

    def __init__(self, runner: Runner, cell: Cell, slot: PlatformSlot) -> None:
        self.cell = cell
        self.slot = slot
        self.matrix = runner.matrix
        self.options = runner.options
        self.progress = runner.progress
        self.run_id = runner.run_id
        self.reports = runner.reports
        self.env_for = runner.env_for
        self.scenarios = runner.scenarios
        self.outcomes = runner.outcomes
        self.workers = runner.sizing.workers_for(cell)

    def run(self) -> CellOutcome:
        cell = self.cell
        outcome = CellOutcome(cell)
        self.outcomes.append(outcome)
        cell_dir = self.reports / cell.platform.name / cell.id
        results = cell_dir / "allure-results"
        clear_results(results)
        for stale in ("diagnostics",):
            import shutil

            shutil.rmtree(cell_dir / stale, ignore_errors=True)
        slot = self.slot
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
            endpoint = self._phase(outcome, "deploy", lambda: check_server_version(
                deployment.deploy(cell.channel), cell.channel, "deploy"))
            outcome.versions["mlflow_server"] = endpoint.mlflow_version
            self._after_deploy(outcome, deployment, endpoint, cell_dir)
        except CellSkipped as exc:
            outcome.worsen("skipped", exc.render().replace("error: ", "", 1))
            self.progress(f"{cell.title}  skipped: {exc.message}"
                          + (f" ({exc.hint})" if exc.hint else ""))
        except Interrupted:
            outcome.worsen("interrupted", "interrupted")
        except _PhaseFailed:
            pass
        except Exception as exc:  # a harness bug: report it as broken, keep other cells going
            if CANCEL.is_set():  # what Ctrl-C broke on its way is not a harness bug
                outcome.worsen("interrupted", f"interrupted ({type(exc).__name__} on the way out)")
            else:
                outcome.worsen("broken", f"harness error: {exc}")
                self.progress(f"{cell.title}  harness error: {exc}\n{traceback.format_exc()}")
        finally:
            self._close_cell(outcome, deployment, slot, cell_dir)
        return outcome

    def _close_cell(self, outcome: CellOutcome, deployment: Deployment | None,
                    slot: PlatformSlot, cell_dir: Path) -> None:
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
        defects = self._phase_defects(outcome, name)
        self.progress(f"{cell.title}  {label or name}…")
        start = now_ms()
        try:
            value = action()
        except CellSkipped as exc:
            outcome.phases.append(PhaseResult(name, "skipped", start, now_ms(), exc.render()))
            raise
        except Interrupted:
            outcome.phases.append(PhaseResult(name, "skipped", start, now_ms(), INTERRUPTED))
            raise
        except Exception as exc:
            if CANCEL.is_set():  # Ctrl-C broke the phase: interrupted, not a platform failure
                outcome.phases.append(PhaseResult(name, "skipped", start, now_ms(),
                                                  f"{INTERRUPTED} ({exc})"))
                raise Interrupted() from exc
            self._phase_failed(outcome, name, exc, start, defects, attach)
            raise _PhaseFailed() from exc
        stop = now_ms()
        if defects:
            judged = judge_phase(defects, name, None)
            outcome.phases.append(PhaseResult(name, "failed", start, stop, judged.message,
                                              known_defect=defect_dict(defects[0])))
            outcome.worsen("failed", judged.message.splitlines()[0])
        else:
            outcome.phases.append(PhaseResult(name, "passed", start, stop))
        self.progress(f"{cell.title}  {label or name} ok ({(stop - start) / 1000:.1f}s)")
        return value

    def _phase_failed(self, outcome: CellOutcome, name: str, exc: Exception, start: int,
                      defects: list[KnownDefect],
                      attach: Callable[[], list[Path]] | None) -> None:
        cell = outcome.cell
        if not isinstance(exc, MatrixError):
            outcome.phases.append(PhaseResult(name, "broken", start, now_ms(),
                                              f"harness error in {name}: {exc}",
                                              trace=traceback.format_exc()))
            outcome.worsen("broken", f"harness error in {name}: {exc}")
            self.progress(f"{cell.title}  {name} harness error: {exc}")
            return
        attachments = attach() if attach else []
        judged = judge_phase(defects, name, exc) if defects else None
        known = judged is not None and judged.defect is not None
        message = exc.render() if judged is None else f"{judged.message}\n{exc.render()}"
        outcome.phases.append(PhaseResult(name, "skipped" if known else "broken", start,
                                          now_ms(), message, attachments=attachments,
                                          known_defect=defect_dict(judged.defect)
                                          if known and judged else None))
        self.progress(f"{cell.title}  {name} FAILED" + (" (known defect)" if known else "")
                      + f": {exc.message.splitlines()[0]}")
        outcome.worsen(KNOWN_DEFECT if known else "broken", message.splitlines()[0])

    def _phase_defects(self, outcome: CellOutcome, phase: str) -> list[KnownDefect]:
        declared = cell_facts(outcome.cell).server_versions
        measured = tuple(v for v in (outcome.versions.get("mlflow_server"),) if v)
        facts = cell_facts(outcome.cell,
                           server_versions=declared + tuple(set(measured) - set(declared)))
        return [d for d in self.matrix.defects_for(outcome.cell, facts) if phase in d.phases]

    def _environment(self, outcome: CellOutcome, channel: Channel) -> MlflowEnv:
        env: MlflowEnv = self._phase(outcome, "environment", lambda: self.env_for(channel),
                                     label=f"MLflow {channel.mlflow_version} environment")
        return env

    def _client_env(self, outcome: CellOutcome, endpoint: Endpoint) -> MlflowEnv:
        """The client must match the server: use the version the server reports."""
        channel = outcome.cell.channel
        if endpoint.mlflow_version != channel.mlflow_version:
            channel = adhoc_channel(endpoint.mlflow_version)
            return self._environment(outcome, channel)
        return self.env_for(channel)

    def _after_deploy(self, outcome: CellOutcome, deployment: Deployment, endpoint: Endpoint,
                      cell_dir: Path) -> None:
        """Execute `cell_steps()`: the same list `mlflow-matrix plan` prints."""
        cell = outcome.cell
        server_env: MlflowEnv | None = None
        guides = self.matrix.guides_for(cell)
        outcome.procedure = procedure_summary(cell, guides)
        for step in cell_steps(cell, deployment, guides):
            if step.action == "skip":
                raise CellSkipped(step.reason)
            if step.action == "note":
                if step.phase:  # a check this platform cannot run: a visible skipped result
                    outcome.phases.append(PhaseResult(step.phase, "skipped", now_ms(), now_ms(),
                                                      step.reason))
                self.progress(f"{cell.title}  {step.reason}")
            elif step.action == "restart":
                assert isinstance(deployment, Restartable)
                endpoint = self._phase(outcome, "restart", deployment.restart,
                                       attach=lambda: _collect_to(deployment, cell_dir))
            elif step.action == "upgrade":
                assert isinstance(deployment, Upgradable) and cell.upgrade_to
                if step.only_if_passed and outcome.status != "passed":
                    self.progress(f"{cell.title}  seeding failed; not upgrading")
                    return
                target = cell.upgrade_to
                endpoint = self._phase(outcome, "upgrade",
                                       partial(_upgraded, deployment, target),
                                       label=f"upgrade to {target.name}",
                                       attach=lambda: _collect_to(deployment, cell_dir))
                outcome.versions["mlflow_server"] = endpoint.mlflow_version
            elif step.action == "guide":
                assert isinstance(deployment, GuideRunner)
                if step.only_if_passed and outcome.status != "passed":
                    self.progress(f"{cell.title}  seeding failed; not following the guide")
                    return
                endpoint = guided.run_step(self, outcome, deployment, step, endpoint, cell_dir)
            elif step.action == "destroy":
                assert isinstance(deployment, GuideRunner)
                self._phase(outcome, "destroy", deployment.destroy, label=step.reason)
            elif step.action == "redeploy":
                assert cell.upgrade_to is not None
                endpoint = self._phase(outcome, "redeploy", partial(
                    _redeployed, deployment, cell.upgrade_to), label=step.reason)
                outcome.versions["mlflow_server"] = endpoint.mlflow_version
            elif step.action == "rollback":
                assert isinstance(deployment, GuideRunner)
                guided.rollback(self, outcome, deployment, step, cell_dir)
            else:
                if step.client == "server":
                    server_env = server_env or self._client_env(outcome, endpoint)
                    env = server_env
                else:
                    channel = cell.channel if step.client == "source" else cell.upgrade_to
                    assert channel is not None
                    env = self.env_for(channel)
                self.scenarios.run(outcome, env, endpoint, cell_dir, step.suites,
                                   phase=step.phase, deployment=deployment,
                                   manifest=cell_dir / step.manifest if step.manifest else None,
                                   informational=step.informational, serial=step.serial,
                                   with_phase=step.with_phase, workers=self.workers)

    def _collect(self, outcome: CellOutcome, deployment: Deployment | None, slot: PlatformSlot,
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
                  slot: PlatformSlot) -> None:
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
            "on_kubernetes": cell.platform.traits.on_kubernetes,
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
            "procedure": outcome.procedure,
            "database": cell.platform.database,
            "counts": dict(counts),
            "phases": [{"name": p.phase, "status": p.status,
                        "duration_s": round((p.stop_ms - p.start_ms) / 1000, 1),
                        "message": redact(p.message.splitlines()[0]) if p.message else ""}
                       for p in outcome.phases],
            "tests": tests,
        }
        (cell_dir / "cell.json").write_text(json.dumps(body, indent=1), encoding="utf-8")


def _redeployed(deployment: Deployment, target: Channel) -> Endpoint:
    """A fresh deployment of the target channel (restore paths), held to its MLflow release."""
    return check_server_version(deployment.deploy(target), target, "redeploy")


def _upgraded(deployment: Upgradable, target: Channel) -> Endpoint:
    """Upgrade, then hold the new server to the MLflow release the target channel ships."""
    return check_server_version(deployment.upgrade(target), target, "upgrade")
