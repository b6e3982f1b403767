"""`up`, `down` and `janitor`: platform lifecycle outside a run, and cleanup after crashes."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.commands.options import provisioner_options
from harness.config.model import Matrix, Platform
from harness.config.registry import load_provisioner_class
from harness.run.cell_steps import context_options
from harness.system.durations import parse_duration
from harness.system.errors import EXIT_INFRASTRUCTURE, EXIT_OK, ConfigError
from harness.system.procs import same_process, stop_group
from harness.system.state import RunState, new_run_id, read_state
from provisioners.api import Provisioner, RunContext, Sweepable


def _provisioner(args: argparse.Namespace, name: str, state: RunState, *,
                 preflight: bool = False) -> Provisioner:
    matrix, platform = _platform(args, name)
    # the run's deadlines too: `down` gives teardown the matrix's timeouts.teardown, as a run does
    context = RunContext(run_id=state.run_id, platform=platform,
                         work_dir=Path(tempfile.gettempdir()), state=state,
                         env_for=lambda c: None,  # type: ignore[arg-type,return-value]
                         options=context_options(matrix, provisioner_options(args)))
    cls = load_provisioner_class(platform.kind)
    if preflight:
        cls.preflight(platform.settings, context.options)
    return cls(context)


def _platform(args: argparse.Namespace, name: str) -> tuple[Matrix, Platform]:
    """The platform named on the command line; an unknown one is bad input before any state."""
    from harness.config.kinds import unknown_platform_error
    from harness.config.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    if name not in matrix.platforms:
        raise unknown_platform_error(name, matrix.platforms, matrix.path)
    return matrix, matrix.platforms[name]


def platform_up(args: argparse.Namespace) -> int:
    if len(args.platform) != 1:
        raise ConfigError("`up` takes exactly one --platform",
                          hint="bring platforms up one at a time")
    _, platform = _platform(args, args.platform[0])  # checked before a state file exists
    load_provisioner_class(platform.kind).preflight(platform.settings, provisioner_options(args))
    run_id = new_run_id()
    state = RunState(args.reports_dir.resolve() / "state" / f"{run_id}.json", run_id)
    try:
        substrate = _provisioner(args, args.platform[0], state).up()
    except BaseException:
        # what `up` created is in the state file: `down --run-id` or `janitor` releases it
        state.finish("failed" if state.resources() else "released")
        raise
    state.finish("up")
    print(f"{substrate.name} is up (run id {run_id})")
    if substrate.kubeconfig:
        print(f"kubeconfig: {substrate.kubeconfig}")
    print(f"release it with: mlflow-matrix down --platform {args.platform[0]}")
    return EXIT_OK


def platform_down(args: argparse.Namespace) -> int:
    reports = args.reports_dir.resolve()
    if not args.platform and not args.run_id:
        raise ConfigError("say what to release",
                          hint="pass --platform NAME and/or --run-id ID (see reports/state/)")
    code = EXIT_OK
    if args.run_id:
        path = reports / "state" / f"{args.run_id}.json"
        if not path.is_file():
            raise ConfigError(f"no state file for run {args.run_id} in {path.parent}",
                              hint="list the run ids with `ls reports/state`")
        code = max(code, release_state(path, force=True))
    for name in args.platform:
        _platform(args, name)
        with tempfile.TemporaryDirectory(prefix="mlflow-matrix-down-") as tmp:
            state = RunState(Path(tmp) / "s.json", "down")
            _provisioner(args, name, state).down()
        print(f"{name}: down")
    return code


def janitor(reports: Path, *, dry_run: bool = False) -> int:
    """Release resources recorded by runs whose harness process is gone."""
    state_dir = reports / "state"
    paths = sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []
    code = EXIT_OK
    found = False
    for path in paths:
        body = read_state(path)
        if not body["resources"]:
            continue
        if body["status"] == "running" and _alive(body["pid"]):
            print(f"{body['run_id']}: still running (pid {body['pid']}); left alone")
            continue
        found = True
        code = max(code, release_state(path, force=False, dry_run=dry_run))
    if not found:
        print("janitor: nothing to release")
    return code


def release_state(path: Path, *, force: bool, dry_run: bool = False) -> int:
    body = read_state(path)
    code = EXIT_OK
    for resource in reversed(body["resources"]):  # newest first: model before controller
        what = f"{resource['type']} {resource.get('name') or resource.get('path') or ''}".strip()
        if dry_run:
            print(f"{body['run_id']}: would release {what}")
            continue
        try:
            _release(resource)
            print(f"{body['run_id']}: released {what}")
        except Exception as exc:
            print(f"{body['run_id']}: could not release {what}: {exc}")
            code = EXIT_INFRASTRUCTURE
    if not dry_run and code == EXIT_OK:
        data = read_state(path)
        data["resources"] = []
        data["status"] = "released"
        import json

        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return code


def _release(resource: dict[str, Any]) -> None:
    kind = resource["type"]
    if kind == "process":
        if same_process(resource["pid"], resource.get("started")) or (resource.get("started") \
                is None and _alive(resource["pid"])):
            stop_group(resource["pgid"], timeout=15)
    elif kind == "dir":
        target = Path(resource["path"])
        if not target.name.startswith("mlflow-matrix-"):
            raise ConfigError(f"refusing to delete {target}: not an mlflow-matrix temp dir")
        shutil.rmtree(target, ignore_errors=True)
    elif "kind" in resource:  # recorded by a provisioner (or its deployment): its kind releases it
        load_provisioner_class(resource["kind"]).release_recorded(resource)
    else:
        raise ConfigError(f"no way to release a {kind!r} resource",
                          hint="release it by hand; its details are in the state file")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cloud_janitor(kind: str, *, older_than: str | None, dry_run: bool,
                  matrix_path: Path | None, platforms: list[str]) -> int:
    """`janitor --cloud KIND`: delete run-tagged resources of that cloud that are due.

    The nightly safety net after a run was killed before its state file could help: the kind's
    `sweep` lists what carries the `mlflow-matrix-run` tag and is expired (or older than
    `--older-than`) and deletes it with the same code `down` uses. Settings (region, project…)
    come from the platforms of that kind in matrix.yaml, or the kind's defaults.
    """
    age = parse_duration(older_than) if older_than else None
    cls = load_provisioner_class(kind)
    if not isinstance(cls, Sweepable):
        from harness.config.registry import known_kinds

        sweepable = [k for k in known_kinds() if _sweepable(k)]
        raise ConfigError(f"provisioner kind {kind!r} cannot sweep cloud resources by tag",
                          hint="`--cloud` takes a cloud kind: " + (", ".join(sweepable) or
                               "none is installed") + "; `mlflow-matrix janitor` without "
                               "--cloud releases what state files recorded")
    for settings in _sweep_settings(kind, cls, matrix_path, platforms):
        cls.preflight(settings, {})
    code = EXIT_OK
    total = 0
    for settings in _sweep_settings(kind, cls, matrix_path, platforms):
        swept = cls.sweep(settings, older_than=age, dry_run=dry_run,
                          progress=lambda line: print(f"janitor --cloud {kind}: {line}"))
        total += len(swept)
        if any(item.error for item in swept):
            code = EXIT_INFRASTRUCTURE
    verb = "would delete" if dry_run else "deleted"
    print(f"janitor --cloud {kind}: {total} run-tagged resource(s) due"
          + (f" ({verb} above)" if total else "; nothing to do"))
    return code


def _sweepable(kind: str) -> bool:
    try:
        return isinstance(load_provisioner_class(kind), Sweepable)
    except ConfigError:
        return False


def _sweep_settings(kind: str, cls: type, matrix_path: Path | None,
                    platforms: list[str]) -> list[object]:
    """Distinct settings of the kind's platforms in matrix.yaml (or the kind's defaults)."""
    from harness.config.matrix import load_matrix

    matrix = load_matrix(matrix_path)
    chosen = [p for p in matrix.platforms.values() if p.kind == kind
              and (not platforms or p.name in platforms)]
    unknown = [n for n in platforms if n not in matrix.platforms]
    if unknown:
        raise ConfigError(f"unknown platform {unknown[0]!r}",
                          hint=f"use one of: {', '.join(matrix.platforms)}")
    found: list[object] = []
    for platform in chosen:
        if platform.settings not in found:
            found.append(platform.settings)
    return found or [cls.Settings()]  # type: ignore[attr-defined]
