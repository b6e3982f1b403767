"""CPU seconds per kind of process while a command runs: which part of a matrix run the cores
actually spend their time on (servers, job consumers, pytest clients, stores).

    python benchmarks/cpu_by_process.py [--json F] -- mlflow-matrix run [ARGS]

Every process's utime + stime is read from /proc/<pid>/stat twice a second and its last reading
is kept, so a process that lived at least half a second counts fully, even if it was killed and
reaped by init (which `time` would miss). Processes that existed before the command started count
only what they burned after. Every process on the machine counts: run it on an idle machine.
Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
KINDS = (  # first match wins: (what the command line contains, kind)
    (("huey_consumer",), "MLflow 3 job consumers (huey)"),
    (("mlflow.server.jobs",), "MLflow 3 job runner"),
    (("multiprocessing.spawn",), "MLflow 3 uvicorn workers (spawned)"),
    (("multiprocessing.resource_tracker",), "MLflow 3 uvicorn helpers"),
    (("uvicorn",), "MLflow 3 uvicorn supervisor"),
    (("gunicorn",), "MLflow 2 gunicorn (master + workers)"),
    (("bin/mlflow server", "mlflow server"), "mlflow server command"),
    (("weed",), "SeaweedFS"),
    (("mariadbd", "mysqld"), "MariaDB"),
    (("-m pytest",), "pytest (controller or serial run)"),
    (("execnet", "exec(eval("), "pytest-xdist workers"),
    (("-m harness", "mlflow-matrix"), "harness"),
    (("/uv ", "uv pip"), "uv (env builds)"),
)


def kind_of(cmdline: str) -> str:
    for needles, kind in KINDS:
        if any(n in cmdline for n in needles):
            return kind
    return "other"


def read_cpu(pid: str) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return None


def read_cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


class Sampler:
    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.baseline: dict[str, float] = {}
        self.last: dict[str, tuple[str, float]] = {}
        self.done = threading.Event()

    def _pids(self) -> list[str]:
        return [p for p in os.listdir("/proc") if p.isdigit()]

    def start(self) -> Sampler:
        for pid in self._pids():
            cpu = read_cpu(pid)
            if cpu is not None:
                self.baseline[pid] = cpu
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def sample(self) -> None:
        for pid in self._pids():
            cpu = read_cpu(pid)
            if cpu is None:
                continue
            kind = self.last[pid][0] if pid in self.last else kind_of(read_cmdline(pid))
            self.last[pid] = (kind, cpu - self.baseline.get(pid, 0.0))

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.sample()
        totals: Counter[str] = Counter()
        for kind, cpu in self.last.values():
            totals[kind] += max(0.0, cpu)
        return {k: round(v, 1) for k, v in totals.most_common()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    own, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(own)
    if not command or not Path("/proc/self/stat").exists():
        print("cpu_by_process: needs a command after `--` and Linux /proc", file=sys.stderr)
        return 2
    sampler = Sampler().start()
    t0 = time.monotonic()
    code = subprocess.call(command)
    wall = time.monotonic() - t0
    totals = sampler.stop()
    total = sum(totals.values())
    print(f"-- {' '.join(command)}: exit {code}, wall {wall:.0f}s, {total:.0f} CPU-s "
          f"({total / wall:.2f} cores on average of {os.cpu_count()})")
    for kind, seconds in totals.items():
        print(f"{seconds:8.1f} CPU-s {100 * seconds / total if total else 0:5.1f} %  {kind}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "exit_code": code,
                                         "wall_s": round(wall, 1), "cpu_s": totals},
                                        indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
