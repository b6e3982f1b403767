"""The pytest arguments a user may pass after `--`, checked before anything deploys.

The harness owns each cell's pytest command line: where results go (`--alluredir`, `--junitxml`),
which plugins load (its own, allure's, xdist's; the cache is off), which config file applies. An
argument that overrides one of those would send results outside the reports dir, or run no test
while the cell reads green (`--co`), or make pytest refuse the command after a full deploy
(`--lf` with the cache off). Those are refused here, with exit 2, before anything starts.

Arguments that narrow what runs (`-k`, `-m`, `--deselect`, `--ignore`) are allowed: they make
the run *partial*, which the cell's status then says. A test path or node id is refused: pytest
would run it besides the suite files of every cell and phase, not instead of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.system.errors import ConfigError

HARNESS_PLUGINS = ("harness.incell.plugin", "allure_pytest", "xdist", "xdist.plugin",
                   "xdist.looponfail")
_NO_TEST = "runs no test, so the cell would read green with nothing checked"
_CACHE = ("needs pytest's cache, which the harness turns off (`-p no:cacheprovider`): every "
          "cell starts from a fresh deployment, so there is no earlier failure to re-run")
_OUTPUT = "moves the harness's own results out of the reports dir"


@dataclass(frozen=True)
class Refusal:
    why: str
    hint: str


# option → why it is refused; options that take a value take it as `--opt=V` or `--opt V`
REFUSED: dict[str, Refusal] = {
    **{o: Refusal(_NO_TEST, "leave it out; `mlflow-matrix plan` prints every step and the "
                            "pytest command line of each cell without running anything")
       for o in ("--co", "--collect-only", "--collectonly", "--setup-only", "--setup-plan",
                 "--fixtures", "--funcargs", "--fixtures-per-test", "--markers", "-h", "--help",
                 "--version", "-V")},
    **{o: Refusal(_OUTPUT, "leave it out: the cell's results are in "
                           "reports/<platform>/<cell>/ (allure-results/, junit*.xml)")
       for o in ("--junitxml", "--junit-xml", "--alluredir", "--clean-alluredir",
                 "--result-log", "--resultlog")},
    **{o: Refusal(_CACHE, "to re-run only what failed in the previous run, use `mlflow-matrix "
                          "run --last-failed` (with the --reports-dir that run used)")
       for o in ("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first",
                 "--sw", "--stepwise", "--sw-skip", "--stepwise-skip", "--sw-reset",
                 "--stepwise-reset", "--cache-clear", "--cache-show", "--lfnf",
                 "--last-failed-no-failures")},
    **{o: Refusal("replaces the scenarios' own pytest configuration (markers, rootdir)",
                  "leave it out; pass single options with `-o NAME=VALUE`")
       for o in ("-c", "--config-file", "--rootdir", "--inifile")},
    **{o: Refusal("sets the pytest-xdist workers the harness sizes per cell",
                  "use `--workers N` before `--` (1: serial)")
       for o in ("-n", "--numprocesses", "--dist", "--maxprocesses", "--tx")},
    **{o: Refusal("waits for a debugger on a terminal the cell's pytest does not have",
                  "reproduce on a kept deployment instead: `--keep`, then run pytest by hand")
       for o in ("--pdb", "--trace", "--pdbcls")},
}
WITH_VALUE = frozenset({"--junitxml", "--junit-xml", "--alluredir", "--result-log",
                        "--resultlog", "-c", "--config-file", "--rootdir", "--inifile", "-n",
                        "--numprocesses", "--dist", "--maxprocesses", "--tx", "--pdbcls",
                        "-p", "-k", "-m", "--deselect", "--ignore", "--ignore-glob", "-o",
                        "--override-ini", "--maxfail", "--tb", "-W", "--pythonwarnings",
                        "--basetemp", "--durations", "--durations-min", "-r",
                        "--log-level", "--log-format", "--log-cli-level", "--timeout",
                        "--confcutdir", "--import-mode", "--capture", "--color"})
SELECTING = frozenset({"-k", "-m", "--deselect", "--ignore", "--ignore-glob"})


@dataclass(frozen=True)
class PytestArgs:
    """The extra pytest arguments of a run, split into what selects tests and the rest."""

    argv: tuple[str, ...]
    selection: tuple[str, ...]   # -k/-m/--deselect/--ignore and their values

    @property
    def selects(self) -> bool:
        return bool(self.selection)

    def describe(self) -> str:
        return " ".join(self.selection)


def _split(arg: str) -> tuple[str, str | None]:
    """`--opt=V` → (--opt, V); `-kNAME` → (-k, NAME); `-pno:x` → (-p, no:x)."""
    if arg.startswith("--"):
        name, eq, value = arg.partition("=")
        return name, (value if eq else None)
    if len(arg) > 2 and arg[:2] in ("-k", "-m", "-p", "-c", "-n", "-o", "-W", "-r"):
        return arg[:2], arg[2:].lstrip("=")
    return arg, None


def check_pytest_args(args: Sequence[str]) -> PytestArgs:
    """Refuse what overrides the harness's outputs or plugins; return what the run selects."""
    selection: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        name, value = _split(arg)
        takes = name in WITH_VALUE
        if takes and value is None:
            value = args[i + 1] if i + 1 < len(args) else None
            shown = f"{arg} {value}" if value is not None else arg
            i += 2
        else:
            shown = arg
            i += 1
        refusal = REFUSED.get(name)
        if refusal is None and name == "-p" and value is not None:
            refusal = _plugin_refusal(value)
        if refusal is not None:
            raise ConfigError(f"pytest argument `{_clip(shown)}` after `--` {refusal.why}",
                              hint=refusal.hint)
        if takes and value is None:
            raise ConfigError(f"pytest argument `{arg}` after `--` needs a value",
                              hint=f"write `{arg} VALUE` or `{arg}=VALUE`")
        if name in SELECTING:
            selection.append(shown)
        elif not arg.startswith("-"):
            # pytest would run it *besides* the cell's suite files, in every cell and phase
            raise ConfigError(f"pytest argument `{_clip(arg)}` after `--` names tests to run "
                              "besides each cell's own suites",
                              hint="select with `--scenario SUITE` and `-- -k NAME` (or "
                                   "`-- --deselect NODEID`)")
    return PytestArgs(tuple(args), tuple(selection))


def _plugin_refusal(value: str) -> Refusal | None:
    name = value.removeprefix("no:")
    if value.startswith("no:") and name in HARNESS_PLUGINS:
        return Refusal(f"turns off {name}, which the harness needs for its results and "
                       "verdicts", "leave it out")
    if name == "cacheprovider":
        return Refusal(_CACHE, "leave it out")
    return None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
