"""pytest fixtures for the Kubernetes-platform tests; import the ones a module uses.

    from fakes.fixtures import fake_api, cluster, context_for, stub_mlflow  # noqa: F401
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fakes.cluster import FakeCluster
from fakes.kubeapi import FakeKubeAPI
from harness.config.matrix import Channel, Matrix, load_matrix
from harness.system import waits
from harness.system.state import RunState
from provisioners.api import RunContext

BUNDLES = Path(__file__).resolve().parent / "recordings" / "bundles"
RUN_ID = "20260101-000000-abcdef"
FAST = {"poll_interval": 0.05, "successes": 2, "endpoint_timeout": 10, "command_timeout": 30,
        "bootstrap_timeout": 30}


def local_channel(name: str, matrix: Matrix | None = None) -> Channel:
    """A channel of matrix.yaml whose bundle is the recorded release bundle on disk."""
    matrix = matrix or load_matrix()
    return dataclasses.replace(matrix.channels[name],
                               bundle=str(BUNDLES / f"{name.replace('/', '-')}.yaml"))


def matrix_with(**platform_settings: dict[str, Any]) -> Matrix:
    """matrix.yaml with local bundles and the given settings patched into platforms."""
    matrix = load_matrix()
    channels = {name: local_channel(name, matrix) for name in matrix.channels}
    platforms = dict(matrix.platforms)
    for name, settings in platform_settings.items():
        platform = platforms[name]
        platforms[name] = dataclasses.replace(
            platform, settings=dataclasses.replace(platform.settings, **settings))
    return dataclasses.replace(matrix, channels=channels, platforms=platforms)


class StubMlflow:
    """Answers /version and /health like an MLflow server (for endpoint discovery tests)."""

    def __init__(self, version: str = "2.22.0") -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.paths.append(self.path)
                body = (stub.version if self.path == "/version" else "OK").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.version = version
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=False)
def stub_mlflow() -> Iterator[StubMlflow]:
    stub = StubMlflow()
    yield stub
    stub.close()


@pytest.fixture
def fake_api(stub_mlflow: StubMlflow) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI(backends={"mlflow-server": stub_mlflow.port,
                                "mlflow-minio": stub_mlflow.port}).start()
    yield api
    api.stop()


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            fake_api: FakeKubeAPI) -> Callable[..., FakeCluster]:
    """Factory: `cluster(scenario_dict)` → an activated FakeCluster wired to `fake_api`."""
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path / "cache"))
    waits.CANCEL.clear()

    def make(scenario: dict[str, Any] | None = None, api: FakeKubeAPI | None = None,
             ) -> FakeCluster:
        fake = FakeCluster(tmp_path / "fake", scenario, api=api or fake_api)
        fake.activate(monkeypatch)
        return fake

    return make


@pytest.fixture
def context_for(tmp_path: Path) -> Callable[..., RunContext]:
    """Factory: `context_for("microk8s-1.32", poll_interval=…, options={…})` → RunContext."""

    def make(platform: str, options: dict[str, Any] | None = None, **settings: Any) -> RunContext:
        matrix = matrix_with(**{platform: {**FAST, **settings}})
        state = RunState(tmp_path / "reports" / "state" / f"{RUN_ID}.json", RUN_ID)
        return RunContext(run_id=RUN_ID, platform=matrix.platforms[platform],
                          work_dir=tmp_path / "work" / platform, state=state,
                          env_for=_no_env, options=dict(options or {}))

    return make


def _no_env(channel: Channel) -> Any:
    raise AssertionError("these tests build no MLflow environment")


def deploy_all(deployments: list[Any], channels: tuple[str, ...]) -> list[BaseException]:
    """Deploy each deployment on its channel in a thread of its own, as parallel cells do;
    the errors they raised."""
    errors: list[BaseException] = []

    def deploy(dep: Any, channel: str) -> None:
        try:
            dep.deploy(local_channel(channel))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(d, c))
               for d, c in zip(deployments, channels, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors
