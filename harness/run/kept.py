"""`--keep`: a deployment left running is only useful if the user can reach it.

The kept cell's folder gets `endpoint.json` (tracking URI, S3 endpoint, bucket, keys) and
`endpoint.env` (the same as `export` lines for a shell), both 0600 and written after the cell's
folder was redacted, and both recorded in the run state: `down --run-id` and the janitor delete
them with the deployment, so the keys do not outlive it. The progress lines say how to use the
deployment and how to release it, as commands that work when pasted.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from harness.system import hints
from harness.system.endpoint import Endpoint
from harness.system.state import RunState

ENDPOINT_JSON = "endpoint.json"
ENDPOINT_ENV = "endpoint.env"
SECRET_FILE = "secret-file"  # run-state resource type: deleted on release


def endpoint_data(endpoint: Endpoint) -> dict[str, str | None]:
    creds = endpoint.s3_credentials
    return {"tracking_uri": endpoint.tracking_uri, "mlflow_version": endpoint.mlflow_version,
            "s3_endpoint_url": endpoint.s3_endpoint_url,
            "artifact_bucket": endpoint.artifact_bucket, "artifact_mode": endpoint.artifact_mode,
            "aws_access_key_id": creds.access_key if creds else None,
            "aws_secret_access_key": creds.secret_key if creds else None}


def shell_exports(endpoint: Endpoint) -> str:
    """What a shell needs to use the deployment with the MLflow client and boto3."""
    env = {"MLFLOW_TRACKING_URI": endpoint.tracking_uri}
    if endpoint.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint.s3_endpoint_url
    if endpoint.s3_credentials:
        env["AWS_ACCESS_KEY_ID"] = endpoint.s3_credentials.access_key
        env["AWS_SECRET_ACCESS_KEY"] = endpoint.s3_credentials.secret_key
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def write_private(path: Path, text: str) -> None:
    """Create `path` as 0600 from the start: the keys are never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def keep_endpoint(endpoint: Endpoint, cell_dir: Path, state: RunState, *,
                  reports_dir: Path) -> list[str]:
    """Write the kept cell's endpoint files; returns the lines that tell the user about them."""
    files = {ENDPOINT_JSON: json.dumps(endpoint_data(endpoint), indent=1) + "\n",
             ENDPOINT_ENV: shell_exports(endpoint)}
    for name, text in files.items():
        write_private(cell_dir / name, text)
        state.add(SECRET_FILE, path=str(cell_dir / name))
    release = hints.command("down", "--run-id", state.run_id, reports_dir=reports_dir)
    env_file = shlex.quote(hints.shown(cell_dir / ENDPOINT_ENV))
    return [f"kept running (--keep): {hints.shown(cell_dir / ENDPOINT_JSON)} (0600: tracking "
            "URI, S3 endpoint, bucket, keys)",
            f"  use it:     export MLFLOW_TRACKING_URI={shlex.quote(endpoint.tracking_uri)}"
            + (f"   (S3 endpoint and keys too: `. {env_file}`)" if endpoint.s3_endpoint_url
               else ""),
            f"  release it: {release}"]


def release_secret_file(path: Path) -> None:
    """Delete a kept cell's endpoint file (only those: the name is checked)."""
    if path.name not in (ENDPOINT_JSON, ENDPOINT_ENV):
        raise ValueError(f"refusing to delete {path}: not a kept endpoint file")
    path.unlink(missing_ok=True)
