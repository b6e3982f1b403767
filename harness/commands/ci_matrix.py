"""What CI needs to know about matrix.yaml, so the nightly workflow never drifts from it.

Two halves:
- `list_data(matrix)` is `mlflow-matrix list --json`: platforms (kind, which cloud's credentials a
  job needs, snaps and apt packages the runner needs, job timeouts computed from the timeouts in
  matrix.yaml), channels, upgrade paths, suites, defaults. It imports no provisioner.
- `python -m harness.commands.ci_matrix --list LIST.json [--platforms …] [--channels …] [--upgrades …]`
  turns that document plus the workflow_dispatch inputs into the job matrices of
  .github/workflows/nightly.yaml (written to $GITHUB_OUTPUT). It reads only the JSON, so it runs
  on any Python without the harness's dependencies.

A job's `timeout-minutes` is a backstop against a harness bug, never the deadline that ends a
healthy run: it is the sum of the harness's own deadlines for that job (see `job_timeouts`),
capped at GitHub's 360-minute limit for hosted runners.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.config.matrix import Matrix, Platform

SCHEMA = 1
GITHUB_MAX_JOB_MINUTES = 360
SETUP_MINUTES = 15        # checkout, Python, tox env, snaps/apt on the runner
UPLOAD_MINUTES = 5        # the reports upload steps
TEARDOWN_MARGIN_MINUTES = 5

# Settings keys read for a platform's own create/delete timeouts, in seconds.
UP_KEYS = ("up_timeout", "create_timeout", "provision_timeout")
DOWN_KEYS = ("down_timeout", "delete_timeout", "teardown_timeout")
SELECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")


class SelectionError(ValueError):
    """A workflow_dispatch input names something matrix.yaml does not have."""


# ---------------------------------------------------------------- list --json


def _settings(platform: Platform) -> dict[str, Any]:
    settings = platform.settings
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return dataclasses.asdict(settings)
    return dict(settings) if isinstance(settings, Mapping) else {}


def _seconds(settings: Mapping[str, Any], keys: Sequence[str], nested: Sequence[str]) -> int | None:
    for key in keys:
        if isinstance(settings.get(key), int | float):
            return int(settings[key])
    table = settings.get("timeouts")
    if isinstance(table, Mapping):
        for key in nested:
            if isinstance(table.get(key), int | float):
                return int(table[key])
    return None


def cluster_timeouts(platform: Platform) -> tuple[int, int]:
    """(create, delete) seconds of the platform's cluster; 0 for kinds that have none.

    From its settings in matrix.yaml (`up_timeout`/`down_timeout`, or `timeouts: {up, down}`),
    else the kind's default; a Juju platform adds its `bootstrap_timeout` to the create time.
    """
    settings = _settings(platform)
    default_up, default_down = platform.traits.cluster_timeouts
    up = _seconds(settings, UP_KEYS, ("up", "create"))
    down = _seconds(settings, DOWN_KEYS, ("down", "delete"))
    up = default_up if up is None else up
    down = default_down if down is None else down
    if isinstance(settings.get("bootstrap_timeout"), int | float):
        up += int(settings["bootstrap_timeout"])
    return up, down


@dataclass(frozen=True)
class Budget:
    """The deadlines one platform job adds up, in seconds."""

    up: int
    down: int
    cell: int           # deploy (or server start) + scenarios + teardown
    upgrade_cell: int   # the same plus the upgrade (a second deployment)
    env_build: int
    parallel: int


def budget(matrix: Matrix, platform: Platform) -> Budget:
    t = matrix.timeouts
    up, down = cluster_timeouts(platform)
    deploy = t.server_start if platform.traits.self_deploying else t.deploy
    cell = deploy + t.scenarios + t.teardown
    return Budget(up=up, down=down, cell=cell, upgrade_cell=cell + deploy, env_build=t.env_build,
                  parallel=max(1, matrix.defaults.parallel))


def _makespan(costs: Sequence[int], lanes: int) -> int:
    """Longest lane when cells are dealt biggest first to `lanes` workers (the runner's pool)."""
    loads = [0] * max(1, min(lanes, len(costs) or 1))
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def job_timeouts(b: Mapping[str, int], cells: int, upgrade_cells: int) -> dict[str, Any]:
    """timeout-minutes for the job, its matrix step and its teardown step.

    run step = env builds + cluster up + the cells over `parallel` lanes + cluster down;
    teardown step = cluster down + a margin; job = setup + run + teardown + uploads,
    at most GitHub's 360 (the run step gives way, so teardown always keeps its time).
    """
    costs = [b["cell"]] * cells + [b["upgrade_cell"]] * upgrade_cells
    run_s = b["env_build"] + b["up"] + _makespan(costs, b["parallel"]) + b["down"]
    run_minutes = math.ceil(run_s / 60)
    teardown_minutes = math.ceil(b["down"] / 60) + TEARDOWN_MARGIN_MINUTES
    fixed = SETUP_MINUTES + teardown_minutes + UPLOAD_MINUTES
    capped = fixed + run_minutes > GITHUB_MAX_JOB_MINUTES
    if capped:
        run_minutes = GITHUB_MAX_JOB_MINUTES - fixed
    return {"timeout_minutes": fixed + run_minutes, "run_timeout_minutes": run_minutes,
            "teardown_timeout_minutes": teardown_minutes, "capped": capped}


def runner_needs(platform: Platform) -> dict[str, Any]:
    """Whether a nightly job can run the platform unattended, and what the runner needs (its
    kind declares it: `PlatformTraits.ci`)."""
    ci = platform.traits.ci
    return {"runs": not ci.unattended, "reason": ci.unattended, "cloud": ci.cloud,
            "region": ci.region, "snaps": list(ci.snaps), "apt": list(ci.apt)}


def list_data(matrix: Matrix) -> dict[str, Any]:
    """The document `mlflow-matrix list --json` prints."""
    from harness.config.matrix import Selection, expand_cells

    defaults = matrix.defaults
    platforms = []
    for platform in matrix.platforms.values():
        b = budget(matrix, platform)
        cells = expand_cells(matrix, Selection(platforms=(platform.name,),
                                               channels=defaults.channels,
                                               upgrades=defaults.upgrades,
                                               scenarios=defaults.scenarios))
        suites = sorted({s for c in cells for s in c.scenarios})
        plain = sum(1 for c in cells if not c.upgrade_to)
        upgrade = len(cells) - plain
        raw = dataclasses.asdict(b)
        platforms.append({
            "name": platform.name,
            "kind": platform.kind,
            "description": platform.description,
            "default": platform.name in defaults.platforms,
            # the guides' backup → destroy → restore cells run where the harness deploys MLflow
            # itself (on Juju the backup needs an s3-integrator the bundle lacks)
            "restores": platform.traits.self_deploying,
            "suites": suites,
            "budget_s": raw,
            "ci": {**runner_needs(platform), "cells": len(cells),
                   **job_timeouts(raw, plain, upgrade)},
        })
    return {
        "schema": SCHEMA,
        "matrix": str(matrix.path),
        "platforms": platforms,
        "channels": [{"name": c.name, "mlflow": c.mlflow_version, "experimental": c.experimental,
                      "default": c.name in defaults.channels} for c in matrix.channels.values()],
        "upgrades": [{"from": u.source, "to": u.target, "label": f"{u.source}:{u.target}",
                      "default": f"{u.source}:{u.target}" in defaults.upgrades}
                     for u in matrix.upgrades],
        "scenarios": [{"name": s.name, "description": s.description,
                       "platforms": list(s.platforms) if s.platforms is not None else None}
                      for s in matrix.suites.values()],
        # backup → destroy → restore paths of the guides: nightly runs them (`--guides`)
        "restores": list(matrix.restore_paths()),
        "defaults": {"platforms": list(defaults.platforms), "channels": list(defaults.channels),
                     "upgrades": list(defaults.upgrades), "scenarios": list(defaults.scenarios),
                     "parallel": defaults.parallel},
    }


# ---------------------------------------------------------------- the workflow's job matrices


def _names(text: str) -> list[str]:
    """A dispatch input: names separated by commas or spaces; duplicates dropped, order kept."""
    out: list[str] = []
    for name in re.split(r"[\s,]+", text.strip()):
        if name and name not in out:
            if not SELECTION_NAME.match(name):
                raise SelectionError(f"{name!r} is not a name from matrix.yaml")
            out.append(name)
    return out


def _pick(kind: str, wanted: Sequence[str], known: Sequence[str]) -> list[str]:
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SelectionError(f"unknown {kind} {', '.join(map(repr, unknown))}; "
                             f"matrix.yaml has: {', '.join(known) or 'none'}")
    return list(wanted)


@dataclass(frozen=True)
class _Request:
    """A workflow_dispatch selection, checked against matrix.yaml: what every job runs."""

    chosen: list[str]
    suites: list[str]
    cells_per_suite: tuple[int, int]    # (channels, upgrade paths) a platform runs
    args: str
    # the guides' backup → destroy → restore paths: the scheduled run adds them (`--guides`)
    # where the backup needs nothing the bundle lacks (on Juju: an s3-integrator)
    restores: int = 0


def select(data: Mapping[str, Any], *, platforms: str = "", channels: str = "",
           upgrades: str = "", scenarios: str = "") -> dict[str, Any]:
    """Job matrices for a nightly run: `jobs` (no cloud credentials), `cloud_jobs`, `clouds`
    (one janitor per cloud kind) and `skipped` (platforms no job runs, each with its reason).

    Empty inputs mean the scheduled run: every platform a runner can run unattended, with the
    defaults of matrix.yaml (the job then runs exactly the README's command). Channels and upgrade
    paths follow the CLI: naming either replaces both defaults; `none` selects no upgrade path.
    """
    request = _request(data, platforms, channels, upgrades, scenarios)
    jobs: list[dict[str, Any]] = []
    cloud_jobs: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for platform in data["platforms"]:
        if request.chosen and platform["name"] not in request.chosen:
            continue
        entry, reason = _job(platform, request)
        if entry is None:
            skipped.append({"platform": platform["name"], "reason": reason})
        else:
            (cloud_jobs if entry["cloud"] else jobs).append(entry)
    if request.chosen and not jobs and not cloud_jobs:
        raise SelectionError("no platform of the selection can run in CI: " + "; ".join(
            f"{s['platform']}: {s['reason']}" for s in skipped))
    return {"jobs": jobs, "cloud_jobs": cloud_jobs, "clouds": _janitors(cloud_jobs),
            "skipped": skipped}


def _request(data: Mapping[str, Any], platforms: str, channels: str, upgrades: str,
             scenarios: str) -> _Request:
    chosen = (_pick("platform", _names(platforms), [p["name"] for p in data["platforms"]])
              if platforms.strip() else [])
    upgrade_names = _names(upgrades)
    no_upgrades = upgrade_names == ["none"]
    channel_names = _pick("channel", _names(channels), [c["name"] for c in data["channels"]])
    upgrade_names = [] if no_upgrades else _pick(
        "upgrade path", upgrade_names, [u["label"] for u in data["upgrades"]])
    suite_names = _pick("scenario suite", _names(scenarios), [s["name"] for s in data["scenarios"]])
    explicit = bool(channel_names or upgrade_names or no_upgrades)
    if explicit and not channel_names and not upgrade_names:
        raise SelectionError("`upgrades: none` with no channel selects no cell; name a channel")
    counts = ((len(channel_names), len(upgrade_names)) if explicit else
              (len(data["defaults"]["channels"]), len(data["defaults"]["upgrades"])))
    args = [*(a for n in channel_names for a in ("--channel", n)),
            *(a for n in upgrade_names for a in ("--upgrade", n)),
            *(a for n in suite_names for a in ("--scenario", n))]
    restores = 0 if explicit else len(data.get("restores", []))
    return _Request(chosen, suite_names, counts, " ".join(args), restores)


def _job(platform: Mapping[str, Any], request: _Request) -> tuple[dict[str, Any] | None, str]:
    """One platform's job, or None and why no job runs it."""
    ci = platform["ci"]
    if not ci["runs"]:
        return None, ci["reason"]
    suites = request.suites or platform["suites"]
    plain = request.cells_per_suite[0] if any(s != "upgrade" for s in suites) else 0
    guides = bool(request.restores and "upgrade" in suites and platform.get("restores"))
    upgrade = (request.cells_per_suite[1] + (request.restores if guides else 0)
               if "upgrade" in suites else 0)
    if plain + upgrade == 0:
        return None, "the selection has no cell on it"
    timeouts = job_timeouts(platform["budget_s"], plain, upgrade)
    entry = {"platform": platform["name"], "kind": platform["kind"], "cloud": ci["cloud"] or "",
             "region": ci["region"], "snaps": " ".join(ci["snaps"]), "apt": " ".join(ci["apt"]),
             "args": " ".join(filter(None, (request.args, "--guides" if guides else ""))),
             "cells": plain + upgrade, **timeouts}
    if ci["cloud"]:
        # an assumed role must outlive the job: STS allows at most 12 h
        entry["credential_seconds"] = min(43200, max(900, timeouts["timeout_minutes"] * 60))
    return entry, ""


def _janitors(cloud_jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One janitor job per cloud kind, over the platforms of that kind the run used."""
    clouds: dict[str, dict[str, Any]] = {}
    for entry in cloud_jobs:
        kind = entry["kind"]
        found = clouds.setdefault(kind, {"kind": kind, "cloud": entry["cloud"],
                                         "region": entry["region"], "platforms": ""})
        found["platforms"] = " ".join([*found["platforms"].split(), entry["platform"]])
    return list(clouds.values())


def github_output(result: Mapping[str, Any]) -> str:
    """`name=value` lines for $GITHUB_OUTPUT (one line of compact JSON each)."""
    return "".join(f"{key}={json.dumps(value, separators=(',', ':'))}\n"
                   for key, value in result.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.commands.ci_matrix",
        description="Job matrices of the nightly workflow from `mlflow-matrix list --json`.")
    parser.add_argument("--list", type=Path, required=True, metavar="FILE",
                        help="output of `mlflow-matrix list --json`")
    parser.add_argument("--platforms", default="", help="names, comma/space separated; empty: all")
    parser.add_argument("--channels", default="", help="empty: defaults of matrix.yaml")
    parser.add_argument("--upgrades", default="", help="FROM:TO names; `none` for no upgrade path")
    parser.add_argument("--scenarios", default="", help="empty: every suite")
    parser.add_argument("--github-output", type=Path, metavar="FILE",
                        help="append the matrices here (the step's $GITHUB_OUTPUT)")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.list.read_text(encoding="utf-8"))
        result = select(data, platforms=args.platforms, channels=args.channels,
                        upgrades=args.upgrades, scenarios=args.scenarios)
    except (OSError, ValueError, KeyError) as exc:
        print(f"::error title=nightly selection::{exc}", file=sys.stderr)
        return 2
    if args.github_output:
        with args.github_output.open("a", encoding="utf-8") as out:
            out.write(github_output(result))
    print(json.dumps(result, indent=1))
    for entry in result["skipped"]:
        print(f"::notice title=not run: {entry['platform']}::{entry['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
