"""What Allure needs besides the results: environment, categories, executor — per cell.

Called by the runner when a cell ends (`enrich_cell`), and again by `mlflow-matrix report` for
every cell it finds, so results copied together from several CI jobs are complete too. Every
file is derived from the cell's `cell.json` and `diagnostics/`, written redacted, and
idempotent: enriching twice gives the same files.

- `environment.properties`: platform, Kubernetes/Juju versions when the platform has them,
  channel, MLflow server and client versions, SQL and S3 backends.
- `categories.json` (Allure 2 format): known defects, infrastructure failures (lifecycle phase
  results, suite label `lifecycle`), harness errors, product failures. Allure 3 reads its
  categories from the config instead: `allure3_categories()` gives the same rules there.
- `executor.json`: the run id and, on CI, the link to the CI run.
- a *harness* result when the cell ended failed/broken/interrupted and no result says why
  (a harness bug, pytest unable to collect, a timeout): otherwise Allure would show it green.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.reporting.allure_results import PHASE_SUITE, PHASE_TRACE_MARKER, read_statuses
from harness.system.redact import redact

HARNESS_SUITE = "harness"
HARNESS_TRACE_MARKER = "[mlflow-matrix harness error]"
KNOWN_DEFECT_TAG = "known-defect"
LOG_TAIL_LINES = 200

# A scenario that raised one of these (instead of failing an assert) still met the product:
# the server answered with an error. Anything else broken in a scenario is the harness's.
PRODUCT_EXCEPTIONS = ("MlflowException", "RestException", "ClientError", "botocore.exceptions",
                      "requests.exceptions", "HTTPError")


@dataclass(frozen=True)
class Category:
    """One failure bucket, written for Allure 3 (config) and Allure 2 (categories.json).

    Allure 3 takes the first rule that matches and can match labels; Allure 2 puts a result
    in every category that matches and knows only status, message and trace (full-match Java
    regular expressions), so its rules are written to be mutually exclusive.
    """

    name: str
    description: str
    allure3: tuple[dict[str, Any], ...]
    allure2: tuple[dict[str, Any], ...]
    expand: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


_PRODUCT = "|".join(re.escape(e) for e in PRODUCT_EXCEPTIONS)
_MARKERS = r"\[mlflow-matrix "

CATEGORIES: tuple[Category, ...] = (
    Category(
        "Known defects",
        "Listed in matrix.yaml known_defects: expected to fail (strict xfail), shown with the "
        "link to the defect.",
        allure3=({"statuses": ["skipped"], "labels": {"tag": f"^{KNOWN_DEFECT_TAG}$"}},
                 {"statuses": ["skipped"], "message": "known defect"}),
        allure2=({"matchedStatuses": ["skipped"], "messageRegex": r"[\s\S]*known defect[\s\S]*"},),
    ),
    Category(
        "Known defects no longer reproducing (XPASS)",
        "A known defect passed: it is fixed here, remove it from known_defects in matrix.yaml.",
        allure3=({"statuses": ["failed"], "labels": {"tag": f"^{KNOWN_DEFECT_TAG}$"}},
                 {"statuses": ["failed"], "message": "XPASS|no longer reproduces"}),
        allure2=({"matchedStatuses": ["failed"],
                  "messageRegex": r"[\s\S]*(XPASS|no longer reproduces)[\s\S]*"},),
        expand=True,
    ),
    Category(
        "Infrastructure failures",
        "A lifecycle phase (provision, environment, deploy, upgrade, restart, collect, teardown) "
        "failed: the platform, not MLflow's behaviour. Diagnostics are attached.",
        allure3=({"statuses": ["failed", "broken"], "labels": {"suite": f"^{PHASE_SUITE}$"}},),
        allure2=({"matchedStatuses": ["failed", "broken"],
                  "traceRegex": re.escape(PHASE_TRACE_MARKER) + r"[\s\S]*"},),
        expand=True,
    ),
    Category(
        "Harness errors",
        "The harness or a scenario's own code broke (not an assertion, not an MLflow/S3 error): "
        "fix the harness, the result says nothing about the product.",
        allure3=({"statuses": ["failed", "broken"], "labels": {"suite": f"^{HARNESS_SUITE}$"}},
                 {"statuses": ["broken"], "trace": f"^(?![\\s\\S]*({_PRODUCT}))"}),
        allure2=({"matchedStatuses": ["failed", "broken"],
                  "traceRegex": re.escape(HARNESS_TRACE_MARKER) + r"[\s\S]*"},
                 {"matchedStatuses": ["broken"],
                  "traceRegex": f"(?!{_MARKERS})(?![\\s\\S]*({_PRODUCT}))[\\s\\S]*"}),
        expand=True,
    ),
    Category(
        "Product failures",
        "A scenario saw Charmed MLflow misbehave: an assertion failed or the server/S3 answered "
        "with an error.",
        allure3=({"statuses": ["failed", "broken"]},),
        allure2=({"matchedStatuses": ["failed"],
                  "messageRegex": r"(?![\s\S]*(XPASS|no longer reproduces))[\s\S]*",
                  "traceRegex": f"(?!{_MARKERS})[\\s\\S]*"},
                 {"matchedStatuses": ["broken"],
                  "traceRegex": f"(?!{_MARKERS})[\\s\\S]*({_PRODUCT})[\\s\\S]*"}),
        expand=True,
    ),
)


def allure2_categories() -> list[dict[str, Any]]:
    """categories.json: one entry per rule; entries with the same name form one category."""
    return [{"name": c.name, "description": c.description, **rule}
            for c in CATEGORIES for rule in c.allure2]


def allure3_categories() -> list[dict[str, Any]]:
    """The `categories` of the Allure 3 config (object matchers; strings are regexes)."""
    return [{"id": re.sub(r"[^a-z0-9]+", "-", c.name.lower()).strip("-"), "name": c.name,
             "matchers": list(c.allure3), "groupBy": ["environment"], "groupByMessage": True,
             "expand": c.expand}
            for c in CATEGORIES]


# ---------------------------------------------------------------- executor


def executor_info(run_id: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Who ran the cell: the run id always, the CI run and its link when there is one."""
    env = os.environ if environ is None else environ
    info: dict[str, Any] = {"name": "mlflow-matrix", "type": "local",
                            "buildName": f"mlflow-matrix run {run_id}",
                            "reportName": "Charmed MLflow matrix"}
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo_url = f"{server}/{env['GITHUB_REPOSITORY']}"
        run_url = f"{repo_url}/actions/runs/{env['GITHUB_RUN_ID']}"
        if env.get("GITHUB_RUN_ATTEMPT"):
            run_url += f"/attempts/{env['GITHUB_RUN_ATTEMPT']}"
        workflow = env.get("GITHUB_WORKFLOW", "workflow")
        number = env.get("GITHUB_RUN_NUMBER", "")
        info.update(name="GitHub Actions", type="github", url=repo_url, buildUrl=run_url,
                    buildName=f"{workflow} #{number} · mlflow-matrix run {run_id}".replace(" # ", " "))
        if number.isdigit():
            info["buildOrder"] = int(number)
    elif env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL"):  # GitLab CI
        info.update(name="GitLab CI", type="gitlab", url=env.get("CI_PROJECT_URL", ""),
                    buildUrl=env.get("CI_JOB_URL") or env.get("CI_PIPELINE_URL", ""),
                    buildName=f"pipeline {env.get('CI_PIPELINE_ID', '')} · mlflow-matrix run {run_id}")
    elif env.get("BUILD_URL"):  # Jenkins
        info.update(name="Jenkins", type="jenkins", buildUrl=env["BUILD_URL"],
                    buildName=f"{env.get('JOB_NAME', 'build')} #{env.get('BUILD_NUMBER', '')}"
                              f" · mlflow-matrix run {run_id}")
    return {key: redact(value) if isinstance(value, str) else value for key, value in info.items()}


