"""The closing summary: every cell that is not plain passed, its reason and the file to open."""

from __future__ import annotations

from pathlib import Path

from harness.run.summary import CellLine, log_for, render


def test_lists_every_non_green_cell_with_reason_and_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failed = tmp_path / "reports" / "local" / "2.22-stable"
    broken = tmp_path / "reports" / "local-mysql" / "latest-edge"
    (failed).mkdir(parents=True)
    (failed / "pytest.log").write_text("1 failed")
    (broken / "diagnostics").mkdir(parents=True)
    lines = render([
        CellLine("local · 2.15/stable", "passed", "", None),
        CellLine("local · 2.22/stable", "failed",
                 "scenarios tracking: 1 failed, 46 passed in 12s\nmore",
                 log_for(failed, failed / "pytest.log")),
        CellLine("local-mysql · latest/edge", "broken", "error: deploy: MariaDB did not start",
                 log_for(broken, None)),
        CellLine("local-mysql · 2.15/stable", "known-defect", "known defect x", None),
    ], run_id="r1", duration_s=75, matrix_page=Path("reports/matrix.md"))
    text = "\n".join(lines)
    assert lines[0] == ("summary of run r1: 1 broken, 1 failed, 1 known defect, 1 passed "
                        "(4 cell(s) in 1m 15s)")
    assert "BROKEN        local-mysql · latest/edge: deploy: MariaDB did not start" in text
    assert "log: reports/local-mysql/latest-edge/diagnostics" in text
    assert "FAILED        local · 2.22/stable: scenarios tracking: 1 failed, 46 passed in 12s" in text
    assert "log: reports/local/2.22-stable/pytest.log" in text
    assert "KNOWN DEFECT  local-mysql · 2.15/stable: known defect x" in text
    assert "local · 2.15/stable:" not in text  # passed: no line
    assert lines[-1] == "matrix: reports/matrix.md"
    assert text.index("BROKEN") < text.index("FAILED") < text.index("KNOWN DEFECT")


def test_a_known_defect_cell_names_the_defects_it_reproduced(tmp_path):
    """The plugin links each reproduced defect as "known defect <id>"; the cell's message (and
    so the summary's KNOWN DEFECT line) names them, with how many tests each."""
    import json

    from harness.reporting.allure_results import read_statuses
    from harness.run.cell import _defects_line

    results = tmp_path / "allure-results"
    results.mkdir()
    for i, defect in enumerate(["mlflow-unicode-name", "mlflow-unicode-name", "charm-no-migrate"]):
        (results / f"{i}-result.json").write_text(json.dumps({
            "uuid": str(i), "name": f"t{i}", "status": "skipped",
            "statusDetails": {"known": True, "message": "known defect"},
            "links": [{"name": f"known defect {defect}", "url": "https://example.org/d"}],
            "labels": [{"name": "tag", "value": "known-defect"}]}))
    found = read_statuses(results)
    assert sorted(r["defect"] for r in found) == ["charm-no-migrate", "mlflow-unicode-name",
                                                   "mlflow-unicode-name"]
    counts = {"mlflow-unicode-name": 2, "charm-no-migrate": 1}
    line = _defects_line(counts)
    assert line == ("known defects reproduced: charm-no-migrate (1 test), "
                    "mlflow-unicode-name (2 tests)")
    (summary,) = [s for s in render([CellLine("local · 2.22/stable", "known-defect", line, None)],
                                    run_id="r", duration_s=1, matrix_page=None) if "KNOWN" in s]
    assert "charm-no-migrate (1 test)" in summary
