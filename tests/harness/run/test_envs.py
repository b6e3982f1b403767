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

    def fake_build(env, pins, *, timeout):
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
