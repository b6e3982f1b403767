"""Selections that used to surprise: each is refused (exit 2) or said out loud, before anything runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cli import main, parse
from harness.commands.selection import select
from harness.system.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
RELEASES = {"3.1.0", "2.22.0", "2.20.0"}


class _Index(BaseHTTPRequestHandler):
    """A simple index (PEP 691 JSON, with PEP 700 `versions`), as PyPI serves /simple/mlflow/."""

    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        if self.path != "/simple/mlflow/":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({
            "meta": {"api-version": "1.1"}, "name": "mlflow", "versions": sorted(RELEASES),
            "files": [{"filename": f"mlflow-{v}-py3-none-any.whl"} for v in sorted(RELEASES)]})
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index(monkeypatch, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Index.hits = []
    monkeypatch.setenv("MLFLOW_MATRIX_PYPI_URL", f"http://127.0.0.1:{server.server_port}/simple")
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path / "cache"))
    yield _Index
    server.shutdown()
    server.server_close()


def _select(*argv: str):
    args, _ = parse(["plan", *argv])
    return select(args)


def _error(*argv: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _select(*argv)
    return info.value


def test_repeated_flags_select_once_and_say_so():
    selected = _select("--platform", "local", "--platform", "local", "--channel", "2.22/stable",
                       "--channel", "2.22/stable")
    assert [(c.platform.name, c.id) for c in selected.cells] == [("local", "2.22-stable")]
    assert "--platform local given 2 times; selected once" in selected.notes
    assert "--channel 2.22/stable given 2 times; selected once" in selected.notes


@pytest.mark.parametrize(("label", "expected"), [
    ("2.22/stable:2.15/stable", "is a downgrade (MLflow 2.22.0 → 2.15.1)"),
    ("2.22/stable:2.22/stable", "upgrades a channel to itself"),
])
def test_downgrades_and_same_channel_upgrades_are_refused(label, expected):
    error = _error("--platform", "local", "--upgrade", label)
    assert expected in error.message and error.exit_code == 2
    assert error.hint


def test_platform_all_says_what_it_leaves_out():
    selected = _select("--platform", "all", "--channel", "2.22/stable", "--scenario", "tracking")
    assert "external" not in {c.platform.name for c in selected.cells}
    assert any("leaves out external" in n and "--tracking-uri" in n for n in selected.notes)


@pytest.mark.parametrize("argv", [
    ("--platform", "microk8s-1.32", "--mlflow-version", "3.1.0"),
    ("--platform", "canonical-k8s-1.32", "--upgrade", "2.22.0:3.1.0"),
])
def test_bare_versions_on_juju_platforms_are_refused(argv):
    error = _error(*argv)
    assert "deploys Charmed MLflow channels" in error.message
    assert "--channel" in (error.hint or "")


def test_a_version_pypi_does_not_have_is_bad_input(index, capsys):
    assert main(["plan", "--platform", "local", "--mlflow-version", "99.0.0"]) == 2
    err = capsys.readouterr().err
    assert "MLflow 99.0.0 is not a release on PyPI" in err and "fix:" in err
    assert "99.0.0 not among them" in err
    assert index.hits == ["/simple/mlflow/"]


def test_a_released_version_is_checked_once_then_cached(index):
    assert _select("--platform", "local", "--mlflow-version", "3.1.0").cells
    assert _select("--platform", "local", "--upgrade", "2.20.0:3.1").cells  # 3.1 == 3.1.0
    assert index.hits == ["/simple/mlflow/"]


def test_offline_is_a_clear_note_not_a_crash(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_MATRIX_PYPI_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("MLFLOW_MATRIX_CACHE", str(tmp_path / "cache"))
    selected = _select("--platform", "local", "--mlflow-version", "3.1.0")
    assert selected.cells
    assert any("could not check that MLflow 3.1.0 exists on PyPI" in n for n in selected.notes)


@pytest.mark.parametrize(("argv", "flag"), [
    (("--tracking-uri", "http://127.0.0.1:5000"), "--tracking-uri"),
    (("--platform", "local", "--artifact-bucket", "b"), "--artifact-bucket"),
    (("--platform", "local", "--kubeconfig", "/tmp/k"), "--kubeconfig"),
    (("--platform", "local-mysql", "--controller", "c"), "--controller"),
])
def test_options_no_selected_platform_reads_are_refused(argv, flag):
    error = _error(*argv)
    assert error.message.startswith(f"{flag} applies to none of the selected platforms")
    assert f"drop {flag}" in (error.hint or "")


def test_an_option_is_fine_when_one_selected_platform_reads_it():
    selected = _select("--platform", "existing", "--platform", "local", "--kubeconfig",
                       "/tmp/k", "--channel", "2.22/stable", "--scenario", "tracking")
    assert {c.platform.name for c in selected.cells} == {"existing", "local"}


def test_unknown_platform_names_the_registered_kinds():
    from harness.config.registry import known_kinds

    error = _error("--platform", "nosuch-cloud")
    assert "unknown platform 'nosuch-cloud'" in error.message
    assert "no registered provisioner kind is called that" in error.message
    assert f"registered kinds: {', '.join(known_kinds())}" in error.hint


def test_unknown_platform_of_a_kind_registered_but_not_installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "mm_test_cloudy-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mm-test-cloudy\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[mlflow_matrix.provisioners]\ncloudy = mm_cloudy_not_installed:Provisioner\n")
    monkeypatch.syspath_prepend(str(site))
    error = _error("--platform", "cloudy-1.0")
    assert "no cloudy platform in" in error.message
    assert "registered but not installed" in error.message


def test_unknown_platform_that_names_a_registered_kind(tmp_path):
    """Once a kind is registered (here through a real entry point), the message says the matrix
    file has no platform of that kind yet: same code, no list of clouds in it."""
    site = tmp_path / "site"
    info = site / "mm_test_cloudy-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mm-test-cloudy\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[mlflow_matrix.provisioners]\ncloudy = provisioners.local:LocalProvisioner\n")
    result = subprocess.run([sys.executable, "-m", "harness", "plan", "--platform", "cloudy-1.32"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert "cloudy is a provisioner kind, and" in result.stderr
    assert "has no platform of kind cloudy yet" in result.stderr
    assert "add one under `platforms:`" in result.stderr


def test_a_kind_name_selects_every_platform_of_that_kind():
    """`tox -e matrix -- --platform eks`: the README's first line names a kind, not a platform."""
    selected = _select("--platform", "eks", "--channel", "2.22/stable", "--scenario", "tracking")
    assert {c.platform.name for c in selected.cells} == {"eks-1.32"}
    assert any("platforms of kind eks: eks-1.32" in n for n in selected.notes)


def test_a_typo_gets_a_suggestion():
    error = _error("--platform", "local-mysq")
    assert "did you mean `local-mysql`?" in (error.hint or "")
