"""Per-request latency of a fixed request mix against the local MLflow server, per version and
server variant, measured back to back in one invocation (the machine is shared: compare ratios).

    python benchmarks/request_latency.py                       # 2.22.0 and 3.14.0, charm variant
    python benchmarks/request_latency.py --version 3.14.0 --variant charm --variant no-jobs \
        --variant workers-2 --rounds 40 --json out.json

Each variant starts the server exactly as `provisioners/local.py` does (the charm's command line:
`--backend-store-uri … --default-artifact-root s3://… --expose-prometheus DIR`) and changes one
thing (see VARIANTS). Requests go over one keep-alive HTTP connection with the standard library,
so the figure is the server's answer time, not the MLflow client's. A warm-up round is dropped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.matrix import load_matrix
from harness.run.envs import MlflowEnv, ensure_env
from harness.system.state import RunState, new_run_id
from provisioners.api import RunContext
from provisioners.local import (
    LocalSettings,
    MariaDbStore,
    MlflowServer,
    SeaweedS3,
    SqliteStore,
)


@dataclass(frozen=True)
class Variant:
    """One change to the charm's server: extra argv and/or environment."""

    name: str
    why: str
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    no_prometheus: bool = False


VARIANTS = {v.name: v for v in (
    Variant("charm", "the charm's command line, unchanged"),
    Variant("no-prometheus", "without --expose-prometheus", no_prometheus=True),
    Variant("workers-1", "--workers 1", argv=("--workers", "1")),
    Variant("workers-2", "--workers 2", argv=("--workers", "2")),
    Variant("no-jobs", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (MLflow 3: no huey job runner)",
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
    Variant("no-telemetry", "MLFLOW_DISABLE_TELEMETRY=true",
            env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}),
    Variant("gunicorn", "--gunicorn-opts '' (MLflow 3: Flask app under gunicorn, as 2.x)",
            argv=("--gunicorn-opts", "--timeout 120")),
    Variant("no-security", "--disable-security-middleware (MLflow 3 host/CORS checks off)",
            argv=("--disable-security-middleware",)),
)}


