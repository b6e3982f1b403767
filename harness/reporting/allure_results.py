"""Allure results the harness writes itself: one per lifecycle phase of a cell.

Scenario results come from allure-pytest inside the cell; phases (provision, deploy, upgrade,
collect, teardown) are written here with the same labels, so a failed deploy is one *broken*
result with the logs attached instead of forty failed scenarios.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.matrix import Cell
from harness.system.redact import redact

PHASE_SUITE = "lifecycle"
PHASE_TRACE_MARKER = "[mlflow-matrix lifecycle phase:"


@dataclass
class PhaseResult:
    phase: str
    status: str  # passed | failed | broken | skipped
    start_ms: int
    stop_ms: int
    message: str = ""
    trace: str = ""
    attachments: list[Path] = field(default_factory=list)
    known_defect: dict[str, Any] | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def cell_labels(cell: Cell, suite: str) -> list[dict[str, str]]:
    return [
        {"name": "platform", "value": cell.platform.name},
        {"name": "channel", "value": cell.channel_label},
        {"name": "mlflow_version", "value": cell.mlflow_label},
        {"name": "scenario", "value": suite},
        {"name": "parentSuite", "value": cell.platform.name},
        {"name": "suite", "value": suite},
        {"name": "subSuite", "value": cell.channel_label},
        {"name": "epic", "value": "Charmed MLflow"},
        {"name": "feature", "value": "Lifecycle"},
        {"name": "framework", "value": "mlflow-matrix"},
    ]


def write_phase_result(results_dir: Path, cell: Cell, result: PhaseResult) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    full_name = f"lifecycle.{result.phase}"
    params = [{"name": "platform", "value": cell.platform.name},
              {"name": "channel", "value": cell.channel_label}]
    history = hashlib.md5(
        (full_name + "".join(f"{p['name']}={p['value']}" for p in params)).encode()
    ).hexdigest()
    attachments = []
    for path in result.attachments:
        if not path.is_file():
            continue
        source = f"{uuid.uuid4()}-attachment{path.suffix or '.txt'}"
        text = path.read_text(encoding="utf-8", errors="replace")
        (results_dir / source).write_text(redact(text), encoding="utf-8")
        attachments.append({"name": path.name, "source": source,
                            "type": mimetypes.guess_type(path.name)[0] or "text/plain"})
    links = []
    if result.known_defect:
        links.append({"type": "issue", "url": result.known_defect["link"],
                      "name": f"known defect {result.known_defect['id']}"})
    body = {
        "uuid": str(uuid.uuid4()),
        "historyId": history,
        "testCaseId": hashlib.md5(full_name.encode()).hexdigest(),
        "name": f"{result.phase} — {cell.title}",
        "fullName": full_name,
        "status": result.status,
        "statusDetails": {"message": redact(result.message),
                          # the marker lets Allure 2 categories.json (no label matchers) tell
                          # infrastructure failures apart: see harness/reporting/enrich.py
                          "trace": (f"{PHASE_TRACE_MARKER} {result.phase}]\n{redact(result.trace)}"
                                    if result.status != "passed" else redact(result.trace)),
                          "known": bool(result.known_defect)},
        "stage": "finished",
        "start": result.start_ms,
        "stop": result.stop_ms,
        "labels": cell_labels(cell, PHASE_SUITE),
        "parameters": params,
        "links": links,
        "attachments": attachments,
        "steps": [],
    }
    out = results_dir / f"{body['uuid']}-result.json"
    out.write_text(json.dumps(body, indent=1), encoding="utf-8")
    return out


def read_statuses(results_dir: Path) -> list[dict[str, Any]]:
    """Status, name and suite of every result in a directory (scenarios and phases)."""
    results: list[dict[str, Any]] = []
    if not results_dir.is_dir():
        return results
    for path in sorted(results_dir.glob("*-result.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        # allure-pytest writes a label without "value" when it has none (e.g. `package` of a
        # test file outside the rootdir)
        labels = {label.get("name", ""): label.get("value", "") for label in body.get("labels", [])}
        results.append({
            "uuid": body.get("uuid", ""),
            "name": body.get("name", ""),
            "fullName": body.get("fullName", ""),
            "status": body.get("status", "unknown"),
            "suite": labels.get("suite", ""),
            "message": (body.get("statusDetails") or {}).get("message", ""),
            "known": bool((body.get("statusDetails") or {}).get("known")) or any(
                tag.get("value") == "known-defect" for tag in body.get("labels", [])
                if tag.get("name") == "tag"),
            "duration_ms": max(0, (body.get("stop") or 0) - (body.get("start") or 0)),
            "informational": labels.get("informational") == "true",
        })
    return results


def clear_results(results_dir: Path) -> None:
    shutil.rmtree(results_dir, ignore_errors=True)
    results_dir.mkdir(parents=True, exist_ok=True)
