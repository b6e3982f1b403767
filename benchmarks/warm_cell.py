"""Wall time of one warm cell (env cached) and where it goes, per phase.

    python benchmarks/warm_cell.py [--platform local] [--channel 2.22/stable] [--repeat 2]

The first run may build the MLflow env; later runs are warm. The local server's start-up
(the `deploy` phase) is the floor a cell cannot go below.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", default="local")
    parser.add_argument("--channel", default="2.22/stable")
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for i in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="mlflow-matrix-bench-") as tmp:
            argv = [sys.executable, "-m", "harness", "run", "--platform", args.platform,
                    "--channel", args.channel, "--reports-dir", tmp]
            for suite in args.scenario:
                argv += ["--scenario", suite]
            t0 = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True)
            wall = time.monotonic() - t0
            (cell,) = Path(tmp).glob("*/*/cell.json")
            body = json.loads(cell.read_text())
            phases = ", ".join(f"{p['name']} {p['duration_s']:.1f}s" for p in body["phases"])
            counts = ", ".join(f"{n} {s}" for s, n in sorted(body["counts"].items()))
            print(f"run {i}: exit {proc.returncode}, wall {wall:.1f}s, status {body['status']}"
                  f" ({counts}); phases: {phases}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
