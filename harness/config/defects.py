"""Known defects: where one applies (selectors) and whether a failure is that defect (signature).

A known defect is accepted only when the failure looks like it: the exception class and/or a
regex over the failure text. Anything else that goes wrong in a marked test or phase is a real
failure, reported with the expected signature and the actual text side by side.

Loaded both by the harness and inside each cell's MLflow virtualenv (by harness.incell.plugin), so it
uses only the standard library and `packaging`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

PHASES = ("provision", "environment", "deploy", "upgrade", "restart", "collect", "teardown")
# A step of a documented procedure is a phase of its own: `upgrade/<step id>` (the guide's step
# ids, matrix.yaml `upgrade_guides:`), `backup/…`, `restore/…`, `remedy/…`.
STEP_PHASES = ("upgrade", "backup", "restore", "remedy")
DATABASES = ("sqlite", "mysql")
ARTIFACT_MODES = ("direct", "proxied")
TEXT_LIMIT = 2000  # characters of the actual failure kept next to the expected signature


@dataclass(frozen=True)
class Signature:
    """What a defect's failure looks like; at least one of the two is given."""

    exception: str = ""   # class name, bare (`AssertionError`) or dotted; base classes match too
    message: str = ""     # regex, searched in the failure text

    def matches(self, failure: Failure) -> bool:
        if self.exception and not any(_same_class(self.exception, name)
                                      for name in failure.exception_types):
            return False
        return not (self.message and not re.search(self.message, failure.text))

    def describe(self) -> str:
        parts = []
        if self.exception:
            parts.append(f"exception {self.exception}")
        if self.message:
            parts.append(f"message matching /{self.message}/")
        return " and ".join(parts)


@dataclass(frozen=True)
class KnownDefect:
    """A behaviour found broken; accepted where it applies and only when its signature matches."""

    id: str
    link: str
    summary: str
    signature: Signature
    tests: tuple[str, ...] = ()
    phases: tuple[str, ...] = ()
    introduced_in: str = ""   # inclusive, server MLflow version
    fixed_in: str = ""        # exclusive, server MLflow version
    mlflow: str = ""          # server MLflow specifier, for ranges the two above cannot say
    client: str = ""          # client MLflow specifier
    channels: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    upgrades: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnownDefect:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in data.items()}
        values["signature"] = Signature(**data.get("signature") or {})
        return cls(**values)


@dataclass(frozen=True)
class Facts:
    """What is known about a cell when deciding which defects apply.

    An empty field is unknown: a selector on it then does not apply (a failure stays red rather
    than being excused by a guess). A version may be unknown before deploy (`detect`).
    """

    platform: str = ""
    database: str = ""
    artifacts: str = ""
    server_versions: tuple[str, ...] = ()
    client_version: str = ""
    channels: tuple[str, ...] = ()
    upgrade: str = ""   # "FROM:TO" of an upgrade cell


@dataclass(frozen=True)
class Failure:
    exception_types: tuple[str, ...]   # the class and its bases, bare and dotted names
    text: str

    @classmethod
    def of(cls, exc: BaseException, text: str | None = None) -> Failure:
        names: list[str] = []
        for klass in type(exc).__mro__:
            if klass is object:
                continue
            names.append(f"{klass.__module__}.{klass.__name__}")
        body = text if text is not None else f"{type(exc).__name__}: {exc}"
        return cls(tuple(names), body)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one marked test or phase."""

    status: str                         # "known-defect" | "failed" (real failure or XPASS)
    defect: KnownDefect | None
    message: str
    expected: list[dict[str, str]] = field(default_factory=list)
    actual: str = ""


def applies(defect: KnownDefect, facts: Facts, *, strict: bool = True) -> bool:
    """Whether the defect's selectors hold for these facts.

    strict=False treats unknown facts as matching: used to list what *may* apply (plan, list).
    """
    upgrades = {_norm(u) for u in defect.upgrades}
    if upgrades and (not facts.upgrade or _norm(facts.upgrade) not in upgrades):
        return False
    if defect.channels and not set(defect.channels) & set(facts.channels):
        return False
    if defect.platforms and facts.platform not in defect.platforms:
        return False
    for wanted, have in ((defect.databases, facts.database), (defect.artifacts, facts.artifacts)):
        if wanted and (have not in wanted if have else strict):
            return False
    server = _versions(facts.server_versions)
    if defect.introduced_in or defect.fixed_in or defect.mlflow:
        if not server:
            return not strict
        if not any(_in_range(v, defect) for v in server):
            return False
    if defect.client:
        client = _versions((facts.client_version,))
        if not client:
            return not strict
        if client[0] not in SpecifierSet(defect.client):
            return False
    return True


def judge(defects: list[KnownDefect], failure: Failure | None, what: str) -> Judgement:
    """A marked test or phase ended; `failure` is None when it passed (XPASS)."""
    ids = ", ".join(d.id for d in defects)
    expected = [{"defect": d.id, "signature": d.signature.describe()} for d in defects]
    if failure is None:
        return Judgement(
            "failed", defects[0] if defects else None,
            f"{what} passed although known defect {ids} says it fails (XPASS): the defect no "
            "longer reproduces here; narrow or remove it in matrix.yaml known_defects",
            expected)
    for defect in defects:
        if defect.signature.matches(failure):
            return Judgement("known-defect", defect,
                             f"known defect {defect.id}: {defect.summary}", expected,
                             _clip(failure.text))
    lines = [f"{what} failed, but not as known defect {ids} fails:"]
    lines += [f"  expected ({e['defect']}): {e['signature']}" for e in expected]
    lines.append(f"  actual: {failure.exception_types[0] if failure.exception_types else '?'}: "
                 + _clip(failure.text).replace("\n", "\n          "))
    return Judgement("failed", None, "\n".join(lines), expected, _clip(failure.text))


def matches_test(pattern: str, short_id: str, node_id: str) -> bool:
    """`*` matches anything and `?` one character; every other character is literal, so test
    ids with brackets, `#` or `%` need no escaping."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return any(re.fullmatch(regex, text, re.DOTALL) for text in (short_id, node_id))


