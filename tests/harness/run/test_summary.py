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


def test_names_failed_tests_defects_skips_and_partial_selection(tmp_path, monkeypatch):
    import json

    from harness.run.summary import cell_line

    monkeypatch.chdir(tmp_path)
    cell_dir = tmp_path / "reports" / "local" / "2.22-stable"
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(json.dumps({
        "failed_tests": [{"test": "test_search_runs_pages", "status": "broken",
                          "message": "ConnectionResetError: [Errno 104] reset by peer"}],
        "known_defects": ["mlflow-search-model-versions-no-aliases"],
        "skips": [{"test": "test_upload[plain]", "reason": "no canary directory here"}],
        "partial": {"selected": 1, "total": 48, "by": ["-k", "search"]}}))
    lines = render([cell_line("local · 2.22/stable", "failed", "scenarios tracking: 1 failed",
                              cell_dir, None),
                    CellLine("local · 2.15/stable", "passed", "", None, (),
                             "partial: 3 of 48 tests selected (-k search)")],
                   run_id="r", duration_s=1, matrix_page=None)
    text = "\n".join(lines)
    assert ("FAILED  local · 2.22/stable: partial: 1 of 48 tests selected (-k search); "
            "scenarios tracking: 1 failed") in text
    assert "failed: test_search_runs_pages — ConnectionResetError: [Errno 104] reset by peer" \
        in text
    assert "known defects: mlflow-search-model-versions-no-aliases" in text
    assert "skipped: test_upload[plain] — no canary directory here" in text
    assert "PASSED  local · 2.15/stable: partial: 3 of 48 tests selected (-k search)" in text
