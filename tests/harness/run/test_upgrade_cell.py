"""An upgrade cell's verify phase names every item that went missing across the upgrade.

A same-version "upgrade" (stop, restart on the same stores) keeps this fast; a conftest in a
copy of the real suite tampers with three items between the upgrade and the verify phase.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions

ROOT = Path(__file__).resolve().parents[3]

TAMPER = '''
import json, os, pytest

@pytest.fixture(scope="session", autouse=True)
def tamper(mlflow_client, s3, endpoint):
    if os.environ.get("MLFLOW_MATRIX_PHASE") == "after-upgrade":
        manifest = json.loads(open(os.environ["MLFLOW_MATRIX_MANIFEST"]).read())
        run = manifest["runs"][0]
        mlflow_client.delete_tag(run["id"], "note")
        mlflow_client.delete_registered_model_alias(manifest["models"][0]["name"], "champion")
        prefix = run["artifact_uri"][len(f"s3://{endpoint.artifact_bucket}/"):]
        s3.delete_object(Bucket=endpoint.artifact_bucket, Key=f"{prefix}/notes.txt")
    yield
'''


def _failures(junit: Path) -> dict[str, str]:
    tree = ET.parse(junit)
    return {case.get("name"): (case.find("failure").get("message") or "")
            for case in tree.iter("testcase") if case.find("failure") is not None}


def test_verify_phase_names_each_missing_item(tmp_path, monkeypatch):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for name in ("pytest.ini", "test_upgrade.py"):
        shutil.copy(ROOT / "scenarios" / name, scenarios / name)
    (scenarios / "conftest.py").write_text(TAMPER)
    monkeypatch.setenv("MLFLOW_MATRIX_SCENARIOS_DIR", str(scenarios))
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=(),
                                           upgrades=("2.22/stable:2.22/stable",)))
    reports = tmp_path / "reports"
    runner = Runner(matrix, cells, RunOptions(reports_dir=reports),
                    progress=Progress((tmp_path / "progress.log").open("w")))
    assert runner.run() == 1
    cell_dir = reports / "local" / "upgrade-2.22-stable-to-2.22-stable"
    failures = _failures(cell_dir / "junit-after-upgrade.xml")
    assert "tag 'note'" in failures["test_runs_params_tags_and_metric_histories_survive"]
    assert "alias 'champion'" in failures["test_registered_models_versions_and_aliases_survive"]
    artifacts = failures["test_artifacts_survive_in_bucket_and_through_mlflow"]
    assert "notes.txt" in artifacts and "bucket object" in artifacts
    assert "test_experiments_survive" not in failures
    summary = json.loads((cell_dir / "cell.json").read_text())
    assert summary["status"] == "failed"
    phases = {p["name"]: p["status"] for p in summary["phases"]}
    assert phases["upgrade"] == "passed"
    manifest = json.loads((cell_dir / "upgrade-manifest.json").read_text())
    assert len(manifest["runs"]) == 3