class Http:
    """One keep-alive connection; each call returns (seconds, decoded JSON)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: str = "") -> tuple[float, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        url = path + (f"?{query}" if query else "")
        t0 = time.perf_counter()
        try:
            self.conn.request(method, url, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request(method, url, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        elapsed = time.perf_counter() - t0
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}: {raw[:300]!r}")
        return elapsed, (json.loads(raw) if raw and raw[:1] in b"{[" else raw)


API = "/api/2.0/mlflow"
IDLE_WINDOW = 10.0


def request_mix(http: Http) -> Iterator[tuple[str, float]]:
    """The requests a tracking/registry scenario makes most, each timed."""
    tag = uuid.uuid4().hex[:10]
    t, _ = http.call("GET", "/health")
    yield "GET /health", t
    t, body = http.call("POST", f"{API}/experiments/create", {"name": f"lat-{tag}"})
    yield "experiments/create", t
    experiment_id = body["experiment_id"]
    t, _ = http.call("GET", f"{API}/experiments/get-by-name", query=f"experiment_name=lat-{tag}")
    yield "experiments/get-by-name", t
    t, body = http.call("POST", f"{API}/runs/create",
                        {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
    yield "runs/create", t
    run_id = body["run"]["info"]["run_id"]
    now = int(time.time() * 1000)
    t, _ = http.call("POST", f"{API}/runs/log-batch", {
        "run_id": run_id,
        "metrics": [{"key": f"m{i}", "value": i / 3, "timestamp": now, "step": i} for i in range(10)],
        "params": [{"key": f"p{i}", "value": str(i)} for i in range(5)],
        "tags": [{"key": "team", "value": "matrix"}]})
    yield "runs/log-batch", t
    t, _ = http.call("POST", f"{API}/runs/log-metric",
                     {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": now, "step": 1})
    yield "runs/log-metric", t
    t, _ = http.call("GET", f"{API}/runs/get", query=f"run_id={run_id}")
    yield "runs/get", t
    t, _ = http.call("GET", f"{API}/metrics/get-history", query=f"run_id={run_id}&metric_key=m3")
    yield "metrics/get-history", t
    t, _ = http.call("POST", f"{API}/runs/search",
                     {"experiment_ids": [experiment_id], "filter": "params.p1 = '1'",
                      "max_results": 10})
    yield "runs/search", t
    t, _ = http.call("POST", f"{API}/runs/update", {"run_id": run_id, "status": "FINISHED",
                                                    "end_time": now + 5})
    yield "runs/update", t
    t, _ = http.call("POST", f"{API}/registered-models/create", {"name": f"lat-{tag}"})
    yield "registered-models/create", t
    t, _ = http.call("POST", f"{API}/model-versions/create",
                     {"name": f"lat-{tag}", "source": f"s3://mlflow/lat/{tag}", "run_id": run_id})
    yield "model-versions/create", t
    t, _ = http.call("GET", f"{API}/registered-models/get", query=f"name=lat-{tag}")
    yield "registered-models/get", t
    t, _ = http.call("POST", f"{API}/experiments/search",
                     {"max_results": 5, "filter": f"name = 'lat-{tag}'"})
    yield "experiments/search", t


@dataclass
class Sample:
    version: str
    variant: str
    per_request: dict[str, list[float]] = field(default_factory=dict)
    start_s: float = 0.0
    stop_s: float = 0.0
    processes: int = 0
    rss_mib: float = 0.0
    idle_cpu_pct: float = 0.0
    start_cpu_s: float = 0.0
    cpu_per_mix_ms: float = 0.0

    def summary(self) -> dict[str, Any]:
        rows = {name: {"median_ms": round(statistics.median(v) * 1000, 2),
                       "p90_ms": round(sorted(v)[int(0.9 * (len(v) - 1))] * 1000, 2)}
                for name, v in self.per_request.items()}
        mix = [sum(v) for v in zip(*self.per_request.values(), strict=True)]
        return {"version": self.version, "variant": self.variant,
                "mix_median_ms": round(statistics.median(mix) * 1000, 1),
                "start_s": round(self.start_s, 1), "stop_s": round(self.stop_s, 1),
                "processes": self.processes, "idle_cpu_pct": round(self.idle_cpu_pct, 1),
                "start_cpu_s": round(self.start_cpu_s, 1),
                "cpu_per_mix_ms": round(self.cpu_per_mix_ms, 1),
                "rss_mib": round(self.rss_mib), "requests": rows}


def process_group(pgid: int) -> list[int]:
    """Every process of the server's group (MLflow 3's job consumers outlive their parent)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class VariantServer(MlflowServer):
    variant: Variant = VARIANTS["charm"]

    def argv(self) -> list[str]:
        argv = super().argv()
        if self.variant.no_prometheus:
            i = argv.index("--expose-prometheus")
            del argv[i:i + 2]
        return argv + list(self.variant.argv)


