"""Hostile inputs to `mlflow-matrix`: each must end with exit 2, one screen, fast, and leave
nothing behind (no traceback, no file in the current directory, no temp dir).

    python benchmarks/hostile_inputs.py [--json OUT]

prints one row per case: exit code, seconds, lines on stderr, what was left behind. The same
cases are the parametrized test tests/harness/test_hostile_inputs.py (which asserts everything
but the time: timing targets are measured here, not asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIG = "x" * 100_000          # a 100 kB flag value: must never be echoed in full
LONG_NAME = "r" * 300        # one path component over NAME_MAX (255)
MATRIX = (ROOT / "matrix.yaml").read_text(encoding="utf-8")


def laughs(levels: int, duplicate: bool = False) -> str:
    """The billion-laughs shape: each level is ten aliases of the previous one."""
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    if duplicate:
        lines.append("lol1: again")
    return MATRIX + "\n" + "\n".join(lines) + "\n"


def with_pin(requirement: str) -> str:
    return MATRIX.replace("install_pins:\n", "install_pins:\n  - mlflow: '>=0'\n"
                          f"    requirements: [{json.dumps(requirement)}]\n", 1)


def with_value(old: str, new: str) -> str:
    assert old in MATRIX, old
    return MATRIX.replace(old, new, 1)


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    # name → content of files written into the case's directory before the command runs;
    # "{dir}" in argv is that directory
    files: dict[str, str | bytes] = field(default_factory=dict)


def _matrix_cases() -> list[Case]:
    bad_files: dict[str, str | bytes] = {
        "laughs-9": laughs(9),
        "laughs-9-duplicate": laughs(9, duplicate=True),
        "laughs-30": laughs(30),
        "laughs-then-nested-duplicate": laughs(7) + "zz: {a: 1, a: 2}\n",
        "non-utf8": MATRIX.encode() + b"\n# caf\xe9 \xff\xfe\n",
        "latin1-only": "channels: {caf\xe9: {mlflow: 2.22.0}}\n".encode("latin-1"),
        "binary": bytes(range(256)) * 64,
        "deep-lists": "a: " + "[" * 20_000 + "]" * 20_000 + "\n",
        "deep-maps": "a: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n",
        "deep-block": "".join(" " * i + f"k{i}:\n" for i in range(3_000)) + " " * 3_000 + "v\n",
        "huge-file": MATRIX + "#" + "y" * 5_000_000 + "\n",
        "long-key": MATRIX + f"\n{BIG}: 1\n",
        "python-tag": MATRIX + "\nevil: !!python/object/apply:os.system ['true']\n",
        "pin-index-url": with_pin("--index-url=http://127.0.0.1:1/simple"),
        "pin-editable": with_pin("-e ."),
        "pin-extra-index": with_pin("mlflow --extra-index-url http://127.0.0.1:1/"),
        "pin-garbage": with_pin("not a ((requirement"),
        "timeout-huge-int": with_value("timeouts:\n", "timeouts:\n  scenarios: "
                                       + "9" * 40 + "\n"),
        "timeout-inf": with_value("timeouts:\n", "timeouts:\n  scenarios: .inf\n"),
        "timeout-nan": with_value("timeouts:\n", "timeouts:\n  scenarios: .nan\n"),
        "parallel-huge": with_value("  parallel:", "  parallel: 100000\n  x_parallel:"),
        "channel-name-100k": with_value("channels:\n", f"channels:\n  '{BIG}': {{mlflow: 2.22.0}}\n"),
    }
    cases = []
    for name, content in bad_files.items():
        cases.append(Case(f"list-{name}", ("list", "--matrix", "{dir}/matrix.yaml"),
                          {"matrix.yaml": content}))
    for name in ("laughs-9-duplicate", "non-utf8", "deep-lists", "pin-index-url"):
        cases.append(Case(f"plan-{name}", ("plan", "--platform", "local", "--matrix",
                                           "{dir}/matrix.yaml"), {"matrix.yaml": bad_files[name]}))
    return cases


def _cli_cases() -> list[Case]:
    local = ("--platform", "local")
    return [
        Case("run-reports-dir-300", ("run", *local, "--reports-dir", f"{{dir}}/{LONG_NAME}")),
        Case("plan-reports-dir-300", ("plan", *local, "--reports-dir", f"{{dir}}/{LONG_NAME}")),
        Case("janitor-reports-dir-300", ("janitor", "--reports-dir", f"{{dir}}/{LONG_NAME}")),
        Case("report-reports-dir-300", ("report", "--reports-dir", f"{{dir}}/{LONG_NAME}")),
        Case("down-reports-dir-300", ("down", "--run-id", "x", "--reports-dir",
                                      f"{{dir}}/{LONG_NAME}")),
        Case("run-reports-dir-is-file", ("run", *local, "--reports-dir", "{dir}/file"),
             {"file": "x"}),
        Case("list-matrix-300", ("list", "--matrix", f"{{dir}}/{LONG_NAME}")),
        Case("list-matrix-100k", ("list", "--matrix", BIG)),
        Case("list-matrix-dir", ("list", "--matrix", "{dir}")),
        Case("plan-kubeconfig-300", ("plan", "--platform", "local", "--kubeconfig",
                                     f"{{dir}}/{LONG_NAME}")),
        Case("janitor-older-than-absurd", ("janitor", "--cloud", "eks", "--older-than",
                                           "99999999999999d")),
        Case("janitor-older-than-negative", ("janitor", "--cloud", "eks", "--older-than", "-5d")),
        Case("janitor-older-than-100k", ("janitor", "--cloud", "eks", "--older-than", BIG)),
        Case("run-workers-100000", ("run", *local, "--workers", "100000")),
        Case("run-parallel-100000", ("run", *local, "--parallel", "100000")),
        Case("run-workers-40-digits", ("run", *local, "--workers", "9" * 40)),
        Case("run-workers-100k", ("run", *local, "--workers", BIG)),
        Case("plan-channel-100k", ("plan", *local, "--channel", BIG)),
        Case("plan-platform-100k", ("plan", "--platform", BIG)),
        Case("plan-scenario-100k", ("plan", *local, "--scenario", BIG)),
        Case("plan-upgrade-100k", ("plan", *local, "--upgrade", BIG)),
        Case("plan-mlflow-version-100k", ("plan", *local, "--mlflow-version", BIG)),
        Case("run-run-id-100k", ("run", *local, "--run-id", BIG)),
        Case("plan-tracking-uri-100k", ("plan", "--platform", "external", "--tracking-uri", BIG)),
        Case("plan-channel-non-utf8", ("plan", *local, "--channel",
                                       os.fsdecode(b"2.22/st\xff\xfeable"))),
        Case("command-100k", (BIG,)),
        Case("flag-100k", ("list", f"--{BIG}")),
    ]


CASES: list[Case] = _matrix_cases() + _cli_cases()


@dataclass(frozen=True)
class Outcome:
    case: str
    exit_code: int
    seconds: float
    cpu_seconds: float     # user + system of the child: what the time is on an idle machine
    stderr_lines: int
    stderr_chars: int
    traceback: bool
    left_in_cwd: tuple[str, ...]
    left_in_tmp: tuple[str, ...]


def run_case(case: Case, where: Path, *, timeout: float = 120,
             tmp_root: Path | None = None) -> tuple[Outcome, subprocess.CompletedProcess[str]]:
    """Run one case in a fresh directory (its cwd); report what it left there and in $TMPDIR."""
    where.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = where / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    before = set(os.listdir(where)) | {".tmp"}
    tmp = tmp_root or where / ".tmp"
    tmp.mkdir(exist_ok=True)
    tmp_before = set(os.listdir(tmp))
    argv = [a.replace("{dir}", str(where)) for a in case.argv]
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    start, cpu = time.monotonic(), _children_cpu()
    try:
        done = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=where, env=env,
                              capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess(argv, -9, "", f"(no answer within {timeout:.0f}s)")
    seconds, cpu = time.monotonic() - start, _children_cpu() - cpu
    left_cwd = tuple(sorted(set(os.listdir(where)) - before))
    left_tmp = tuple(sorted(set(os.listdir(tmp)) - tmp_before))
    return Outcome(case.id, done.returncode, round(seconds, 2), round(cpu, 2), len(done.stderr.splitlines()),
                   len(done.stderr), "Traceback" in done.stderr or "Traceback" in done.stdout,
                   left_cwd, left_tmp), done


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None, run: Callable[..., tuple[Outcome, object]] = run_case,
         ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("-k", default="", help="only cases whose id contains this")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as base:
        for case in CASES:
            if args.k not in case.id:
                continue
            outcome, _ = run(case, Path(base) / case.id)
            rows.append(outcome)
            left = ", ".join(outcome.left_in_cwd + outcome.left_in_tmp) or "-"
            shutil.rmtree(Path(base) / case.id, ignore_errors=True)
            print(f"{outcome.case:<34} exit {outcome.exit_code:>3}  {outcome.seconds:6.2f}s "
                  f"(cpu {outcome.cpu_seconds:5.2f}s)  "
                  f"{outcome.stderr_lines:>4} lines {outcome.stderr_chars:>7} chars"
                  f"{'  TRACEBACK' if outcome.traceback else ''}  left: {left}", flush=True)
    if rows:
        worst = max(rows, key=lambda r: r.seconds)
        cpu = max(rows, key=lambda r: r.cpu_seconds)
        bad = [r.case for r in rows if r.exit_code != 2]
        print(f"{len(rows)} cases; max {worst.seconds:.2f}s wall ({worst.case}), "
              f"{cpu.cpu_seconds:.2f}s cpu ({cpu.case}); load {os.getloadavg()[0]:.1f}; "
              f"not exit 2: {', '.join(bad) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
