"""Before anything deploys: what a partial run selects, collected in each cell's own env.

`-k`/`-m`/`--deselect` after `--`, or `--scenario` naming a subset of the suites, narrow a run.
A -k/-m selection that matches no test would cost a full deploy and then read as a product
failure, so each cell's tests are collected first (`pytest --collect-only` in the MLflow env of
the cell's client, the same plugin, every phase) and a selection that matches nothing is bad
input, exit 2. What it does match is recorded, so the cell says "partial: N of M tests
selected". A `--scenario` subset alone needs no collection: "partial: 1 of 6 suites selected".
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import harness
from harness.config.matrix import DETECT, UPGRADE_SCENARIO, Cell, Matrix
from harness.config.pytest_args import PytestArgs
from harness.system.endpoint import COLLECT_ALL_ENV
from harness.system.errors import ConfigError

COLLECT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Partial:
    selected: int
    total: int
    by: tuple[str, ...]  # the selecting arguments, `--scenario X` included
    unit: str = "tests"  # "suites" for a --scenario subset alone (counted without collecting)

    def to_dict(self) -> dict[str, object]:
        return {"selected": self.selected, "total": self.total, "by": list(self.by),
                "unit": self.unit}


def full_suites(matrix: Matrix, cell: Cell) -> tuple[str, ...]:
    """Every suite a cell of this kind runs when no --scenario narrows it."""
    return tuple(name for name, suite in matrix.suites.items()
                 if (suite.platforms is None or cell.platform.name in suite.platforms)
                 and (name == UPGRADE_SCENARIO) == bool(cell.upgrade_to))


class Env(Protocol):
    """What collection needs of an MLflow env (harness.system.cache.MlflowEnv)."""

    @property
    def python(self) -> Path: ...

    @property
    def mlflow_version(self) -> str: ...


def check_selection(matrix: Matrix, cells: Sequence[Cell], extra: PytestArgs,
                    scenarios: Sequence[str], env_for: Callable[[Cell], Env | None],
                    scenarios_dir: Path, progress: Callable[[str], None]
                    ) -> dict[str, Partial]:
    """{"platform/cell": Partial} for every cell whose run is a subset of its tests; raises
    ConfigError (exit 2) when a cell's selection matches nothing. `env_for(cell)`: the cell's
    client env (built or cached), or None where the version is known only after deploy."""
    if not extra.selects and not scenarios:
        return {}
    partial: dict[str, Partial] = {}
    if not extra.selects:  # whole suites: counted from the matrix, nothing to collect
        for cell in cells:
            everything = full_suites(matrix, cell)
            if len(cell.scenarios) < len(everything):
                partial[f"{cell.platform.name}/{cell.id}"] = Partial(
                    len(cell.scenarios), len(everything),
                    tuple(f"--scenario {s}" for s in scenarios), "suites")
        return partial
    cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="mlflow-matrix-collect-") as shim:
        (Path(shim) / "harness").symlink_to(Path(harness.__file__).resolve().parent)
        for cell in cells:
            env = env_for(cell) if cell.channel.mlflow_version != DETECT else None
            if env is None:
                progress(f"{cell.title}: the selection is checked after deploy (the MLflow "
                         "version is detected then)")
                continue
            everything = full_suites(matrix, cell)

            def ids(suites: tuple[str, ...], args: tuple[str, ...], env: Env = env) -> list[str]:
                key = (str(env.python), suites, args)
                if key not in cache:
                    cache[key] = collect(env, suites, args, scenarios_dir, Path(shim))
                return cache[key]

            total = len(ids(everything, ()))
            selected = len(ids(tuple(cell.scenarios), extra.selection))
            by = tuple(f"--scenario {s}" for s in scenarios) + extra.selection
            if selected == 0:
                raise ConfigError(
                    f"{cell.title}: the selection `{' '.join(by)}` matches none of its "
                    f"{total} tests (collected in its MLflow "
                    f"{env.mlflow_version} env, before deploying anything)",
                    hint="check the -k/-m expression against `pytest --collect-only` of the "
                         "suite, or drop it")
            if selected < total:
                partial[f"{cell.platform.name}/{cell.id}"] = Partial(selected, total, by)
    return partial


def collect(env: Env, suites: Sequence[str], args: Sequence[str], scenarios_dir: Path,
            shim: Path) -> list[str]:
    """The node ids pytest collects for these suites and arguments (every phase kept)."""
    python = str(env.python)
    files = [path for s in suites if (path := scenarios_dir / f"test_{s}.py").is_file()]
    if not files:  # no suite file in this scenarios dir: nothing to collect
        return []
    argv = [python, "-m", "pytest", *map(str, files),
            "-p", "harness.incell.plugin", "-c", str(scenarios_dir / "pytest.ini"),
            "--rootdir", str(scenarios_dir), "-p", "no:cacheprovider", "--collect-only", "-q",
            *args]
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
               and not k.startswith(("MLFLOW_MATRIX_", "PYTEST_"))}
    environ.update({"PYTHONPATH": str(shim), COLLECT_ALL_ENV: "1",
                    "PATH": f"{Path(python).parent}:{environ.get('PATH', '')}"})
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              env=environ, stdin=subprocess.DEVNULL, timeout=COLLECT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"collecting the selected tests took over {COLLECT_TIMEOUT:.0f}s",
                          hint="try again; if it persists, run without -k/-m") from None
    found = [ln.strip() for ln in proc.stdout.splitlines() if "::" in ln and " " not in ln.strip()]
    if proc.returncode not in (0, 5):
        output = (proc.stderr + "\n" + proc.stdout).splitlines()
        lines = ([ln for ln in output if ln.startswith(("ERROR", "E "))]
                 or [ln for ln in output if "error" in ln.lower()])
        raise ConfigError(f"pytest refused the arguments after `--`: "
                          f"{(lines or ['exit ' + str(proc.returncode)])[0][:200]}",
                          hint="check them with `pytest --help`; only -k, -m, --deselect and "
                               "--ignore select tests")
    return found


def as_dicts(partial: Mapping[str, Partial]) -> dict[str, dict[str, object]]:
    return {key: value.to_dict() for key, value in partial.items()}