# ---------------------------------------------------------------- environment


def _version(text: str | None) -> str:
    """`version 30GB 4.01 abc linux amd64` → 4.01; `mariadbd Ver 10.11.14-MariaDB…` → 10.11.14."""
    if not text:
        return ""
    match = re.search(r"\bv?(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else text.strip()[:40]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cell_versions(cell: Mapping[str, Any], cell_dir: Path) -> dict[str, str]:
    """Everything known about what a cell ran on, in reading order, empty values dropped.

    Sources: `cell.json` (written by the runner; `versions` may carry `mlflow_client`,
    `kubernetes`, `juju`, `s3`, `sql` from provisioners) and the platform diagnostics
    (`diagnostics/platform/platform.json`: e.g. `seaweedfs`, `mariadb`, `python`).
    """
    versions = {str(k): str(v) for k, v in (cell.get("versions") or {}).items() if v}
    platform = _read_json(cell_dir / "diagnostics" / "platform" / "platform.json")
    kind = str(cell.get("platform_kind", ""))
    bundle = bool(cell.get("on_kubernetes"))   # the Charmed MLflow bundle, stores as charms
    database = str(cell.get("database", "") or versions.get("database", ""))
    server = versions.get("mlflow_server") or str(cell.get("mlflow_version", ""))
    client = versions.get("mlflow_client") or (
        str(cell.get("mlflow_version", "")) if cell.get("upgrade") else server)
    sql = versions.get("sql") or versions.get("sql_backend") or ""
    if not sql:
        if database == "sqlite":
            sql = "SQLite"
        elif database == "mysql" and platform.get("mariadb"):
            sql = f"MariaDB {_version(platform['mariadb'])}"
        elif bundle:
            sql = "mysql-k8s charm (mlflow-mysql)"
        elif database:
            sql = {"mysql": "MySQL", "postgresql": "PostgreSQL"}.get(database, database)
    s3 = versions.get("s3") or versions.get("s3_backend") or ""
    if not s3:
        if platform.get("seaweedfs"):
            s3 = f"SeaweedFS {_version(platform['seaweedfs'])}"
        elif bundle:
            s3 = "minio charm (mlflow-minio)"
    out = {
        "platform": str(cell.get("platform", "")),
        "platform.kind": kind,
        "kubernetes": versions.get("kubernetes") or str(platform.get("kubernetes", "")),
        "juju": versions.get("juju") or str(platform.get("juju", "")),
        "channel": str(cell.get("channel", "")),
        "mlflow.server": server,
        "mlflow.client": client,
        "sql.backend": sql,
        "s3.backend": s3,
        "python": str(platform.get("python", "")),
    }
    skip = {"mlflow_server", "mlflow_client", "kubernetes", "juju", "s3", "s3_backend", "sql",
            "sql_backend", "database"}
    out.update({k.replace("_", "."): v for k, v in versions.items() if k not in skip})
    out["run.id"] = str(cell.get("run_id", ""))
    return {k: redact(v) for k, v in out.items() if v}


def _escape_property(text: str, key: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if key:
        text = re.sub(r"([=: #!])", r"\\\1", text)
    return text


def properties_text(values: Mapping[str, str]) -> str:
    return "".join(f"{_escape_property(k, key=True)}={_escape_property(v)}\n"
                   for k, v in values.items())


# ---------------------------------------------------------------- the harness result


def _stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mlflow-matrix:" + "/".join(parts)))


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])


