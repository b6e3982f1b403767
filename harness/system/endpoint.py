"""What a scenario sees of a deployment. Standard library only: loaded inside cell envs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

ENDPOINT_ENV = "MLFLOW_MATRIX_ENDPOINT"
CELL_ENV = "MLFLOW_MATRIX_CELL"
DEFECTS_ENV = "MLFLOW_MATRIX_DEFECTS"
PHASE_ENV = "MLFLOW_MATRIX_PHASE"
# the unphased run that also carries one phase's tests (the writes before a restart)
WITH_PHASE_ENV = "MLFLOW_MATRIX_WITH_PHASE"
MANIFEST_ENV = "MLFLOW_MATRIX_MANIFEST"
SERVER_LOG_ENV = "MLFLOW_MATRIX_SERVER_LOG"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key[:4]}…, secret_key=***)"


@dataclass(frozen=True)
class Endpoint:
    """The only thing scenarios know of a platform. Secrets travel in the standard AWS env vars."""

    tracking_uri: str
    mlflow_version: str
    s3_endpoint_url: str | None = None
    artifact_bucket: str | None = None
    s3_credentials: Credentials | None = None
    # A file the harness placed outside the artifact root (local platforms only): security probes
    # read it to prove a traversal, so they never need to touch a file that matters.
    canary_path: str | None = None
    artifact_mode: str | None = None   # "direct" | "proxied" as the platform declares; None: unsaid

    def public_json(self) -> str:
        """Serialise without credentials: this may be written next to reports."""
        data = asdict(self)
        data.pop("s3_credentials")
        return json.dumps(data)

    def child_env(self) -> dict[str, str]:
        """Environment a client process needs to use this endpoint, secrets included."""
        env = {ENDPOINT_ENV: self.public_json(), "MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.s3_endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_endpoint_url
            env["AWS_DEFAULT_REGION"] = "us-east-1"
        if self.s3_credentials:
            env["AWS_ACCESS_KEY_ID"] = self.s3_credentials.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3_credentials.secret_key
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Endpoint:
        environ = dict(os.environ if environ is None else environ)
        data = json.loads(environ[ENDPOINT_ENV])
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        creds = Credentials(key, secret) if key and secret else None
        return cls(s3_credentials=creds, **data)


@dataclass(frozen=True)
class CellInfo:
    """Labels of the cell a scenario runs in, for Allure and for skip decisions."""

    platform: str
    cell: str
    channel: str
    mlflow_version: str
    platform_kind: str
    database: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CellInfo:
        source = os.environ if environ is None else environ
        return cls(**json.loads(source[CELL_ENV]))
