"""The Allure 3 HTML report of every cell under reports/: one environment per platform.

The Allure 3 CLI (npm package `allure`) is pinned in tools/allure/package-lock.json and
installed there with `npm ci` on first use; nothing is installed globally. Its configuration,
tools/allure/allurerc.mjs, reads the run-specific settings this module writes.

Output (all under reports/):
  allure-report/index.html              Allure's summary page, linking the two variants
  allure-report/awesome/index.html      multi-file report (needs a web server: `allure open`)
  allure-report/single-file/index.html  the same report in one file: opens from disk
  allure-history.jsonl                  Allure history; kept between runs, so trends appear
                                        from the second report on
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.reporting.enrich import allure3_categories, cell_versions, executor_info
from harness.system.errors import InfrastructureError
from harness.system.procs import run
from harness.system.redact import redact

TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools" / "allure"
CONFIG = TOOLS_DIR / "allurerc.mjs"
REPORT_DIR = "allure-report"
RUN_RESULTS_DIR = ".allure/run-results"
SETTINGS_FILE = ".allure/settings.json"
HISTORY_FILE = "allure-history.jsonl"
HISTORY_LIMIT = 50
MULTI_FILE = "awesome"        # plugin ids in tools/allure/allurerc.mjs
SINGLE_FILE = "single-file"
REPORT_NAME = "Charmed MLflow matrix"
NPM_HINT = ("install Node.js 20+ with npm (Debian: apt-get install nodejs npm), or run "
            "`npm ci --prefix tools/allure` where npm is available")


class AllureUnavailable(InfrastructureError):
    """Node/npm or the pinned Allure CLI cannot be found or installed."""


def result_link(result_uuid: str, variant: str = SINGLE_FILE) -> str:
    """Link from reports/ to one result in the report: Awesome routes `#<md5(uuid)>`."""
    return f"{REPORT_DIR}/{variant}/index.html#{hashlib.md5(result_uuid.encode()).hexdigest()}"


def pinned_version(tools_dir: Path = TOOLS_DIR) -> str:
    package = json.loads((tools_dir / "package.json").read_text(encoding="utf-8"))
    return str(package["devDependencies"]["allure"])


def allure_cli(tools_dir: Path = TOOLS_DIR, *, timeout: float = 600) -> Path:
    """The pinned Allure 3 CLI; `npm ci` into tools/allure when it is missing or stale."""
    binary = tools_dir / "node_modules" / ".bin" / "allure"
    installed = tools_dir / "node_modules" / "allure" / "package.json"

    def current() -> bool:
        try:
            version = json.loads(installed.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            return False
        return binary.exists() and version == pinned_version(tools_dir)

    if current():
        return binary
    if not shutil.which("node") or not shutil.which("npm"):
        raise AllureUnavailable("the Allure 3 report needs Node.js and npm, which are not on PATH",
                                hint=NPM_HINT)
    from filelock import FileLock

    with FileLock(str(tools_dir / ".npm-install.lock")):
        if not current():
            run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tools_dir,
                timeout=timeout)
    if not current():
        raise AllureUnavailable(f"`npm ci` in {tools_dir} did not install allure "
                                f"{pinned_version(tools_dir)}", hint=NPM_HINT)
    return binary


def environment_id(platform: str) -> str:
    """Allure 3 environment ids allow [A-Za-z0-9_-]; platform names may hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", platform)[:64] or "platform"


def _label(cell: Mapping[str, Any]) -> str:
    return str(cell.get("channel", cell.get("cell", "")))


def report_settings(reports: Path, cells: Sequence[tuple[Path, Mapping[str, Any]]],
                    output: Path, executor: Mapping[str, Any]) -> dict[str, Any]:
    """What allurerc.mjs needs: one environment per platform with its versions as variables."""
    platforms: dict[str, list[tuple[Path, Mapping[str, Any]]]] = {}
    for cell_dir, cell in cells:
        platforms.setdefault(str(cell.get("platform", "")), []).append((cell_dir, cell))
    environments = []
    for platform, members in platforms.items():
        variables: dict[str, str] = {}
        # platform-wide facts from cells that ran first (a skipped cell knows little)
        for cell_dir, cell in sorted(members, key=lambda m: m[1].get("status") == "skipped"):
            versions = cell_versions(cell, cell_dir)
            for key, title in (("platform.kind", "Platform kind"), ("kubernetes", "Kubernetes"),
                               ("juju", "Juju"), ("sql.backend", "SQL backend"),
                               ("s3.backend", "S3 backend"), ("python", "Python")):
                if versions.get(key):
                    variables.setdefault(title, versions[key])
        for cell_dir, cell in members:
            versions = cell_versions(cell, cell_dir)
            variables[_label(cell)] = (f"MLflow server {versions.get('mlflow.server', '?')}, client "
                                       f"{versions.get('mlflow.client', '?')} — {cell.get('status')}")
        environments.append({"id": environment_id(platform), "name": platform,
                             "platform": platform, "variables": variables})
    run_ids = sorted({str(c.get("run_id", "")) for _, c in cells if c.get("run_id")})
    variables = {"mlflow-matrix runs": ", ".join(run_ids), "cells": str(len(cells))}
    if executor.get("buildUrl"):
        variables["CI run"] = str(executor["buildUrl"])
    return {
        "name": REPORT_NAME,
        "output": str(output),
        "historyPath": str(reports / HISTORY_FILE),
        "historyLimit": HISTORY_LIMIT,
        "appendHistory": not _already_in_history(reports / HISTORY_FILE, cells),
        "environments": environments,
        "variables": {k: redact(v) for k, v in variables.items()},
        "categories": allure3_categories(),
    }