@contextmanager
def patched_environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure(env: MlflowEnv, variant: Variant, context: RunContext, s3: SeaweedS3, store_uri: str,
            root: Path, rounds: int, progress: Callable[[str], None]) -> Sample:
    settings = LocalSettings()
    server = VariantServer(env, root, context, settings, s3, store_uri, timeout=600)
    server.variant = variant
    sample = Sample(env.mlflow_version, variant.name)
    try:
        with patched_environ(variant.env):
            t0 = time.monotonic()
            endpoint = server.start()
            sample.start_s = time.monotonic() - t0
        assert server.service and server.service.pid
        sample.start_cpu_s = cpu_seconds(process_group(server.service.pid))
        port = int(endpoint.tracking_uri.rsplit(":", 1)[1])
        http = Http(port)
        for _ in range(2):  # warm-up: imports, first DB connections on every worker
            list(request_mix(http))
        time.sleep(1)
        pids = process_group(server.service.pid)
        sample.processes, sample.rss_mib = len(pids), rss_mib(pids)
        before, t0 = cpu_seconds(pids), time.monotonic()
        time.sleep(IDLE_WINDOW)  # what the server tree burns while nobody asks anything
        sample.idle_cpu_pct = 100 * (cpu_seconds(pids) - before) / (time.monotonic() - t0)
        pids = process_group(server.service.pid)
        before = cpu_seconds(pids)
        for _ in range(rounds):
            for name, seconds in request_mix(http):
                sample.per_request.setdefault(name, []).append(seconds)
        sample.cpu_per_mix_ms = 1000 * (cpu_seconds(pids) - before) / rounds
        progress(f"  {env.mlflow_version} {variant.name}: mix median "
                 f"{sample.summary()['mix_median_ms']} ms, start {sample.start_s:.1f}s, "
                 f"{sample.processes} processes, {sample.rss_mib:.0f} MiB, idle CPU "
                 f"{sample.idle_cpu_pct:.1f}%, CPU to start {sample.start_cpu_s:.1f}s, "
                 f"CPU per mix {sample.cpu_per_mix_ms:.0f} ms")
    finally:
        t0 = time.monotonic()
        server.stop()
        sample.stop_s = time.monotonic() - t0
    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", default=[],
                        help="MLflow version (repeatable; default: 2.22.0 and the latest channel)")
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS),
                        help="server variant (repeatable; default: charm)")
    parser.add_argument("--database", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=30, help="request mixes per variant")
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate the versions this many times (noise check)")
    parser.add_argument("--matrix", type=Path, default=Path(__file__).resolve().parent.parent
                        / "matrix.yaml")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    matrix = load_matrix(args.matrix)
    channels = {c.mlflow_version: c for c in matrix.channels.values()}
    versions = args.version or ["2.22.0", max(channels, key=lambda v: tuple(map(int, v.split("."))))]
    variants = [VARIANTS[v] for v in (args.variant or ["charm"])]

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load = os.getloadavg()
    progress(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores")
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-latency-") as tmp:
        work = Path(tmp)
        state = RunState(work / "state.json", new_run_id())
        platform = matrix.platforms["local-mysql" if args.database == "mysql" else "local"]
        context = RunContext(run_id=state.run_id, platform=platform, work_dir=work, state=state,
                             env_for=lambda c: ensure_env(c.mlflow_version,
                                                          matrix.requirements_for(c),
                                                          timeout=900))
        envs = {}
        for version in versions:
            channel = channels[version]
            envs[version] = ensure_env(version, matrix.requirements_for(channel), timeout=900,
                                       progress=progress)
        for repeat in range(args.repeat):
            for version in versions:
                s3 = SeaweedS3(work / f"s3-{version}-{repeat}", context, 600)
                db = (SqliteStore(work / f"db-{version}-{repeat}") if args.database == "sqlite"
                      else MariaDbStore(work / f"db-{version}-{repeat}", context, 180))
                try:
                    s3.start()
                    s3.create_bucket("mlflow")
                    db.start()
                    for variant in variants:
                        samples.append(measure(envs[version], variant, context, s3, db.uri,
                                               work / f"srv-{version}-{variant.name}-{repeat}",
                                               args.rounds, progress))
                finally:
                    db.stop()
                    s3.stop()
    after = os.getloadavg()
    rows = [s.summary() for s in samples]
    names = list(samples[0].per_request)
    print(f"{'version':8} {'variant':14} {'mix ms':>8} {'start s':>8} {'stop s':>7} "
          f"{'procs':>5} {'MiB':>6} {'idle%':>5} {'cpu@start':>9} {'cpu/mix':>7}  "
          + " ".join(f"{n.split('/')[-1][:10]:>10}" for n in names))
    for row in rows:
        print(f"{row['version']:8} {row['variant']:14} {row['mix_median_ms']:8.1f} "
              f"{row['start_s']:8.1f} {row['stop_s']:7.1f} {row['processes']:5d} {row['rss_mib']:6d} "
              f"{row['idle_cpu_pct']:5.1f} {row['start_cpu_s']:9.1f} {row['cpu_per_mix_ms']:7.0f}  "
              + " ".join(f"{row['requests'][n]['median_ms']:10.1f}" for n in names))
    print(f"load average before {load[0]:.2f}, after {after[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"load_before": load, "load_after": after,
                                         "rounds": args.rounds, "database": args.database,
                                         "samples": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
