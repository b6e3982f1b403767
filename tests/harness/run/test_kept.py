"""`--keep`: the kept deployment's endpoint is written for its user only, usable from a shell,
and released (files included) by `down --run-id`."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from harness.commands.lifecycle import release_state
from harness.run.kept import keep_endpoint
from harness.system.endpoint import Credentials, Endpoint
from harness.system.state import RunState


def test_kept_endpoint_files_are_private_usable_and_released_with_the_run(tmp_path: Path):
    reports = tmp_path / "reports"
    cell_dir = reports / "local" / "2.22-stable"
    state = RunState(reports / "state" / "r1.json", "r1")
    endpoint = Endpoint("http://127.0.0.1:41234", "2.22.0", "http://127.0.0.1:8333", "mlflow",
                        Credentials("AKIAKEPT", "s3cr3t-kept"))
    lines = keep_endpoint(endpoint, cell_dir, state, reports_dir=reports)
    data = json.loads((cell_dir / "endpoint.json").read_text())
    assert data["tracking_uri"] == "http://127.0.0.1:41234"
    assert data["s3_endpoint_url"] == "http://127.0.0.1:8333" and data["artifact_bucket"] == "mlflow"
    assert (data["aws_access_key_id"], data["aws_secret_access_key"]) == ("AKIAKEPT", "s3cr3t-kept")
    for name in ("endpoint.json", "endpoint.env"):
        assert stat.S_IMODE((cell_dir / name).stat().st_mode) == 0o600
    shell = subprocess.run(["bash", "-c", f". {cell_dir / 'endpoint.env'} && echo "
                            "$MLFLOW_TRACKING_URI $MLFLOW_S3_ENDPOINT_URL $AWS_ACCESS_KEY_ID"],
                           capture_output=True, text=True, timeout=30)
    assert shell.stdout.split() == ["http://127.0.0.1:41234", "http://127.0.0.1:8333", "AKIAKEPT"]
    assert lines[0].startswith("kept running (--keep): ")
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:41234" in lines[1]
    assert "down --run-id r1" in lines[2] and "--reports-dir" in lines[2]
    assert "s3cr3t" not in "\n".join(lines)
    state.finish("finished")
    assert len(json.loads(state.path.read_text())["resources"]) == 2
    assert release_state(state.path, force=True) == 0
    assert not (cell_dir / "endpoint.json").exists() and not (cell_dir / "endpoint.env").exists()
    assert json.loads(state.path.read_text())["resources"] == []