def check_entry(defect: KnownDefect) -> list[tuple[str, str, str]]:
    """Problems of one entry as (key, problem, hint); empty when it is valid."""
    problems: list[tuple[str, str, str]] = []
    sig = defect.signature
    if not sig.exception and not sig.message:
        problems.append(("signature", "says neither `exception` nor `message`",
                         "write what the failure looks like: an exception class and/or a regex "
                         "over its text, e.g. `message: \"out-of-date database schema\"`"))
    if sig.message:
        try:
            re.compile(sig.message)
        except re.error as exc:
            problems.append(("signature.message", f"not a valid regex: {exc}",
                             "escape regex characters such as ( ) [ ] . ? with a backslash"))
    if sig.exception and not re.fullmatch(r"[A-Za-z_][\w.]*", sig.exception):
        problems.append(("signature.exception", f"{sig.exception!r} is not a class name",
                         "write e.g. AssertionError or mlflow.exceptions.MlflowException"))
    if not defect.tests and not defect.phases:
        problems.append(("", "names neither `tests` nor `phases`",
                         "list the test ids or lifecycle phases this defect breaks"))
    for i, phase in enumerate(defect.phases):
        family, _, step = phase.partition("/")
        if phase not in PHASES and not (step and family in STEP_PHASES):
            close = difflib.get_close_matches(phase, PHASES, n=1)
            problems.append((f"phases[{i}]", f"unknown lifecycle phase {phase!r}",
                             (f"did you mean `{close[0]}`? " if close else "")
                             + f"use one of: {', '.join(PHASES)}, or a guide step as "
                             "upgrade/<step id>"))
    for key, values, allowed in (("databases", defect.databases, DATABASES),
                                 ("artifacts", defect.artifacts, ARTIFACT_MODES)):
        for i, value in enumerate(values):
            if value not in allowed:
                problems.append((f"{key}[{i}]", f"unknown value {value!r}",
                                 f"use one of: {', '.join(allowed)}"
                                 + (" (Kubernetes bundles use mysql-k8s: write mysql)"
                                    if key == "databases" else "")))
    for key in ("introduced_in", "fixed_in"):
        text = getattr(defect, key)
        if text:
            try:
                Version(text)
            except InvalidVersion:
                problems.append((key, f"{text!r} is not a version",
                                 "write a release such as 2.22.0"))
    if (defect.introduced_in and defect.fixed_in and not problems
            and Version(defect.fixed_in) <= Version(defect.introduced_in)):
        problems.append(("fixed_in", f"{defect.fixed_in} is not after introduced_in "
                         f"{defect.introduced_in}", "fixed_in is exclusive; check both"))
    return problems


def _in_range(version: Version, defect: KnownDefect) -> bool:
    if defect.introduced_in and version < Version(defect.introduced_in):
        return False
    if defect.fixed_in and version >= Version(defect.fixed_in):
        return False
    return not (defect.mlflow and version not in SpecifierSet(defect.mlflow))


def _versions(texts: tuple[str, ...]) -> list[Version]:
    found = []
    for text in texts:
        try:
            found.append(Version(text))
        except InvalidVersion:
            continue
    return found


def _same_class(wanted: str, qualified: str) -> bool:
    return wanted == qualified or qualified.endswith("." + wanted) or (
        "." not in wanted and qualified.rsplit(".", 1)[-1] == wanted)


def _norm(label: str) -> str:
    return label.replace("→", ":")


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …"
