"""`external`: an MLflow you already run. Nothing is provisioned, deployed or torn down.

    mlflow-matrix run --platform external --tracking-uri URL \\
        [--s3-endpoint-url URL --artifact-bucket NAME]

S3 keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; MLflow auth from
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN, TLS settings from
MLFLOW_TRACKING_INSECURE_TLS / MLFLOW_TRACKING_SERVER_CERT_PATH (the runner passes these through
to the scenario client unchanged). The same three settings may also be written
under the platform in matrix.yaml; command-line options win.

`deploy()` is a pre-flight check, bounded by PREFLIGHT_BUDGET seconds, that runs before any
scenario: the server answers, `GET /version` names an MLflow release (the cell's client is built
for exactly that version), the credentials are accepted, and the bucket exists and the keys can
list it. Each failure is an InfrastructureError with one line saying what is wrong.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from packaging.version import InvalidVersion, Version

from harness.config.model import DETECT, Cell, Channel, CiNeeds, PlatformTraits
from harness.system.endpoint import Credentials, Endpoint
from harness.system.errors import ConfigError, InfrastructureError
from harness.system.redact import redact, register_secret
from provisioners.api import DeploymentPlan, ProvisionerBase, RunContext, Substrate

PREFLIGHT_BUDGET = 10.0   # seconds for every check together: fail fast, before any scenario
HTTP_TIMEOUT = 4.0        # one request (connect + read)
S3_CONNECT_TIMEOUT = 3.0
AUTH_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class ExternalSettings:
    """Optional defaults for the command-line options, for a matrix.yaml entry of a known server."""

    tracking_uri: str = ""
    s3_endpoint_url: str = ""
    artifact_bucket: str = ""
    artifacts: str = ""   # direct | proxied: how the server stores artifacts (asserted)


@dataclass(frozen=True)
class ExternalTarget:
    """The server under test, resolved from options, settings and the environment."""

    tracking_uri: str
    s3_endpoint_url: str | None
    artifact_bucket: str | None
    s3_credentials: Credentials | None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    insecure_tls: bool = False
    ca_bundle: str | None = None
    artifact_mode: str | None = None

    def auth_header(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username and self.password:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}


def resolve_target(settings: ExternalSettings, options: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None) -> ExternalTarget:
    """Validate the user's input; a problem is a ConfigError (bad input, exit 2)."""
    environ = os.environ if environ is None else environ
    uri = str(options.get("tracking_uri") or settings.tracking_uri or "").strip()
    if not uri:
        raise ConfigError("--platform external needs --tracking-uri",
                          hint="pass the URL of the MLflow server to test, e.g. "
                               "--tracking-uri http://mlflow.example.com:5000")
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"--tracking-uri {redact(uri)!r} is not an http(s) URL",
                          hint="write the server's URL, e.g. http://mlflow.example.com:5000")
    s3_url = str(options.get("s3_endpoint_url") or settings.s3_endpoint_url or "").strip() or None
    bucket = str(options.get("artifact_bucket") or settings.artifact_bucket or "").strip() or None
    if bool(s3_url) != bool(bucket):
        raise ConfigError("--s3-endpoint-url and --artifact-bucket go together",
                          hint="give both to let scenarios check artifacts in the bucket, "
                               "or neither to skip those checks")
    if s3_url and urlparse(s3_url).scheme not in ("http", "https"):
        raise ConfigError(f"--s3-endpoint-url {s3_url!r} is not an http(s) URL",
                          hint="write the S3 endpoint's URL, e.g. http://minio.example.com:9000")
    credentials = None
    if s3_url:
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise ConfigError("the S3 checks need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                              hint="export the keys of the server's artifact store")
        register_secret(secret)
        credentials = Credentials(key, secret)
    username, password, token = (environ.get(name) or None for name in AUTH_ENV)
    for secret in (password, token):
        register_secret(secret)
    insecure = environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1")
    mode = str(options.get("artifact_mode") or settings.artifacts or "").strip() or None
    if mode not in (None, "direct", "proxied"):
        raise ConfigError(f"artifact mode {mode!r} is neither direct nor proxied",
                          hint="pass --artifact-mode direct (s3://) or proxied (mlflow-artifacts:)")
    return ExternalTarget(uri.rstrip("/"), s3_url, bucket, credentials, username, password, token,
                          insecure_tls=insecure,
                          ca_bundle=environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
                          artifact_mode=mode)


class ExternalProvisioner(ProvisionerBase):
    """Points the harness at a running MLflow; there is no platform to bring up or down."""

    kind: ClassVar[str] = "external"
    Settings = ExternalSettings
    cli_options: ClassVar[tuple[str, ...]] = ("tracking_uri", "s3_endpoint_url", "artifact_bucket",
                                              "artifact_mode")
    takes_mlflow_version: ClassVar[bool] = True  # requires the server to run that release

    @classmethod
    def traits(cls, settings: ExternalSettings) -> PlatformTraits:
        unattended = "" if settings.tracking_uri else (
            "tests an MLflow server someone already runs: needs --tracking-uri; "
            "run it by hand (docs/ci.md)")
        return PlatformTraits(database="", artifacts=settings.artifacts or "", on_kubernetes=False,
                              self_deploying=True, fixed_server=True,
                              needs_option="" if settings.tracking_uri else "tracking_uri",
                              ci=CiNeeds(unattended=unattended))

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.target = resolve_target(context.platform.settings, context.options)

    @classmethod
    def check_options(cls, settings: ExternalSettings, options: Mapping[str, Any]) -> None:
        """Called while cells are selected: bad input fails before a run starts (exit 2)."""
        resolve_target(settings, options)

    def plan(self) -> list[str]:
        t = self.target
        steps = [f"nothing to provision: use the MLflow server at {redact(t.tracking_uri)}",
                 f"per cell: GET {redact(t.tracking_uri)}/version (the cell's client is built "
                 "for that MLflow version) and GET /api/2.0/mlflow/experiments/search "
                 "(credentials)"]
        if t.s3_endpoint_url:
            steps.append(f"per cell: list bucket {t.artifact_bucket!r} at {t.s3_endpoint_url} "
                         "with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        else:
            steps.append("no S3 endpoint given: scenarios skip their checks inside the bucket")
        steps.append(f"all checks within {PREFLIGHT_BUDGET:.0f}s, before any scenario; "
                     "nothing is torn down")
        return steps

    def up(self) -> Substrate:
        return Substrate(name=self.context.platform.name,
                         details={"tracking_uri": redact(self.target.tracking_uri)})

    def deployment_plan(self, cell: Cell) -> DeploymentPlan:
        """The pre-flight checks are the per-cell steps of `plan`; the server is not ours to
        upgrade, restart or tear down."""
        return DeploymentPlan(close=("nothing to tear down: the server is not ours",))

    def deployment(self, substrate: Substrate, cell_dir: Path) -> ExternalDeployment:
        return ExternalDeployment(self.target)


class ExternalDeployment:
    """Pre-flight checks and the Endpoint of a server someone else runs."""

    server_log: Path | None = None  # someone else's server: no log to attach

    def __init__(self, target: ExternalTarget, budget: float = PREFLIGHT_BUDGET) -> None:
        self.target = target
        self.budget = budget
        self.checks: list[dict[str, Any]] = []
        self.endpoint: Endpoint | None = None

    def deploy(self, channel: Channel) -> Endpoint:
        deadline = time.monotonic() + self.budget
        version = self._check(deadline, "version", self._detect_version)
        if channel.mlflow_version != DETECT and version != channel.mlflow_version:
            raise InfrastructureError(
                f"{self._where} runs MLflow {version}, not {channel.mlflow_version} as "
                "--mlflow-version says", hint="drop --mlflow-version to test what the server runs")
        self._check(deadline, "credentials", self._check_api)
        if self.target.s3_endpoint_url:
            self._check(deadline, "bucket", self._check_bucket)
        self.endpoint = Endpoint(
            tracking_uri=self.target.tracking_uri, mlflow_version=version,
            s3_endpoint_url=self.target.s3_endpoint_url,
            artifact_bucket=self.target.artifact_bucket,
            s3_credentials=self.target.s3_credentials,
            artifact_mode=self.target.artifact_mode)
        return self.endpoint

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        t = self.target
        body = {"tracking_uri": t.tracking_uri, "s3_endpoint_url": t.s3_endpoint_url,
                "artifact_bucket": t.artifact_bucket,
                "mlflow_version": self.endpoint.mlflow_version if self.endpoint else None,
                "auth": "token" if t.token else "basic" if t.username else "none",
                "checks": self.checks}
        (dest / "external.json").write_text(redact(json.dumps(body, indent=2)), encoding="utf-8")

    def teardown(self) -> None:
        """Someone else's server: nothing to remove."""

    # ---------------------------------------------------------------- checks

    @property
    def _where(self) -> str:
        return f"the MLflow server at {redact(self.target.tracking_uri)}"

    def _check(self, deadline: float, name: str, probe: Any) -> Any:
        left = deadline - time.monotonic()
        if left <= 0.2:
            raise InfrastructureError(f"pre-flight checks of {self._where} took over "
                                      f"{self.budget:.0f}s (stopped before the {name} check)")
        start = time.monotonic()
        try:
            value = probe(min(HTTP_TIMEOUT, left))
        except InfrastructureError as exc:
            self.checks.append({"check": name, "ok": False, "error": exc.message,
                                "seconds": round(time.monotonic() - start, 2)})
            raise
        self.checks.append({"check": name, "ok": True, "seconds": round(time.monotonic() - start, 2)})
        return value

    def _get(self, path: str, timeout: float) -> tuple[int, str]:
        request = urllib.request.Request(self.target.tracking_uri + path,
                                         headers=self.target.auth_header())
        context = None
        if self.target.tracking_uri.startswith("https:"):  # as the MLflow client would verify
            context = ssl.create_default_context(cafile=self.target.ca_bundle)
            if self.target.insecure_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return response.status, response.read(64_000).decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(4_000).decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                reason = f"no answer within {timeout:.0f}s"
            raise InfrastructureError(f"{self._where} is unreachable: {reason}",
                                      hint="check --tracking-uri and that the server is up") \
                from None

    def _detect_version(self, timeout: float) -> str:
        status, body = self._get("/version", timeout)
        if status in (401, 403):
            raise self._auth_error(status)
        text = body.strip()
        if status != 200:
            raise InfrastructureError(
                f"{self._where} answered GET /version with HTTP {status}: not an MLflow "
                "tracking server", hint="check --tracking-uri (the server's base URL, no path)")
        try:
            version = Version(text)
        except InvalidVersion:
            shown = text.splitlines()[0][:60] if text else "an empty body"
            raise InfrastructureError(
                f"{self._where} does not look like MLflow: GET /version returned {shown!r}",
                hint="check --tracking-uri (the server's base URL, no path)") from None
        if version.major < 1:
            raise InfrastructureError(f"{self._where} reports MLflow {text}, older than any "
                                      "release the harness can test")
        return text

    def _check_api(self, timeout: float) -> None:
        status, body = self._get("/api/2.0/mlflow/experiments/search?max_results=1", timeout)
        if status in (401, 403):
            raise self._auth_error(status)
        if status != 200:
            first = (body.strip().splitlines() or [""])[0][:120]
            raise InfrastructureError(f"{self._where} answered the experiments API with HTTP "
                                      f"{status}: {redact(first)}")

    def _auth_error(self, status: int) -> InfrastructureError:
        given = ("MLFLOW_TRACKING_TOKEN" if self.target.token else
                 "MLFLOW_TRACKING_USERNAME/PASSWORD" if self.target.username else None)
        what = f"rejected the credentials in {given}" if given else "requires authentication"
        return InfrastructureError(
            f"{self._where} {what} (HTTP {status})",
            hint="export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                 "MLFLOW_TRACKING_TOKEN, for a user that may create experiments")

    def _check_bucket(self, timeout: float) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        t = self.target
        assert t.s3_credentials and t.artifact_bucket
        key = t.s3_credentials.access_key
        shown_key = f"{key[:4]}…"
        client = boto3.client(
            "s3", endpoint_url=t.s3_endpoint_url, aws_access_key_id=key,
            aws_secret_access_key=t.s3_credentials.secret_key, region_name="us-east-1",
            config=Config(connect_timeout=min(S3_CONNECT_TIMEOUT, timeout), read_timeout=timeout,
                          retries={"total_max_attempts": 1}))
        where = f"S3 at {t.s3_endpoint_url}"
        try:
            client.list_objects_v2(Bucket=t.artifact_bucket, MaxKeys=1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            messages = {
                "NoSuchBucket": (f"bucket {t.artifact_bucket!r} does not exist at {t.s3_endpoint_url}",
                                 "check --artifact-bucket against the server's artifact root"),
                "InvalidAccessKeyId": (f"{where} does not know the access key {shown_key} "
                                       "(InvalidAccessKeyId)", "check AWS_ACCESS_KEY_ID"),
                "SignatureDoesNotMatch": (f"{where} rejected the secret key of access key "
                                          f"{shown_key} (SignatureDoesNotMatch)",
                                          "check AWS_SECRET_ACCESS_KEY"),
                "AccessDenied": (f"access key {shown_key} may not list bucket "
                                 f"{t.artifact_bucket!r} at {where} (AccessDenied)",
                                 "use the keys the MLflow server itself uses"),
            }
            message, hint = messages.get(code, (
                f"{where} refused to list bucket {t.artifact_bucket!r}: "
                f"{code or status} {redact(exc.response.get('Error', {}).get('Message', ''))}",
                "check the S3 endpoint, bucket and keys"))
            raise InfrastructureError(message, hint=hint) from None
        except BotoCoreError as exc:
            reason = redact(str(exc)).splitlines()[0]
            raise InfrastructureError(f"{where} is unreachable: {reason}",
                                      hint="check --s3-endpoint-url and that the store is up") \
                from None
