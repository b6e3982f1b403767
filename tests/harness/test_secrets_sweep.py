"""A run leaks no secret: not the ones it was given (cloud keys, MLflow credentials in its
environment), not the ones it made (S3 keys, the MariaDB password). Every file in the reports
dir and in the run's temp dirs, every process's command line while the run goes, and the
environment of every component it starts are searched for each of them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GIVEN = {  # what a CI runner or a laptop typically holds
    "AWS_ACCESS_KEY_ID": "AKIAGIVENKEY7R3X9Q2Z",
    "AWS_SECRET_ACCESS_KEY": "given-aws-secret-6f1c0e9b2d7a4c3b",
    "AWS_SESSION_TOKEN": "given-session-token-0c9d8e7f6a5b",
    "AZURE_CLIENT_SECRET": "given-azure-secret-3e4f5a6b7c8d",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON": "given-gcp-json-9a8b7c6d5e4f",
    "MLFLOW_TRACKING_PASSWORD": "given-mlflow-password-1a2b3c4d",
    "MLFLOW_TRACKING_TOKEN": "given-mlflow-token-5e6f7a8b9c0d",
}
COMPONENTS = ("mlflow-server", "seaweedfs", "mariadb")


def _made_secrets(tmp: Path) -> set[str]:
    """The secrets the run generated, read from the 0600 files it keeps them in."""
    found = set()
    for config in tmp.glob("mlflow-matrix-*/s3/s3-identities.json"):
        for identity in json.loads(config.read_text())["identities"]:
            for cred in identity["credentials"]:
                found |= {cred["accessKey"], cred["secretKey"]}
    for cnf in tmp.glob("mlflow-matrix-*/db/client.cnf"):
        found |= {line.split("=", 1)[1] for line in cnf.read_text().splitlines()
                  if line.startswith("password=")}
    return found


def _snapshot(run_pgids: set[int]) -> tuple[str, dict[str, bytes]]:
    """Every process's command line, and the environment of the run's components."""
    argv, environs = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"))
            pgid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[2])
            if pgid in run_pgids:
                environs[entry.name] = (entry / "environ").read_bytes()
        except (OSError, ValueError):
            continue
    return "\n".join(argv), environs


def _files(root: Path) -> dict[Path, bytes]:
    out = {}
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                out[path] = path.read_bytes()
        except OSError:
            continue
    return out


@pytest.mark.skipif(not Path("/usr/sbin/mariadbd").exists(), reason="MariaDB is not installed")
def test_no_secret_reaches_reports_temp_dirs_command_lines_or_components(tmp_path):
    # a short TMPDIR of its own: MariaDB's socket path must stay under the 107-byte limit
    tmp, reports = Path(tempfile.mkdtemp(prefix="sweep-", dir="/tmp")), tmp_path / "reports"
    try:
        _sweep(tmp, reports)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep(tmp: Path, reports: Path) -> None:
    env = {**os.environ, **GIVEN, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", "local-mysql", "--channel",
         "2.22/stable", "--scenario", "tracking", "--reports-dir", str(reports), "--workers", "1",
         "--", "-k", "experiment"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    made: set[str] = set()
    argvs: list[str] = []
    component_env: dict[str, bytes] = {}
    temp_files: dict[Path, bytes] = {}
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        made |= _made_secrets(tmp)
        state = next((reports / "state").glob("*.json"), None) if (reports / "state").is_dir() \
            else None
        pgids = set()
        if state is not None:
            with contextlib.suppress(ValueError, KeyError):
                pgids = {r["pgid"] for r in json.loads(state.read_text())["resources"]
                         if r.get("name") in COMPONENTS}
        text, environs = _snapshot(pgids)
        argvs.append(text)
        component_env.update(environs)
        temp_files.update(_files(tmp))
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    assert len(made) >= 3, "the run's own S3 keys and MariaDB password were not seen"
    assert component_env, "no component environment was read"
    temp_files.update(_files(tmp))
    files = {**_files(reports), **temp_files}
    secrets = set(GIVEN.values()) | made
    hits = []
    for secret in secrets:
        raw = secret.encode()
        hits += [f"file {p}" for p, data in files.items() if raw in data
                 and p.name not in ("s3-identities.json", "client.cnf")]
        hits += ["a command line" for text in argvs if secret in text][:1]
        if raw in out:
            hits.append("output of the run")
    for pid, environ in component_env.items():
        hits += [f"environment of component pid {pid}: {s[:6]}…" for s in GIVEN.values()
                 if s.encode() in environ]
    assert hits == [], hits
    assert not [p for p in tmp.iterdir()], "the run left files in its TMPDIR"
