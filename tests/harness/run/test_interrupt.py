"""Ctrl-C and SIGTERM during the scenario phase leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.system.procs import group_alive

ROOT = Path(__file__).resolve().parents[3]


def _listening_ports(pids: set[int]) -> set[int]:
    """Loopback TCP ports in LISTEN state owned by any of `pids` (read from /proc)."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[8:-1]
                if inode in inodes:
                    ports.add(inodes[inode])
    return ports


def _group_members(pgids: set[int]) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids and fields[0] != "Z":
                members.add(int(entry.name))
    return members


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_scenarios_releases_everything(tmp_path, slow_scenarios, sig):
    reports = tmp_path / "reports"
    marker = tmp_path / "started"
    env = {**os.environ, "MLFLOW_MATRIX_SCENARIOS_DIR": str(slow_scenarios),
           "SLOW_SCENARIO_MARKER": str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", "local", "--channel",
         "2.22/stable", "--scenario", "tracking", "--reports-dir", str(reports)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 420
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "scenario phase never started"
            time.sleep(0.5)
        (state_file,) = (reports / "state").glob("*.json")
        state = json.loads(state_file.read_text())
        run_id = state["run_id"]
        processes = [r for r in state["resources"] if r["type"] == "process"]
        dirs = [Path(r["path"]) for r in state["resources"] if r["type"] == "dir"]
        names = {r["name"] for r in processes}
        assert {"seaweedfs", "mlflow-server", "pytest"} <= names
        pgids = {r["pgid"] for r in processes}
        members = _group_members(pgids)
        ports = _listening_ports(members)
        assert len(ports) >= 9  # 8 SeaweedFS ports + MLflow
        assert all(d.exists() for d in dirs)

        started = time.monotonic()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=90)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "tearing down" in output
    assert not any(group_alive(pgid) for pgid in pgids), "a process group survived"
    assert not _group_members(pgids)
    assert not [p for p in ports if _port_open(p)], "a port is still listening"
    assert not [d for d in dirs if d.exists()], "a temp dir survived"
    assert not list(Path(tempfile.gettempdir()).glob(f"mlflow-matrix-{run_id}-*"))
    final = json.loads(state_file.read_text())
    assert final["status"] == "interrupted" and final["resources"] == []
    assert took < 60
    # the report says what happened: interrupted, not a broken harness
    cell_dir = reports / "local" / "2.22-stable"
    assert json.loads((cell_dir / "cell.json").read_text())["status"] == "interrupted"
    results = [json.loads(p.read_text()) for p in (cell_dir / "allure-results").glob("*-result.json")]
    assert not [r for r in results if r["fullName"].startswith("harness.")], "shown as harness error"
    assert not [r for r in results if r["status"] == "broken"]
    page = json.loads((reports / "matrix.json").read_text())
    assert [c["display_status"] for c in page["cells"]] == ["interrupted"]
    assert "INTERRUPTED  local · 2.22/stable" in output
