"""`external`: pre-flight checks against real servers on loopback, selection, CLI exit codes.

A real MLflow 2.22 (proxied artifacts) on a real SeaweedFS bucket stands in for "an MLflow you
already run"; a tiny http.server plays servers that are not MLflow, answer nothing, or want auth.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.commands.subcommands import selected_cells
from harness.config.matrix import DETECT, adhoc_channel, load_matrix
from harness.config.registry import ENTRY_POINT_GROUP, load_provisioner_class
from harness.system.endpoint import Credentials
from harness.system.errors import ConfigError, InfrastructureError
from harness.system.procs import free_ports
from harness.system.redact import redact
from harness.system.state import RunState
from provisioners.api import (
    Deployment,
    Provisioner,
    Restartable,
    RunContext,
    Substrate,
    Upgradable,
)
from provisioners.external import (
    PREFLIGHT_BUDGET,
    ExternalDeployment,
    ExternalProvisioner,
    ExternalSettings,
    ExternalTarget,
    resolve_target,
)

MLFLOW_VERSION = "2.22.0"
ROOT = Path(__file__).resolve().parents[2]


def run_harness(args, env=None, timeout=600.0):
    """`mlflow-matrix ARGS` as a subprocess, with AWS keys only from `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_TRACKING"))}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, env={**base, **(env or {})}, cwd=ROOT)


# ---------------------------------------------------------------- real servers


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    matrix = load_matrix()
    return RunContext(run_id="test-external", platform=matrix.platforms["local-proxied"],
                      work_dir=root, state=RunState(root / "state.json", "test-external"),
                      env_for=lambda c: None)  # type: ignore[arg-type,return-value]


@pytest.fixture(scope="module")
def s3(context):
    from provisioners.local import SeaweedS3

    store = SeaweedS3(context.work_dir / "s3", context, 120)
    try:
        store.start()
        store.create_bucket("mlflow")
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="module")
def mlflow_server(context, s3):
    """A real `mlflow server` with the charm's proxied-artifacts command line."""
    from harness.run.envs import ensure_env
    from provisioners.local import LocalSettings, MlflowServer, SqliteStore

    matrix = load_matrix()
    channel = adhoc_channel(MLFLOW_VERSION)
    env = ensure_env(MLFLOW_VERSION, matrix.requirements_for(channel), timeout=900)
    store = SqliteStore(context.work_dir / "db")
    store.start()
    server = MlflowServer(env, context.work_dir / "mlflow", context,
                          LocalSettings(artifacts="proxied"), s3, store.uri, 180)
    try:
        server.start()
        _warm_up(server.url)
        yield server
    finally:
        server.stop()


def _warm_up(url: str) -> None:
    """Wait until every gunicorn worker has imported MLflow (each does so itself after /health
    first answers), so the 4 s per-request budget of the checks under test is not spent on a
    loaded test machine's start-up."""
    import urllib.request

    deadline = time.monotonic() + 120
    fast = 0
    while fast < 8 and time.monotonic() < deadline:
        start = time.monotonic()
        with urllib.request.urlopen(f"{url}/version", timeout=60) as response:
            response.read()
        fast = fast + 1 if time.monotonic() - start < 1 else 0


def _target(url, s3=None, *, secret=None, key=None, bucket="mlflow", **auth):
    creds = None
    if s3 is not None:
        creds = Credentials(key or s3.access_key, secret or s3.secret_key)
    return ExternalTarget(url, s3.url if s3 else None, bucket if s3 else None, creds, **auth)


def _deploy(target, channel=None):
    start = time.monotonic()
    deployment = ExternalDeployment(target)
    try:
        return deployment.deploy(channel or adhoc_channel(DETECT)), deployment
    finally:
        assert time.monotonic() - start < PREFLIGHT_BUDGET + 1


def _fails(target, channel=None) -> str:
    start = time.monotonic()
    with pytest.raises(InfrastructureError) as caught:
        ExternalDeployment(target).deploy(channel or adhoc_channel(DETECT))
    elapsed = time.monotonic() - start
    assert elapsed < PREFLIGHT_BUDGET, f"took {elapsed:.1f}s"
    message = caught.value.message
    assert "\n" not in message, "one line per failure"
    return message


def test_detects_the_version_of_a_real_server_and_checks_its_bucket(mlflow_server, s3, tmp_path):
    endpoint, deployment = _deploy(_target(mlflow_server.url, s3))
    assert endpoint.mlflow_version == MLFLOW_VERSION
    assert endpoint.tracking_uri == mlflow_server.url
    assert (endpoint.s3_endpoint_url, endpoint.artifact_bucket) == (s3.url, "mlflow")
    assert endpoint.s3_credentials == Credentials(s3.access_key, s3.secret_key)
    assert [c["check"] for c in deployment.checks if c["ok"]] == ["version", "credentials",
                                                                   "bucket"]
    deployment.collect(tmp_path / "diag")
    written = (tmp_path / "diag" / "external.json").read_text()
    assert json.loads(written)["mlflow_version"] == MLFLOW_VERSION
    assert s3.secret_key not in written
    deployment.teardown()  # nothing to remove; must not touch the server
    assert _deploy(_target(mlflow_server.url, s3))[0].mlflow_version == MLFLOW_VERSION


def test_without_s3_options_only_the_server_is_checked(mlflow_server):
    endpoint, deployment = _deploy(_target(mlflow_server.url))
    assert endpoint.s3_endpoint_url is None and endpoint.s3_credentials is None
    assert [c["check"] for c in deployment.checks] == ["version", "credentials"]


def test_a_required_version_must_match_the_server(mlflow_server):
    assert _deploy(_target(mlflow_server.url), adhoc_channel(MLFLOW_VERSION))[0].mlflow_version \
        == MLFLOW_VERSION
    message = _fails(_target(mlflow_server.url), adhoc_channel("2.15.1"))
    assert f"runs MLflow {MLFLOW_VERSION}, not 2.15.1" in message


def test_wrong_secret_key(mlflow_server, s3):
    message = _fails(_target(mlflow_server.url, s3, secret="not-the-secret"))
    assert "rejected the secret key" in message and "SignatureDoesNotMatch" in message
    assert s3.secret_key not in message and "not-the-secret" not in message


def test_unknown_access_key(mlflow_server, s3):
    message = _fails(_target(mlflow_server.url, s3, key="nosuchkey"))
    assert "does not know the access key nosu…" in message


def test_missing_bucket(mlflow_server, s3):
    message = _fails(_target(mlflow_server.url, s3, bucket="no-such-bucket"))
    assert message == f"bucket 'no-such-bucket' does not exist at {s3.url}"


def test_unreachable_s3(mlflow_server, s3):
    (port,) = free_ports(1)
    target = ExternalTarget(mlflow_server.url, f"http://127.0.0.1:{port}", "mlflow",
                            Credentials(s3.access_key, s3.secret_key))
    assert f"S3 at http://127.0.0.1:{port} is unreachable" in _fails(target)


# ---------------------------------------------------------------- servers that are not MLflow


class _Fake:
    """A tiny HTTP server: path → (status, body); optional required Authorization header."""

    def __init__(self, routes, auth=None):
        self.routes = routes
        self.auth = auth
        self.seen: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.seen.append(dict(self.headers))
                if fake.auth and self.headers.get("Authorization") != fake.auth:
                    status, body = 401, "unauthorized"
                else:
                    status, body = fake.routes.get(self.path.split("?")[0], (404, "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


MLFLOW_ROUTES = {"/version": (200, "2.22.0"),
                 "/api/2.0/mlflow/experiments/search": (200, '{"experiments": []}')}


@pytest.fixture
def fake():
    made = []

    def make(routes=None, auth=None):
        server = _Fake(MLFLOW_ROUTES if routes is None else routes, auth)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_nothing_listening():
    (port,) = free_ports(1)
    message = _fails(_target(f"http://127.0.0.1:{port}"))
    assert message.startswith(f"the MLflow server at http://127.0.0.1:{port} is unreachable")
    assert "Connection refused" in message


def test_a_server_that_never_answers_fails_within_the_budget():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections in the kernel, never answers
    try:
        port = listener.getsockname()[1]
        message = _fails(_target(f"http://127.0.0.1:{port}"))
        assert "is unreachable: no answer within" in message
    finally:
        listener.close()


def test_not_mlflow_version_body(fake):
    server = fake({"/version": (200, "<html><body>Welcome to nginx!</body></html>")})
    message = _fails(_target(server.url))
    assert message == (f"the MLflow server at {server.url} does not look like MLflow: "
                       "GET /version returned '<html><body>Welcome to nginx!</body></html>'")


def test_no_version_endpoint(fake):
    message = _fails(_target(fake({}).url))
    assert "answered GET /version with HTTP 404: not an MLflow tracking server" in message


def test_api_errors_are_reported(fake):
    server = fake({"/version": (200, "2.22.0"),
                   "/api/2.0/mlflow/experiments/search": (500, "Internal Server Error\ntrace")})
    assert _fails(_target(server.url)).endswith("experiments API with HTTP 500: Internal Server "
                                                "Error")


def test_basic_auth_is_sent_and_checked(fake):
    header = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    server = fake(auth=header)
    assert "requires authentication (HTTP 401)" in _fails(_target(server.url))
    wrong = _fails(_target(server.url, username="alice", password="nope"))
    assert "rejected the credentials in MLFLOW_TRACKING_USERNAME/PASSWORD (HTTP 401)" in wrong
    endpoint, _ = _deploy(_target(server.url, username="alice", password="s3cret-pw"))
    assert endpoint.mlflow_version == "2.22.0"
    assert server.seen[-1]["Authorization"] == header


def test_token_auth_is_sent(fake):
    server = fake(auth="Bearer tok-123456")
    assert _deploy(_target(server.url, token="tok-123456"))[0].mlflow_version == "2.22.0"
    assert "MLFLOW_TRACKING_TOKEN" in _fails(_target(server.url, token="other-token"))


# ---------------------------------------------------------------- input, selection, registration


def test_bad_input_is_a_config_error():
    settings = ExternalSettings()
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "secret-value-1"}
    cases = [
        ({}, "needs --tracking-uri"),
        ({"tracking_uri": "mlflow.example.com:5000"}, "is not an http(s) URL"),
        ({"tracking_uri": "http://x", "s3_endpoint_url": "http://s3"}, "go together"),
        ({"tracking_uri": "http://x", "artifact_bucket": "b"}, "go together"),
        ({"tracking_uri": "http://x", "s3_endpoint_url": "s3.example", "artifact_bucket": "b"},
         "is not an http(s) URL"),
    ]
    for options, expected in cases:
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            resolve_target(settings, options, env)
    with pytest.raises(ConfigError, match="need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        resolve_target(settings, {"tracking_uri": "http://x", "s3_endpoint_url": "http://s3",
                                  "artifact_bucket": "b"}, {})


def test_options_win_over_settings_and_secrets_are_registered():
    settings = ExternalSettings(tracking_uri="http://from-matrix:5000", artifact_bucket="b",
                                s3_endpoint_url="http://s3:9000")
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret-key-42",
           "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "bobs-password-9",
           "MLFLOW_TRACKING_TOKEN": "token-value-77"}
    target = resolve_target(settings, {"tracking_uri": "http://from-cli:5000/"}, env)
    assert target.tracking_uri == "http://from-cli:5000"
    assert (target.s3_endpoint_url, target.artifact_bucket) == ("http://s3:9000", "b")
    assert target.s3_credentials == Credentials("AKIAEXAMPLE", "very-secret-key-42")
    for secret in ("very-secret-key-42", "bobs-password-9", "token-value-77"):
        assert redact(f"x {secret} y") == "x *** y"
    assert target.auth_header() == {"Authorization": "Bearer token-value-77"}


def test_tls_settings_follow_the_mlflow_client_variables():
    target = resolve_target(ExternalSettings(), {"tracking_uri": "https://mlflow.example"},
                            {"MLFLOW_TRACKING_INSECURE_TLS": "true",
                             "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ssl/ca.pem"})
    assert target.insecure_tls and target.ca_bundle == "/etc/ssl/ca.pem"
    assert not resolve_target(ExternalSettings(), {"tracking_uri": "https://x"}, {}).insecure_tls


def _args(*argv):
    return build_parser().parse_args(["run", *argv])


def test_external_selects_one_detect_cell():
    _, cells = selected_cells(_args("--platform", "external", "--tracking-uri", "http://x"))
    assert len(cells) == 1
    assert cells[0].channel == adhoc_channel(DETECT) and cells[0].upgrade_to is None
    assert cells[0].platform.kind == "external"
    assert set(cells[0].scenarios) >= {"artifacts", "registry", "persistence"}
    _, cells = selected_cells(_args("--platform", "external", "--tracking-uri", "http://x",
                                    "--mlflow-version", "2.22.0"))
    assert [c.channel.mlflow_version for c in cells] == ["2.22.0"]


def test_external_next_to_other_platforms_and_all():
    _, cells = selected_cells(_args("--platform", "local", "--platform", "external",
                                    "--tracking-uri", "http://x", "--channel", "2.22/stable"))
    assert [(c.platform.name, c.channel.name) for c in cells] == [("local", "2.22/stable"),
                                                                  ("external", "detected")]
    _, cells = selected_cells(_args("--platform", "all", "--channel", "2.22/stable"))
    assert "external" not in {c.platform.name for c in cells}, "no server to point it at"
    _, cells = selected_cells(_args("--platform", "all", "--channel", "2.22/stable",
                                    "--tracking-uri", "http://x"))
    assert [c.channel.name for c in cells if c.platform.name == "external"] == ["detected"]


def test_external_selection_errors():
    with pytest.raises(ConfigError, match="needs --tracking-uri"):
        selected_cells(_args("--platform", "external"))
    with pytest.raises(ConfigError, match="--channel and --upgrade do not apply"):
        selected_cells(_args("--platform", "external", "--tracking-uri", "http://x",
                             "--channel", "2.22/stable"))


def test_registered_under_the_entry_point_group_and_capabilities():
    assert "external" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert load_provisioner_class("external") is ExternalProvisioner
    matrix = load_matrix()
    assert matrix.platforms["external"].kind == "external"
    assert "external" not in matrix.defaults.platforms
    deployment = ExternalDeployment(_target("http://x"))
    assert not isinstance(deployment, (Restartable, Upgradable))
    context = RunContext(run_id="r", platform=matrix.platforms["external"], work_dir=Path("/tmp"),
                         state=None, env_for=lambda c: None,  # type: ignore[arg-type,return-value]
                         options={"tracking_uri": "http://x"})
    provisioner = ExternalProvisioner(context)
    assert isinstance(provisioner, Provisioner)
    own = provisioner.deployment(Substrate(name="external"), Path("/tmp/cell"))
    assert isinstance(own, ExternalDeployment) and isinstance(own, Deployment)
    assert any("nothing to provision" in step for step in provisioner.plan())


# ---------------------------------------------------------------- the CLI end to end


def test_cli_missing_tracking_uri_is_bad_input(tmp_path):
    proc = run_harness(["run", "--platform", "external", "--reports-dir", str(tmp_path)],
                       timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[0] == "error: --platform external needs --tracking-uri"
    assert not (tmp_path / "state").exists(), "bad input must fail before a run starts"


def test_cli_wrong_secret_exits_3_within_10s(mlflow_server, s3, tmp_path):
    start = time.monotonic()
    proc = run_harness(["run", "--platform", "external", "--tracking-uri", mlflow_server.url,
                        "--s3-endpoint-url", s3.url, "--artifact-bucket", "mlflow",
                        "--reports-dir", str(tmp_path)],
                       env={"AWS_ACCESS_KEY_ID": s3.access_key,
                            "AWS_SECRET_ACCESS_KEY": "wrong-secret-key-xyz"}, timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"
    failed = [line for line in proc.stderr.splitlines() if "deploy FAILED" in line]
    assert len(failed) == 1 and "rejected the secret key" in failed[0], proc.stderr
    assert "scenarios" not in proc.stderr, "no scenario may run after a failed pre-flight"
    text = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "wrong-secret-key-xyz" not in text + proc.stderr


def test_cli_run_against_a_real_server_checks_the_bucket(mlflow_server, s3, tmp_path):
    selected = "artifact_location_is_in_the_deployment_bucket or log_artifact_at_root_and_under"
    proc = run_harness(["run", "--platform", "external", "--tracking-uri", mlflow_server.url,
                        "--s3-endpoint-url", s3.url, "--artifact-bucket", "mlflow",
                        "--scenario", "artifacts", "--reports-dir", str(tmp_path),
                        "--", "-k", selected],
                       env={"AWS_ACCESS_KEY_ID": s3.access_key,
                            "AWS_SECRET_ACCESS_KEY": s3.secret_key}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "external" / "detected" / "cell.json").read_text())
    tests = [t for t in summary["tests"] if not t["fullName"].startswith("lifecycle.")]
    assert summary["status"] == "passed"
    assert sorted(t["status"] for t in tests) == ["passed", "passed"], tests
    assert summary["versions"]["mlflow_server"] == MLFLOW_VERSION
    assert s3.secret_key not in "".join(p.read_text(errors="replace")
                                        for p in tmp_path.rglob("*") if p.is_file())


def test_url_userinfo_never_reaches_the_resolver_or_a_message(monkeypatch):
    """`--tracking-uri http://user:PASS@127.0.0.1:1`: urllib would resolve `user:PASS@127.0.0.1`
    as a host name. The stub stands where the system resolver is and records every lookup."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    (port,) = free_ports(1)  # nothing listens there: the pre-flight fails, after one lookup
    secret = "Pa55-userinfo-" + os.urandom(4).hex()
    target = resolve_target(ExternalSettings(), {"tracking_uri": f"http://al:{secret}@127.0.0.1:{port}"})
    assert target.tracking_uri == f"http://127.0.0.1:{port}"
    assert (target.username, target.password) == ("al", secret)
    with pytest.raises(InfrastructureError) as failure:
        ExternalDeployment(target).deploy(adhoc_channel(DETECT))
    assert looked_up and set(looked_up) == {"127.0.0.1"}
    assert secret not in failure.value.render() and secret not in redact(f"x {secret} y")
    assert "Basic" in target.auth_header()["Authorization"]
