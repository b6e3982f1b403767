"""A cell that follows a documented procedure: every guide step is a phase of its own, the seed
is read back after it where it can lose data, and the verdict names the guide.

The backup → destroy → restore path on `local` at 2.22 (its MLflow env is cached) runs every
local equivalent the backup and restore guides map to: the SQLite dump, the bucket copied out
and back, the deployment destroyed and deployed fresh."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions


@pytest.mark.timeout(900)  # two deployments and three server starts on a shared machine
def test_backup_destroy_restore_reads_every_item_back(tmp_path: Path):
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=(),
                                           restores=("2.22/stable:2.22/stable",)))
    reports = tmp_path / "reports"
    runner = Runner(matrix, cells, RunOptions(reports_dir=reports),
                    progress=Progress((tmp_path / "progress.log").open("w")))
    assert runner.run() == 0, (tmp_path / "progress.log").read_text()
    cell_dir = reports / "local" / "restore-2.22-stable-to-2.22-stable"
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == "passed"
    phases = [p["name"] for p in summary["phases"] if p["status"] == "passed"]
    guided = phases[phases.index("backup/scale-mysql"):phases.index("restore/sync-bucket") + 1]
    assert guided == ["backup/scale-mysql", "backup/backup-db", "backup/sync-bucket", "destroy",
                      "redeploy", "restore/scale-mysql", "restore/restore-db",
                      "restore/sync-bucket"]
    assert [g["id"] for g in summary["procedure"]["guides"]] == ["backup", "restore"]
    assert summary["counts"]["passed"] >= 6  # the after-upgrade read-back of the seed
    left = list(Path(tempfile.gettempdir()).glob(f"mlflow-matrix-{runner.run_id}-*"))
    assert not left, f"the backup or a deployment was left behind: {left}"


@pytest.mark.timeout(900)
def test_the_2_15_to_2_22_guide_goes_on_after_its_known_defect(tmp_path: Path):
    """MinIO's refresh, the seed read back with the 2.15 client, the server's refresh failing on
    the charm's missing migration (known defect, its source named), MLflow's documented remedy,
    then every after-upgrade check with the 2.22 client."""
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=(),
                                           upgrades=("2.15/stable:2.22/stable",)))
    reports = tmp_path / "reports"
    runner = Runner(matrix, cells, RunOptions(reports_dir=reports),
                    progress=Progress((tmp_path / "progress.log").open("w")))
    assert runner.run() == 0, (tmp_path / "progress.log").read_text()
    cell_dir = reports / "local" / "upgrade-2.15-stable-to-2.22-stable"
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == "known-defect"
    assert summary["message"].startswith("guide 'upgrade-2.15-to-2.22', step 'refresh-server'")
    phases = {p["name"]: p for p in summary["phases"]}
    assert phases["upgrade/refresh-minio"]["status"] == "passed"
    refused = phases["upgrade/refresh-server"]  # the known defect: a failure with its issue
    assert refused["status"] == "failed" and "known defect" in refused["message"], refused
    assert phases["remedy/refresh-server"]["status"] == "passed"
    assert "track/2.22 @ 4d80501" in summary["procedure"]["migration"]
    assert (cell_dir / "junit-data-check@refresh-minio.xml").is_file()
    assert summary["counts"].get("failed", 0) == 0 and summary["counts"]["passed"] >= 9
