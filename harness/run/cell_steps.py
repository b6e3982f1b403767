"""The steps of one cell after deploy, decided in one place for `run` and for `plan`.

The runner executes `cell_steps()` and `plan` prints the same list, so the plan cannot show a
restart that never runs or miss one that does. The pytest command line, the run context's
options (deadlines from matrix.yaml) and the log paths are built here for both as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.config.guides import SERVER_APP, Guide, GuideStep
from harness.config.matrix import Cell, Matrix
from provisioners.api import GuideRunner, Restartable, Upgradable

RESTART_SUITE = "persistence"
# Suites that measure server-wide state (request counters): they run on their own, after the
# others, with one client process, so no other test's requests land in what they count.
SERIAL_SUITES = ("observability",)
# Suites with checks of what the restart did to the server (the unit-down alert): they run in
# the after-restart phase too, when selected beside the restart suite.
RESTART_WATCHERS = ("observability",)
UPGRADE_MANIFEST = "upgrade-manifest.json"
# the upgrade suite's read-back of the seed after a guide step that can lose data (the phase
# run is `data-check@<step id>`; the tests are marked `data-check`)
DATA_CHECK = "data-check"
RESTART_MANIFEST = "persistence-manifest.json"


@dataclass(frozen=True)
class Step:
    """One thing a cell does after deploy. `client`: whose MLflow version the client has —
    the server's reported version, the upgrade's source or its target."""

    action: Literal["pytest", "restart", "upgrade", "guide", "destroy", "redeploy", "rollback",
                    "skip", "note"]
    suites: tuple[str, ...] = ()
    phase: str | None = None
    client: Literal["server", "source", "target"] = "server"
    manifest: str | None = None
    informational: bool = False
    only_if_passed: bool = False  # stop the cell here unless everything so far passed
    serial: bool = False  # alone against the server, one client process (SERIAL_SUITES)
    with_phase: str | None = None  # an unphased run that also runs this phase's tests
    reason: str = ""
    guide: Guide | None = None          # "guide": the documented procedure and its step
    guide_step: GuideStep | None = None


def cell_steps(cell: Cell, deployment: object, guides: tuple[Guide, ...] = ()) -> tuple[Step, ...]:
    """What follows deploy, from the cell, the guides its path follows (Matrix.guides_for) and
    what its deployment can do."""
    if cell.upgrade_to:
        if guides and isinstance(deployment, GuideRunner):
            return _guided(cell, guides)
        if cell.procedure != "upgrade":
            return (Step("skip", reason=f"{cell.platform.name} cannot run the {cell.procedure} "
                                        "guides"),)
        if not isinstance(deployment, Upgradable):
            return (Step("skip", reason=f"{cell.platform.name} cannot upgrade a deployment"),)
        return (Step("pytest", cell.scenarios, "before-upgrade", "source", UPGRADE_MANIFEST),
                Step("upgrade", only_if_passed=True),
                *_after(cell))
    shared = tuple(s for s in cell.scenarios if s not in SERIAL_SUITES)
    alone = tuple(s for s in cell.scenarios if s in SERIAL_SUITES)
    restarts = RESTART_SUITE in cell.scenarios and isinstance(deployment, Restartable)
    steps = []
    if shared:  # the writes a restart must keep are made here, beside the other tests
        steps.append(Step("pytest", shared, manifest=RESTART_MANIFEST, with_phase="before-restart")
                     if restarts and RESTART_SUITE in shared else Step("pytest", shared))
    if alone:
        steps.append(Step("pytest", alone, serial=True))
    if RESTART_SUITE in cell.scenarios:
        if restarts:
            watchers = tuple(s for s in cell.scenarios if s in RESTART_WATCHERS)
            steps += [Step("restart"),
                      Step("pytest", (RESTART_SUITE, *watchers), "after-restart",
                           manifest=RESTART_MANIFEST)]
        else:
            steps.append(Step("note", phase="restart",
                              reason=f"restart SKIPPED: {cell.platform.name} cannot restart the "
                                     f"MLflow server, so the {RESTART_SUITE} checks across a "
                                     "restart did not run"))
    return tuple(steps)


def _after(cell: Cell) -> tuple[Step, ...]:
    """Every check of the seed with the new client, then (informational) the old one, when
    the path changes the MLflow release."""
    after = Step("pytest", cell.scenarios, "after-upgrade", "target", UPGRADE_MANIFEST)
    if cell.upgrade_to and cell.upgrade_to.mlflow_version == cell.channel.mlflow_version:
        return (after,)
    return (after, Step("pytest", cell.scenarios, "old-client", "source", UPGRADE_MANIFEST,
                        informational=True))


def _guided(cell: Cell, guides: tuple[Guide, ...]) -> tuple[Step, ...]:
    """The seed, each guide step as written (a restore path: the backup guide, the deployment
    destroyed and deployed fresh at the target, the restore guide), the seed read back after
    every step that can lose data while a server runs, then every after-upgrade check."""
    steps = [Step("pytest", cell.scenarios, "before-upgrade", "source", UPGRADE_MANIFEST)]
    client: Literal["source", "target"] = "source"
    serving = True  # the server runs (its store related) after the step
    last = guides[-1].steps[-1]
    for guide in guides:
        if guide.kind == "restore":
            steps += [Step("destroy", reason="the deployment destroyed (backup kept)"),
                      Step("redeploy", reason=f"a fresh {cell.upgrade_to.name} deployment"
                           if cell.upgrade_to else "")]
            client = "target"
        for step in guide.steps:
            steps.append(Step("guide", only_if_passed=len(steps) == 1, guide=guide,
                              guide_step=step))
            if step.do == "remove-relation":
                serving = False
            elif step.do == "integrate":
                serving = True
            if step.do == "refresh" and guide.bundle_app(step.app) == SERVER_APP:
                client = "target"
            if step.check_data and step is not last:
                steps.append(Step("pytest", cell.scenarios, f"{DATA_CHECK}@{step.id}", client,
                                  UPGRADE_MANIFEST) if serving else
                             Step("note", reason=f"no data check after {step.id}: the server "
                                  "is stopped there, as the charm is blocked"))
    steps += _after(cell)
    one_way = next((g for g in guides if g.one_way), None)
    if one_way is not None:
        steps.append(Step("rollback", guide=one_way,
                          reason=f"{one_way.title}: \"{one_way.one_way}\""))
    return tuple(steps)


def context_options(matrix: Matrix, provisioner_options: Mapping[str, Any]) -> dict[str, Any]:
    """What a provisioner and its deployments read from the run: deadlines and CLI options."""
    timeouts = matrix.timeouts
    return {"server_start_timeout": timeouts.server_start, "deploy_timeout": timeouts.deploy,
            "teardown_timeout": timeouts.teardown, **provisioner_options}


def suite_files(scenarios_dir: Path, suites: Sequence[str]) -> list[str]:
    return [str(scenarios_dir / f"test_{suite}.py") for suite in suites]


def _run_suffix(phase: str | None, serial: bool) -> str:
    return f"-{phase}" if phase else ("-serial" if serial else "")


def junit_path(cell_dir: Path, phase: str | None, serial: bool = False) -> Path:
    return cell_dir / f"junit{_run_suffix(phase, serial)}.xml"


def log_path(cell_dir: Path, phase: str | None, serial: bool = False) -> Path:
    return cell_dir / f"pytest{_run_suffix(phase, serial)}.log"


def pytest_argv(python: str, scenarios_dir: Path, suites: Sequence[str], cell_dir: Path,
                phase: str | None, extra: Sequence[str], *, workers: int = 1,
                serial: bool = False) -> list[str]:
    from harness.run.scheduling import xdist_args

    junit = junit_path(cell_dir, phase, serial)
    return [python, "-m", "pytest", *suite_files(scenarios_dir, suites), "-p", "harness.incell.plugin",
            "-c", str(scenarios_dir / "pytest.ini"), "--rootdir", str(scenarios_dir),
            "--alluredir", str(cell_dir / "allure-results"), "-p", "no:cacheprovider", "-q",
            "-rfEX", f"--junitxml={junit}", *xdist_args(workers, phased=phase is not None or serial),
            *extra]
