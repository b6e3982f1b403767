"""Charmed MLflow's documented procedures as data (`upgrade_guides:` in matrix.yaml).

A guide is what a user of the charm follows, step by step: its steps are kept in the page's own
words (`text`) next to the action the harness executes for them, so a cell can say which guide
it followed and at which step it failed, and `plan` can show each step as it runs on every
platform kind (Juju: the command; local: its process-level equivalent). Steps are never made up
here: each one quotes its page, whose URL and reading date are kept with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# The bundle's applications (DESIGN.md): what a guide's steps act on.
SERVER_APP = "mlflow-server"
MINIO_APP = "mlflow-minio"
MYSQL_APP = "mlflow-mysql"
BUNDLE_APPS = (SERVER_APP, MINIO_APP, MYSQL_APP)
TARGET = "target"  # a refresh channel: the upgrade path's target channel
GuideKind = Literal["upgrade", "backup", "restore"]
StepKind = Literal["refresh", "remove-relation", "integrate", "run-action", "scale", "sync-bucket"]


@dataclass(frozen=True)
class Remedy:
    """What the documentation says to do when a step hits a known defect: it runs next, and
    the rest of the guide and every after-upgrade check still run."""

    defect: str   # the known_defects id whose failure this answers
    link: str     # where the remedy is documented
    text: str     # the documentation's own words
    command: str  # what runs, e.g. `mlflow db upgrade <backend-store-uri>`


@dataclass(frozen=True)
class GuideStep:
    id: str
    do: StepKind
    text: str                             # the guide's words for the step, verbatim
    app: str = ""                         # refresh, run-action, scale (the guide's name for it)
    channel: str = ""                     # refresh: a channel, or `target` (the path's target)
    endpoints: tuple[str, ...] = ()       # remove-relation, integrate: two APP:ENDPOINT
    action: str = ""                      # run-action
    units: int = 0                        # scale
    direction: Literal["", "backup", "restore"] = ""  # sync-bucket
    wait: Mapping[str, str] = field(default_factory=dict)  # APP: the status the guide waits for
    check_data: bool = False              # the step can lose data: the seed is read back after it
    remedy: Remedy | None = None

    @property
    def to_target(self) -> bool:
        """A refresh to the upgrade path's target channel (the target bundle's channel)."""
        return self.channel == TARGET


@dataclass(frozen=True)
class Guide:
    id: str
    title: str
    url: str
    read: str                             # the day the page was read (YYYY-MM-DD)
    source: str                           # where its text lives: repo@commit path
    steps: tuple[GuideStep, ...]
    kind: GuideKind = "upgrade"
    paths: tuple[str, ...] = ()           # FROM:TO upgrade (or restore) paths that follow it
    apps: Mapping[str, str] = field(default_factory=dict)  # the guide's app names → the bundle's
    one_way: str = ""                     # the guide's words when it says there is no way back

    def bundle_app(self, name: str) -> str:
        """The bundle's application a guide's name refers to (`mysql-k8s` → `mlflow-mysql`)."""
        return self.apps.get(name, name)

    def endpoint(self, text: str) -> str:
        app, sep, endpoint = text.partition(":")
        return f"{self.bundle_app(app)}{sep}{endpoint}"


def check_guide(guide: Guide, channels: Mapping[str, object],
                defects: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Problems of one entry as (key below the entry, problem, fix): the loader reports the first
    with the file and key path."""
    problems: list[tuple[str, str, str]] = []
    if not guide.url.startswith("https://"):
        problems.append(("url", "must be the guide's https:// address",
                         "paste the address of the page the steps were read from"))
    if len(guide.read) != 10 or guide.read[4] != "-" or guide.read[7] != "-":
        problems.append(("read", f"{guide.read!r} is not a date",
                         "write the day the page was read as YYYY-MM-DD, quoted"))
    if not guide.steps:
        problems.append(("steps", "a guide has at least one step",
                         "list the guide's steps in its order"))
    for name, app in guide.apps.items():
        if app not in BUNDLE_APPS:
            problems.append((f"apps.{name}", f"{app!r} is not an application of the bundle",
                             f"map it to one of: {', '.join(BUNDLE_APPS)}"))
    for i, label in enumerate(guide.paths):
        source, sep, target = label.partition(":")
        for side in (source, target):
            if not sep or side not in channels:
                problems.append((f"paths[{i}]", f"{label!r} is not FROM:TO with channels of "
                                 "the matrix", f"use channels from `channels:` "
                                 f"({', '.join(map(str, channels))})"))
                break
    seen: set[str] = set()
    for i, step in enumerate(guide.steps):
        key = f"steps[{i}]"
        if step.id in seen:
            problems.append((f"{key}.id", f"duplicate step id {step.id!r}",
                             "give every step of a guide its own id"))
        seen.add(step.id)
        problems += [(f"{key}.{where}", problem, fix)
                     for where, problem, fix in _check_step(guide, step, defects)]
    return problems


_NEEDS = {"refresh": ("app", "channel"), "remove-relation": ("endpoints",),
          "integrate": ("endpoints",), "run-action": ("app", "action"), "scale": ("app", "units"),
          "sync-bucket": ("direction",)}


def _check_step(guide: Guide, step: GuideStep,
                defects: tuple[str, ...]) -> list[tuple[str, str, str]]:
    problems = [(name, f"`do: {step.do}` needs `{name}`", f"add `{name}:` to the step")
                for name in _NEEDS[step.do] if not getattr(step, name)]
    apps = [step.app] if step.app else []
    if step.endpoints:
        if len(step.endpoints) != 2 or any(":" not in e for e in step.endpoints):
            problems.append(("endpoints", "must be two APP:ENDPOINT",
                             "write e.g. [mlflow-server:relational-db, mysql-k8s:database]"))
        apps += [e.partition(":")[0] for e in step.endpoints]
    apps += list(step.wait)
    for app in apps:
        if guide.bundle_app(app) not in BUNDLE_APPS:
            problems.append(("app", f"{app!r} is not an application of the bundle",
                             f"use one of {', '.join(BUNDLE_APPS)}, or map the guide's name "
                             "under the guide's `apps:`"))
    if step.remedy is not None and step.remedy.defect not in defects:
        problems.append(("remedy.defect", f"unknown known defect {step.remedy.defect!r}",
                         "use an id from `known_defects:`"))
    return problems