def harness_result(cell: Mapping[str, Any], cell_dir: Path,
                   results: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A broken result for a cell that ended badly with nothing in Allure saying why."""
    status = cell.get("status")
    if status not in ("failed", "broken"):  # interrupted is a user's Ctrl-C, not a harness error
        return None
    if any(r.get("status") in ("failed", "broken") and r.get("suite") != HARNESS_SUITE
           for r in results):
        return None
    platform, cell_id, channel = (str(cell.get(k, "")) for k in ("platform", "cell", "channel"))
    run_id = str(cell.get("run_id", ""))
    uid = _stable_uuid(run_id, platform, cell_id, HARNESS_SUITE)
    message = str(cell.get("message") or f"the cell ended {status} without a result saying why")
    attachments = []
    for index, log in enumerate(sorted(cell_dir.glob("pytest*.log"))):
        tail = _log_tail(log)
        if tail:
            source = f"{_stable_uuid(uid, str(index))}-attachment.txt"
            (cell_dir / "allure-results" / source).write_text(redact(tail), encoding="utf-8")
            attachments.append({"name": f"{log.name} (last {LOG_TAIL_LINES} lines)",
                                "source": source, "type": "text/plain"})
    full_name = f"{HARNESS_SUITE}.cell"
    params = [{"name": "platform", "value": platform}, {"name": "channel", "value": channel}]
    labels = [
        {"name": "platform", "value": platform},
        {"name": "channel", "value": channel},
        {"name": "mlflow_version", "value": str(cell.get("mlflow_version", ""))},
        {"name": "scenario", "value": HARNESS_SUITE},
        {"name": "parentSuite", "value": platform},
        {"name": "suite", "value": HARNESS_SUITE},
        {"name": "subSuite", "value": channel},
        {"name": "epic", "value": "Charmed MLflow"},
        {"name": "feature", "value": "Harness"},
        {"name": "framework", "value": "mlflow-matrix"},
    ]
    started = int(float(cell.get("started") or 0) * 1000)
    stop = started + int(float(cell.get("duration_s") or 0) * 1000)
    return {
        "uuid": uid,
        "historyId": hashlib.md5((full_name + platform + channel).encode()).hexdigest(),
        "testCaseId": hashlib.md5(full_name.encode()).hexdigest(),
        "name": f"harness — {platform} · {channel}",
        "fullName": full_name,
        "status": "broken",
        "statusDetails": {"message": redact(message),
                          "trace": f"{HARNESS_TRACE_MARKER}\ncell {platform}/{cell_id} ended "
                                   f"{status}; the logs attached are the scenario runs'."},
        "stage": "finished",
        "start": started,
        "stop": stop,
        "labels": labels,
        "parameters": params,
        "links": [],
        "attachments": attachments,
        "steps": [],
    }


# ---------------------------------------------------------------- per cell


def _unquoted(value: Any) -> Any:
    if not isinstance(value, str) or len(value) < 2 or value[0] not in "'\"" \
            or value[-1] != value[0]:
        return value
    try:
        text = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return text if isinstance(text, str) else value


def unquote_parameters(results_dir: Path) -> int:
    """allure-pytest stores parameter values as repr(): `'local'`. Show the value itself;
    returns how many result files changed."""
    changed = 0
    for path in sorted(results_dir.glob("*-result.json")):
        body = _read_json(path)
        params = body.get("parameters") or []
        fixed = [{**p, "value": _unquoted(p.get("value"))} for p in params]
        if fixed != params:
            body["parameters"] = fixed
            path.write_text(json.dumps(body, indent=1), encoding="utf-8")
            changed += 1
    return changed


def enrich_cell(cell_dir: Path, *, environ: Mapping[str, str] | None = None,
                keep_executor: bool = False) -> list[Path]:
    """Write the Allure side files for one cell; returns them. Never raises: a report problem
    must not hide the cell's own result (a warning goes to stderr instead).

    `keep_executor`: leave an existing executor.json alone (report time: the executor is the
    run that produced the results, not the machine that builds the report).
    """
    try:
        return _enrich_cell(cell_dir, environ, keep_executor)
    except Exception as exc:
        print(f"warning: could not write Allure environment/categories/executor for {cell_dir}: "
              f"{type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        return []


def _enrich_cell(cell_dir: Path, environ: Mapping[str, str] | None,
                 keep_executor: bool) -> list[Path]:
    cell = _read_json(cell_dir / "cell.json")
    if not cell:
        return []
    results_dir = cell_dir / "allure-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    env_file = results_dir / "environment.properties"
    env_file.write_text(properties_text(cell_versions(cell, cell_dir)), encoding="utf-8")
    written.append(env_file)
    categories = results_dir / "categories.json"
    categories.write_text(json.dumps(allure2_categories(), indent=1), encoding="utf-8")
    written.append(categories)
    executor = results_dir / "executor.json"
    if not (keep_executor and executor.is_file()):
        executor.write_text(json.dumps(executor_info(str(cell.get("run_id", "")), environ),
                                       indent=1), encoding="utf-8")
    written.append(executor)
    unquote_parameters(results_dir)
    result = harness_result(cell, cell_dir, read_statuses(results_dir))
    if result is not None:
        path = results_dir / f"{result['uuid']}-result.json"
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        written.append(path)
    return written
