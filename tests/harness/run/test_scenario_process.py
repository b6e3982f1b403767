"""What a cell's pytest child gets in its environment: the endpoint, never the harness's own
cloud credentials."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import RunOptions
from harness.run.scenario_process import ScenarioProcess
from harness.system.cache import MlflowEnv
from harness.system.endpoint import Credentials, Endpoint
from harness.system.state import RunState

CLOUD_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAHARNESSOWNKEY", "AWS_SECRET_ACCESS_KEY": "harness-own-secret",
    "AWS_SESSION_TOKEN": "harness-session", "AWS_PROFILE": "ops", "AWS_REGION": "eu-west-1",
    "AZURE_CLIENT_SECRET": "azure-secret", "AZURE_TENANT_ID": "t", "ARM_CLIENT_SECRET": "arm",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/sa.json", "GOOGLE_CLOUD_PROJECT": "p",
    "CLOUDSDK_AUTH_ACCESS_TOKEN": "ya29.token", "CLOUDSDK_CORE_PROJECT": "p",
}


class _NoDeployment:
    server_log = None


def test_cloud_credentials_never_reach_a_cell(tmp_path: Path, monkeypatch) -> None:
    for key, value in CLOUD_SECRETS.items():
        monkeypatch.setenv(key, value)
    matrix = load_matrix()
    cell = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                          scenarios=("tracking",)))[0]
    process = ScenarioProcess(matrix, RunOptions(reports_dir=tmp_path), lambda line: None,
                              tmp_path / "work", RunState(tmp_path / "s.json", "r"))
    endpoint = Endpoint(tracking_uri="http://127.0.0.1:5000", mlflow_version="2.22.0",
                        s3_endpoint_url="http://127.0.0.1:9000", artifact_bucket="mlflow",
                        s3_credentials=Credentials("cell-access-key", "cell-secret-key"))
    env = MlflowEnv(Path(sys.prefix), "2.22.0")
    child = process._child_env(env, endpoint, cell, None, None, False, _NoDeployment())
    leaked = {k for k in child if k.startswith(("AZURE_", "ARM_", "GOOGLE_", "CLOUDSDK_"))
              or k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION")}
    assert leaked == set()
    assert not set(CLOUD_SECRETS.values()) & set(child.values())
    # the S3 keys of the deployment under test are what the cell gets instead
    assert child["AWS_ACCESS_KEY_ID"] == "cell-access-key"
    assert child["AWS_SECRET_ACCESS_KEY"] == "cell-secret-key"
    assert child["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
