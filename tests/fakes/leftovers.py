"""What a run left on this machine, counted from the outside (/proc, sockets, the file system).

Used by the interrupt tests and benchmarks/interrupt_under_tox.py: before the signal, `Snapshot`
takes every process group, port and temp dir the run state recorded; after the run exited,
`Snapshot.leftovers()` names what is still there. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports in LISTEN state owned by any of `pids` (read from /proc)."""
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
            if target.startswith("socket:[") and target[8:-1] in inodes:
                ports.add(inodes[target[8:-1]])
    return ports


def group_members(pgids: set[int]) -> set[int]:
    """Live (not zombie) processes whose process group is one of `pgids`."""
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


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Snapshot:
    """Everything the run recorded so far, and the ports its processes listen on."""

    state_file: Path
    run_id: str = ""
    pgids: set[int] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    dirs: set[Path] = field(default_factory=set)

    def take(self) -> Snapshot:
        """Add what the state file records now (call it as often as you like)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return self
        self.run_id = state["run_id"]
        for resource in state["resources"]:
            if resource["type"] == "process":
                self.pgids.add(resource["pgid"])
                self.names.add(resource["name"])
            elif resource["type"] == "dir":
                self.dirs.add(Path(resource["path"]))
        self.ports |= listening_ports(group_members(self.pgids))
        return self

    def leftovers(self) -> list[str]:
        """What is still there: processes, listening ports, temp dirs, state file entries."""
        left = [f"process {pid}" for pid in sorted(group_members(self.pgids))]
        left += [f"port {port}" for port in sorted(self.ports) if port_open(port)]
        left += [f"dir {d}" for d in sorted(self.dirs) if d.exists()]
        if self.run_id:
            left += [f"dir {d}" for d in Path(tempfile.gettempdir()).glob(
                f"mlflow-matrix-{self.run_id}-*") if d not in self.dirs]
        try:
            recorded = json.loads(self.state_file.read_text())["resources"]
        except (OSError, ValueError, KeyError):
            recorded = []
        left += [f"state entry {r['type']} {r.get('name') or r.get('path')}" for r in recorded]
        return left
