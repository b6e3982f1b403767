"""Extra pytest arguments (`run … -- ARGS`) that cannot work inside a cell, refused up front.

Each cell runs pytest with its cache disabled (`-p no:cacheprovider`: a fresh deployment has
no "last run" to remember), so pytest rejects the cache's flags, after the deployment is up,
and the cell turns broken. Refusing them here costs nothing and says what does the job.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.system import hints
from harness.system.errors import ConfigError

# pytest's cacheprovider options (`pytest --help`, "general" section), long and short forms
CACHE_FLAGS = ("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first",
               "--sw", "--stepwise", "--sw-skip", "--stepwise-skip", "--sw-reset",
               "--stepwise-reset", "--cache-show", "--cache-clear", "--lfnf",
               "--last-failed-no-failures")


def check_pytest_args(pytest_args: Sequence[str], *, command: str = "run") -> None:
    """Refuse what needs pytest's cache (exit 2), before anything starts."""
    for arg in pytest_args:
        name = arg.split("=", 1)[0]
        if name in CACHE_FLAGS:
            raise ConfigError(
                f"pytest's {name} needs its cache, which cells run without (each cell is a "
                "fresh deployment)",
                hint=("to re-run only what failed in the previous run, use "
                      f"`{hints.command(command, '--last-failed')}` (with the --reports-dir "
                      "that run used)") if name in ("--lf", "--last-failed", "--ff",
                                                    "--failed-first") else f"drop {name}")