def _already_in_history(history: Path, cells: Sequence[tuple[Path, Mapping[str, Any]]]) -> bool:
    """True when the newest history entry is these very results (a report built twice):
    appending it again would show one run as two points in the trends."""
    try:
        lines = [ln for ln in history.read_text(encoding="utf-8").splitlines() if ln.strip()]
        last = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return False
    recorded = {str(r.get("id")) for r in (last.get("testResults") or {}).values()}
    current = set()
    for cell_dir, _ in cells:
        for path in (cell_dir / "allure-results").glob("*-result.json"):
            try:
                uid = json.loads(path.read_text(encoding="utf-8")).get("uuid", "")
            except (OSError, ValueError):
                continue
            current.add(hashlib.md5(str(uid).encode()).hexdigest())
    return bool(current) and current <= recorded


def _run_level_results(reports: Path, cells: Sequence[tuple[Path, Mapping[str, Any]]],
                       executor: Mapping[str, Any]) -> Path:
    """Run-wide environment.properties and executor.json, read last so they win.

    Allure keeps one global environment and one executor per report (the last file read);
    per-platform details live in the environments of the config.
    """
    from harness.reporting.enrich import allure2_categories, properties_text

    target = reports / RUN_RESULTS_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    summary: dict[str, str] = {}
    for cell_dir, cell in cells:
        versions = cell_versions(cell, cell_dir)
        extra = ", ".join(v for v in (versions.get("kubernetes") and f"k8s {versions['kubernetes']}",
                                      versions.get("juju") and f"juju {versions['juju']}",
                                      versions.get("sql.backend"), versions.get("s3.backend")) if v)
        summary[f"{cell.get('platform')}.{_label(cell)}"] = (
            f"MLflow {versions.get('mlflow.server', '?')} (client {versions.get('mlflow.client', '?')})"
            + (f"; {extra}" if extra else "") + f" — {cell.get('status')}")
    (target / "environment.properties").write_text(properties_text(summary), encoding="utf-8")
    (target / "executor.json").write_text(json.dumps(dict(executor), indent=1), encoding="utf-8")
    (target / "categories.json").write_text(json.dumps(allure2_categories(), indent=1),
                                            encoding="utf-8")
    return target


def _latest_executor(cells: Sequence[tuple[Path, Mapping[str, Any]]]) -> dict[str, Any]:
    """The executor of the newest cell (the run that produced it), else this machine."""
    for cell_dir, _ in sorted(cells, key=lambda c: float(c[1].get("started") or 0),
                              reverse=True):
        path = cell_dir / "allure-results" / "executor.json"
        try:
            executor: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return executor
        except (OSError, ValueError):
            continue
    run_id = next((str(c.get("run_id")) for _, c in cells if c.get("run_id")), "")
    return executor_info(run_id)


def build_allure_report(reports: Path, cells: Sequence[tuple[Path, Mapping[str, Any]]], *,
                        timeout: float = 900,
                        progress: Callable[[str], None] | None = None) -> Path:
    """Generate reports/allure-report/ from every cell's allure-results; returns index.html."""
    say = progress or (lambda text: None)
    cli = allure_cli()
    output = reports / REPORT_DIR
    dirs = [cell_dir / "allure-results" for cell_dir, _ in cells
            if any((cell_dir / "allure-results").glob("*-result.json"))]
    if not dirs:
        raise InfrastructureError(f"no Allure results under {reports}",
                                  hint="run `tox -e matrix` (or `mlflow-matrix run`) first")
    executor = _latest_executor(cells)
    run_level = _run_level_results(reports, cells, executor)
    settings = reports / SETTINGS_FILE
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(report_settings(reports, cells, output, executor), indent=1),
                        encoding="utf-8")
    shutil.rmtree(output, ignore_errors=True)
    argv = [str(cli), "generate", "--config", str(CONFIG), "--output", str(output),
            *[_relative(d, reports) for d in [*dirs, run_level]]]
    say(f"allure generate: {len(dirs)} result folder(s) → {output}")
    t0 = time.monotonic()
    env = {"MLFLOW_MATRIX_ALLURE_SETTINGS": str(settings), "NO_COLOR": "1",
           "PATH": f"{TOOLS_DIR / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    run(argv, cwd=reports, env=env, timeout=timeout)
    index = output / "index.html"
    missing = [p for p in (index, output / MULTI_FILE / "index.html",
                           output / SINGLE_FILE / "index.html") if not p.is_file()]
    if missing:
        raise InfrastructureError(f"allure generate wrote no {', '.join(map(str, missing))}",
                                  hint=f"run it by hand: {' '.join(argv)}")
    say(f"allure generate: done in {time.monotonic() - t0:.1f}s")
    return index


def _relative(path: Path, base: Path) -> str:
    """Result folders relative to reports/. The CLI globs them (no escaping: it sets
    windowsPathsNoEscape); platform and cell names hold no glob characters (matrix.py)."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def iter_cells(reports: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    """(cell dir, cell.json) for every cell under reports/, platforms then cells sorted."""
    for path in sorted(reports.glob("*/*/cell.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            yield path.parent, data
