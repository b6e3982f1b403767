"""Cached MLflow envs: keyed by what goes in, built once even when two runs race."""

from __future__ import annotations

import threading

import harness.run.envs as envs


def test_env_key_changes_with_version_and_pins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path))
    a = envs.env_path("2.22.0", ["sqlalchemy<2.1"])
    assert a == envs.env_path("2.22.0", ["sqlalchemy<2.1"])
    assert a != envs.env_path("2.22.0", [])
    assert a != envs.env_path("2.15.1", ["sqlalchemy<2.1"])
    assert a.is_relative_to(tmp_path)


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path))
    builds = []

    def fake_build(env, pins, *, timeout, **watch):
        builds.append(env.path)
        env.path.mkdir(parents=True)
        threading.Event().wait(0.3)  # hold the lock while the other caller waits

    monkeypatch.setattr(envs, "_build", fake_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        envs.ensure_env("9.9.9", ["x<1"], timeout=30))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len({r.path for r in results}) == 1


def test_failed_install_is_a_readable_infrastructure_error(tmp_path, monkeypatch):
    import pytest

    from harness.system.errors import InfrastructureError

    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path))
    with pytest.raises(InfrastructureError) as exc:
        envs.ensure_env("0.0.0.999", [], timeout=120)
    assert "could not install MLflow 0.0.0.999" in exc.value.message
    assert not envs.env_path("0.0.0.999", []).exists()


def test_a_cancelled_build_stops_uv_within_seconds_and_records_it(tmp_path, monkeypatch):
    """SIGTERM/Ctrl-C set the run's cancel event: uv (here stuck on an index that never
    answers) is stopped, its record released, and no half-built env is left."""
    import socket
    import time

    from harness.system.errors import Interrupted
    from harness.system.procs import group_alive
    from harness.system.state import RunState

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    monkeypatch.setenv("UV_INDEX_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/simple")
    monkeypatch.setenv("UV_HTTP_TIMEOUT", "300")
    state = RunState(tmp_path / "state.json", "r1")
    cancel = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            envs.ensure_env("2.22.0", [], timeout=600, state=state, cancel=cancel)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not any(r.data.get("argv", [])[1:3] == ["pip", "install"]
                      for r in state.resources()):
            assert time.monotonic() < deadline, "uv pip install was never recorded"
            time.sleep(0.1)
        (uv,) = [r.data for r in state.resources() if r.data["argv"][1:3] == ["pip", "install"]]
        assert uv["started"] and uv["cmdline"] and uv["pgid"] == uv["pid"]
        time.sleep(1)
        cancel.set()
        stopped = time.monotonic()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert time.monotonic() - stopped < 5
    finally:
        cancel.set()
        thread.join(timeout=10)
        silent.close()
    assert len(errors) == 1 and isinstance(errors[0], Interrupted)
    assert not group_alive(uv["pgid"])
    assert state.resources() == []
    assert not envs.env_path("2.22.0", []).exists()
