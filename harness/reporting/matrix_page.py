"""The one page a reviewer reads: reports/matrix.html, matrix.md and matrix.json.

Rows are scenario suites (each expands to its tests), columns are cells (platform × channel or
upgrade path) with the versions they ran above them. Every status links into the Allure report
(the single-file variant, so the page works from disk). Inputs are only what the runner left
under reports/: `<platform>/<cell>/cell.json` and `<platform>/<cell>/allure-results/`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.config.matrix import Matrix
from harness.reporting.allure_report import REPORT_DIR, SINGLE_FILE, iter_cells, result_link
from harness.reporting.allure_results import PHASE_SUITE, read_statuses
from harness.reporting.enrich import HARNESS_SUITE, cell_versions
from harness.reporting.run_folders import INDEX, RUNS_DIR, earlier_runs
from harness.system.redact import redact

SCHEMA = 1
# worst first: the status a suite (or cell) shows is the worst of its results
ORDER = ("failed", "broken", "interrupted", "known-defect", "passed", "skipped", "not-run")
LABELS = {"passed": "passed", "failed": "failed", "broken": "broken", "skipped": "skipped",
          "known-defect": "known defect", "interrupted": "interrupted", "not-run": "not run"}
ICONS = {"passed": "✅", "failed": "❌", "broken": "💥", "skipped": "⏭️", "known-defect": "🐞",
         "interrupted": "⏹️", "not-run": "➖"}
VERSION_ROWS = (("mlflow.server", "MLflow server"), ("mlflow.client", "MLflow client"),
                ("kubernetes", "Kubernetes"), ("juju", "Juju"), ("sql.backend", "SQL store"),
                ("s3.backend", "S3 store"))
REPORT_URL_ENV = "MLFLOW_MATRIX_REPORT_URL"  # where reports/ is published, for matrix.md links
MESSAGE_CHARS = 300
EARLIER_RUNS_SHOWN = 10
PHASE_ORDER = ("provision", "environment", "deploy", "upgrade", "restart", "collect", "teardown")


def collect_cells(reports: Path) -> list[dict[str, Any]]:
    """Every cell.json under reports/ (kept for callers of the first version)."""
    return [cell for _, cell in iter_cells(reports)]


def display_status(result: Mapping[str, Any]) -> str:
    status = str(result.get("status", "unknown"))
    if result.get("known") and status == "skipped":
        return "known-defect"
    return status if status in ORDER else "broken"


def worst(statuses: Sequence[str]) -> str:
    return min(statuses, key=ORDER.index) if statuses else "not-run"


def _first_line(text: str | None) -> str:
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    line = redact(line).removeprefix("error: ")  # MatrixError.render()'s prefix
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS - 1] + "…"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _column_order(matrix: Matrix | None, cell: Mapping[str, Any]) -> tuple[Any, ...]:
    platform, channel = str(cell.get("platform", "")), str(cell.get("channel", ""))
    platforms = list(matrix.platforms) if matrix else []
    channels = list(matrix.channels) if matrix else []
    source = channel.split("→")[0]
    return (platforms.index(platform) if platform in platforms else len(platforms),
            _natural(platform), bool(cell.get("upgrade")),
            channels.index(source) if source in channels else len(channels), _natural(channel))


# ---------------------------------------------------------------- the model


def build_model(reports: Path, matrix: Matrix | None = None) -> dict[str, Any]:
    """Everything the three outputs show, as plain data (this is matrix.json)."""
    allure_index = reports / REPORT_DIR / SINGLE_FILE / "index.html"
    cells_found = sorted(iter_cells(reports), key=lambda c: _column_order(matrix, c[1]))
    newest = max((float(c.get("started") or 0) + float(c.get("duration_s") or 0)
                  for _, c in cells_found), default=0.0)
    allure_fresh = allure_index.is_file() and allure_index.stat().st_mtime >= newest
    columns = []
    suites_seen: dict[str, None] = {}
    for cell_dir, cell in cells_found:
        columns.append(_column(reports, cell_dir, cell, suites_seen))
    ordered = [s for s in (matrix.suites if matrix else {}) if s in suites_seen]
    ordered += sorted(s for s in suites_seen if s not in ordered)
    rows = [_row(PHASE_SUITE, columns, lifecycle=True)]
    if any(HARNESS_SUITE in c["suites"] for c in columns):
        rows.append(_row(HARNESS_SUITE, columns))
    rows += [_row(suite, columns) for suite in ordered]
    totals = Counter(c["display_status"] for c in columns)
    version_rows = [(key, title) for key, title in VERSION_ROWS
                    if any(c["versions"].get(key) for c in columns)]
    return {
        "schema": SCHEMA,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_ids": sorted({c["run_id"] for c in columns if c["run_id"]}),
        "allure_report": {
            "single_file": f"{REPORT_DIR}/{SINGLE_FILE}/index.html" if allure_index.is_file() else None,
            "multi_file": f"{REPORT_DIR}/index.html" if (reports / REPORT_DIR / "index.html").is_file()
            else None,
            "fresh": allure_fresh,
        },
        "totals": dict(sorted(totals.items(), key=lambda kv: ORDER.index(kv[0]))),
        "version_rows": [{"key": k, "title": t} for k, t in version_rows],
        "suites": ordered,
        "earlier_runs": earlier_runs(reports)[:EARLIER_RUNS_SHOWN],
        "cells": columns,
        "rows": rows,
    }


def _column(reports: Path, cell_dir: Path, cell: Mapping[str, Any],
            suites_seen: dict[str, None]) -> dict[str, Any]:
    results = read_statuses(cell_dir / "allure-results")
    suites: dict[str, dict[str, Any]] = {}
    for result in sorted(results, key=lambda r: (r.get("suite", ""), r.get("name", ""))):
        suite = result.get("suite") or "other"
        if suite not in (PHASE_SUITE, HARNESS_SUITE):
            suites_seen.setdefault(suite, None)
        entry = suites.setdefault(suite, {"tests": []})
        entry["tests"].append({
            "name": result.get("name", ""),
            "fullName": result.get("fullName", ""),
            "status": result.get("status", ""),
            "display_status": display_status(result),
            "known": bool(result.get("known")),
            "message": _first_line(result.get("message")),
            "duration_ms": result.get("duration_ms", 0),
            "informational": bool(result.get("informational")),
            "link": result_link(result["uuid"]) if result.get("uuid") else None,
        })
    for entry in suites.values():
        _summarise(entry)
    scenario_tests = [t for s, e in suites.items() if s not in (PHASE_SUITE, HARNESS_SUITE)
                      for t in e["tests"] if not t["informational"]]
    counts = Counter(t["display_status"] for t in scenario_tests)
    status = str(cell.get("status", "broken"))
    display = status if status in ORDER else "broken"
    link = None
    if display != "passed":
        bad = [t for e in suites.values() for t in e["tests"] if t["display_status"] == display]
        link = bad[0]["link"] if bad else None
    platform, cell_id = str(cell.get("platform", "")), str(cell.get("cell", ""))
    return {
        "platform": platform,
        "cell": cell_id,
        "column": f"{platform}/{cell_id}",
        "channel": str(cell.get("channel", "")),
        "upgrade": bool(cell.get("upgrade")),
        "mlflow_version": str(cell.get("mlflow_version", "")),
        "status": status,
        "display_status": display,
        "message": _first_line(str(cell.get("message", ""))),
        "duration_s": float(cell.get("duration_s") or 0),
        "duration": _duration(float(cell.get("duration_s") or 0)),
        "started": cell.get("started"),
        "run_id": str(cell.get("run_id", "")),
        "versions": cell_versions(cell, cell_dir),
        "procedure": _procedure(cell),
        "counts": dict(sorted(counts.items(), key=lambda kv: ORDER.index(kv[0]))),
        "tests": len(scenario_tests),
        "known_defects": counts.get("known-defect", 0),
        "phases": [{"name": p.get("name"), "status": p.get("status"),
                    "duration_s": p.get("duration_s"), "message": _first_line(p.get("message"))}
                   for p in cell.get("phases", [])],
        "link": link,
        "dir": str(cell_dir.relative_to(reports)) if cell_dir.is_relative_to(reports) else "",
        "suites": suites,
    }


def _procedure(cell: Mapping[str, Any]) -> dict[str, Any] | None:
    """The documented procedure an upgrade or restore cell followed (guides, with their
    pages), or "no published guide"; None for a channel cell."""
    body = cell.get("procedure") or {}
    if not body:
        return None
    guides = [{"title": str(g.get("title", "")), "url": str(g.get("url", ""))}
              for g in body.get("guides") or []]
    return {"guides": guides, "note": str(body.get("note", "")),
            "migration": str(body.get("migration", ""))}


def _procedure_text(procedure: Mapping[str, Any] | None, esc: Callable[[str], str]) -> str:
    if not procedure:
        return "—"
    if not procedure["guides"]:
        return esc(procedure["note"] or "no published guide")
    return " + ".join(f"[{esc(g['title'])}]({g['url']})" for g in procedure["guides"])


def _summarise(entry: dict[str, Any]) -> None:
    """A suite's status: the worst of its results; informational ones (an old client after an
    upgrade) count only when there is nothing else, as in the runner."""
    tests = [t for t in entry["tests"] if not t["informational"]] or entry["tests"]
    entry["display_status"] = worst([t["display_status"] for t in tests])
    entry["counts"] = dict(sorted(Counter(t["display_status"] for t in tests).items(),
                                  key=lambda kv: ORDER.index(kv[0])))
    informational = len(entry["tests"]) - len(tests)
    if informational:
        entry["informational"] = informational
    target = next((t for t in tests if t["display_status"] == entry["display_status"]), None)
    entry["link"] = target["link"] if target else None
    entry["message"] = target["message"] if target and entry["display_status"] not in (
        "passed",) else ""


def _row(suite: str, columns: Sequence[Mapping[str, Any]], *, lifecycle: bool = False
         ) -> dict[str, Any]:
    """One suite across all columns, and its tests (union over columns) as sub-rows."""
    cells: list[dict[str, Any]] = []
    tests: dict[str, str] = {}
    for column in columns:
        entry = column["suites"].get(suite)
        if entry is None and suite == HARNESS_SUITE:  # the usual case: nothing went wrong
            cells.append({"display_status": "not-run", "label": "none", "counts": {},
                          "link": None, "message": "no harness error in this cell"})
            continue
        if entry is None:
            reason = ("not run: " + column["message"]) if column["message"] else "not run here"
            cells.append({"display_status": "not-run", "label": LABELS["not-run"],
                          "counts": {}, "link": None, "message": reason})
            continue
        for test in entry["tests"]:
            key = _test_key(test, lifecycle)
            tests.setdefault(key, _test_title(test, lifecycle))
        cells.append({"display_status": entry["display_status"],
                      "label": LABELS[entry["display_status"]], "counts": entry["counts"],
                      "link": entry["link"], "message": entry["message"],
                      "informational": entry.get("informational", 0)})
    if lifecycle:
        tests = dict(sorted(tests.items(), key=lambda kv: (
            PHASE_ORDER.index(kv[1]) if kv[1] in PHASE_ORDER else len(PHASE_ORDER), kv[1])))
    test_rows = []
    for key, title in tests.items():
        row_cells: list[dict[str, Any]] = []
        for column in columns:
            matches = [t for t in column["suites"].get(suite, {}).get("tests", [])
                       if _test_key(t, lifecycle) == key]
            if not matches:
                row_cells.append({"display_status": "not-run",
                                  "label": "none" if suite == HARNESS_SUITE else LABELS["not-run"],
                                  "link": None, "message": ""})
                continue
            status = worst([t["display_status"] for t in matches])
            chosen = next(t for t in matches if t["display_status"] == status)
            label = LABELS[status] + (" (informational)" if all(t["informational"] for t in matches)
                                      else "")
            row_cells.append({"display_status": status, "label": label,
                              "link": chosen["link"], "message": chosen["message"],
                              "runs": len(matches)})
        test_rows.append({"key": key, "title": title, "cells": row_cells})
    # a suite with a failure opens by itself: the reader sees which test without a click
    opened = any(c["display_status"] in ("failed", "broken") for c in cells)
    return {"suite": suite, "lifecycle": lifecycle, "open": opened, "cells": cells,
            "tests": test_rows}


def _test_key(test: Mapping[str, Any], lifecycle: bool) -> str:
    """Same test in two columns: same fullName plus, for a parametrized test, its parameter id
    (allure-pytest's fullName leaves the parameters out; phase names carry the cell title)."""
    full = str(test.get("fullName") or test.get("name"))
    name = str(test.get("name") or "")
    if lifecycle or "[" not in name or not name.endswith("]"):
        return full
    return f"{full}[{name.split('[', 1)[1]}"


def _test_title(test: Mapping[str, Any], lifecycle: bool) -> str:
    """Phase and harness results carry the cell in their name; their fullName does not."""
    full = str(test.get("fullName", ""))
    for prefix in (f"{PHASE_SUITE}.", f"{HARNESS_SUITE}."):
        if full.startswith(prefix):
            return full.removeprefix(prefix)
    return str(test.get("name") or full)


# ---------------------------------------------------------------- writers


def render_html(model: Mapping[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    platforms: list[dict[str, Any]] = []
    for column in model["cells"]:
        if platforms and platforms[-1]["name"] == column["platform"]:
            platforms[-1]["span"] += 1
        else:
            platforms.append({"name": column["platform"], "span": 1})
    return env.get_template("matrix.html.j2").render(
        m=model, platforms=platforms, labels=LABELS)


def render_markdown(model: Mapping[str, Any], base_url: str | None = None) -> str:
    """GitHub-flavoured Markdown for a job summary; links only when reports/ has a URL."""
    columns = model["cells"]

    def link(text: str, target: str | None) -> str:
        return f"[{text}]({base_url.rstrip('/')}/{target})" if base_url and target else text

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    totals = " · ".join(f"{ICONS[s]} {n} {LABELS[s]}" for s, n in model["totals"].items())
    out = [f"## Charmed MLflow matrix — {totals or 'no cells'}", ""]
    out += _regression_markdown(model.get("regressions"), link, esc)
    if not columns:
        return "\n".join([*out, "No cell results found under reports/.", ""])
    head = [""] + [f"{c['platform']}<br>{esc(c['channel'])}" for c in columns]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in model["version_rows"]:
        out.append(f"| *{row['title']}* | "
                   + " | ".join(esc(c["versions"].get(row["key"], "—")) for c in columns) + " |")
    if any(c.get("procedure") for c in columns):
        out.append("| *guide followed* | " + " | ".join(_procedure_text(c.get("procedure"), esc)
                                                     for c in columns) + " |")
    status_cells = []
    for c in columns:
        text = f"{ICONS[c['display_status']]} {LABELS[c['display_status']]} · {c['duration']}"
        if c["display_status"] != "passed" and c["message"]:
            text += f": {esc(c['message'])}"
        if c["known_defects"]:
            text += f" · 🐞 {c['known_defects']} known defect(s)"
        status_cells.append(link(text, c["link"]))
    out.append("| **cell** | " + " | ".join(status_cells) + " |")
    for row in model["rows"]:
        cells = []
        for cell in row["cells"]:
            counts = ", ".join(f"{n} {LABELS[s]}" for s, n in cell["counts"].items())
            if cell.get("informational"):
                counts += f" (+{cell['informational']} informational)"
            cells.append(link(f"{ICONS[cell['display_status']]} {counts or cell['label']}",
                              cell["link"]))
        out.append(f"| {row['suite']} | " + " | ".join(cells) + " |")
    out.append("")
    for row in model["rows"]:
        if row["lifecycle"] or not row["tests"]:
            continue
        out += [f"<details><summary>{row['suite']}: {_tests_label(row)}</summary>", "",
                "| test | " + " | ".join(f"{c['platform']} {esc(c['channel'])}" for c in columns)
                + " |", "|" + "---|" * (len(columns) + 1)]
        for test in row["tests"]:
            out.append(f"| {esc(test['title'])} | " + " | ".join(
                link(ICONS[t["display_status"]], t["link"]) for t in test["cells"]) + " |")
        out += ["", "</details>", ""]
    legend = " · ".join(f"{ICONS[s]} {LABELS[s]}" for s in ORDER)
    where = ("" if base_url else " Open `reports/matrix.html` for links into the Allure report.")
    out += [f"<sub>{legend}. Runs: {', '.join(model['run_ids'])}.{where}</sub>", ""]
    if model.get("earlier_runs"):
        runs = ", ".join(link(f"{r['run_id']} ({r['status']})", r["page"])
                         for r in model["earlier_runs"])
        out += [f"Earlier runs (not on this page): {runs} · all in "
                f"{link(f'{RUNS_DIR}/{INDEX}', f'{RUNS_DIR}/{INDEX}')}.", ""]
    return "\n".join(out)


def _regression_markdown(regressions: Mapping[str, Any] | None, link: Any, esc: Any) -> list[str]:
    if not regressions:
        return []
    from harness.reporting.history import regression_lines

    lines = regression_lines(regressions)
    since = regressions.get("previous_generated") or "the previous report"
    if not lines:
        return [f"No regression since {since}.", ""]
    out = [f"> [!CAUTION]\n> **{len(lines)} regression(s) since {since}** "
           "(green then, red or missing now):"]
    cells = [*regressions.get("cells", []), *regressions.get("missing", [])]
    for line, cell in zip(lines, cells, strict=True):
        out.append(f"> - {link(esc(line), cell.get('link'))}")
    return [*out, ""]


def _tests_label(row: Mapping[str, Any]) -> str:
    """How many tests a suite row holds; a test that ran in several phases of one cell (an
    upgrade's before/after, a restart) says so, so the count agrees with the results."""
    tests = len(row["tests"])
    runs = max((sum(c.get("runs", 0) for c in [t["cells"][i] for t in row["tests"]])
                for i in range(len(row["tests"][0]["cells"]))), default=tests) if tests else 0
    return f"{tests} test(s)" + (f", {runs} results in one cell" if runs > tests else "")


def write_matrix_page(reports: Path, matrix: Matrix | None = None, *,
                      previous: Mapping[str, Any] | None = None) -> list[Path]:
    """Write reports/matrix.json, matrix.md and matrix.html; returns their paths.

    `previous`: the previous report's matrix.json; regressions against it go on top of the page.
    """
    reports.mkdir(parents=True, exist_ok=True)
    model = build_model(reports, matrix)
    if previous is not None:
        from harness.reporting.history import find_regressions

        model["regressions"] = find_regressions(previous, model)
    out_json, out_md, out_html = (reports / f"matrix.{ext}" for ext in ("json", "md", "html"))
    public = {k: v for k, v in model.items() if k != "rows"}  # rows repeat what cells hold
    out_json.write_text(json.dumps(public, indent=1, ensure_ascii=False), encoding="utf-8")
    out_md.write_text(redact(render_markdown(model, os.environ.get(REPORT_URL_ENV))),
                      encoding="utf-8")
    out_html.write_text(redact(render_html(model)), encoding="utf-8")
    return [out_json, out_md, out_html]
