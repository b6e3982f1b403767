"""Load and validate matrix.yaml into frozen values, and expand a selection into cells.

Every problem is a `MatrixFileError` naming the file, the key path and the fix, so a user
never sees a traceback for a typo.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from harness.config.defects import KnownDefect, check_entry
from harness.config.guides import Guide, check_guide
from harness.config.model import (
    DETECT,
    PLATFORM_NAME,
    SUITE_NAME,
    UPGRADE_SCENARIO,
    Cell,
    Channel,
    CiNeeds,
    InstallPin,
    Matrix,
    Platform,
    PlatformTraits,
    Selection,
    Suite,
    Timeouts,
    UpgradePath,
    cell_facts,
    platform_artifacts,
    platform_database,
)
from harness.config.registry import load_provisioner_class
from harness.system.errors import ConfigError, MatrixFileError

__all__ = [
    "DEFAULT_MATRIX",
    "DETECT",
    "PLATFORM_NAME",
    "SUITE_NAME",
    "UPGRADE_SCENARIO",
    "Cell",
    "Channel",
    "CiNeeds",
    "InstallPin",
    "Matrix",
    "Platform",
    "PlatformTraits",
    "Selection",
    "Suite",
    "Timeouts",
    "UpgradePath",
    "adhoc_channel",
    "cell_facts",
    "default_matrix_path",
    "expand_cells",
    "load_matrix",
    "platform_artifacts",
    "platform_database",
]

DEFAULT_MATRIX = Path(__file__).resolve().parents[2] / "matrix.yaml"
# ---------------------------------------------------------------- loading


def default_matrix_path() -> Path:
    """./matrix.yaml when the current directory has one (as `--help` says), else the project's."""
    here = Path.cwd() / "matrix.yaml"
    return here if here.is_file() else DEFAULT_MATRIX


def load_matrix(path: Path | str | None = None) -> Matrix:
    path = Path(path) if path else default_matrix_path()
    if not path.is_file():
        raise ConfigError(
            f"matrix file not found: {path}",
            hint="pass --matrix PATH to a matrix.yaml, or run from the project checkout",
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise MatrixFileError(path, exc.key, f"declared twice (line {exc.line})",
                              hint="each name may appear once; remove or rename one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MatrixFileError(path, where, f"not valid YAML: {problem}",
                              hint="check indentation and quoting near that line") from None
    return _Loader(path).load(raw)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                parent = self._path_of(node)
                raise _DuplicateKey(_join(parent, key), key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def _path_of(self, target: yaml.Node) -> str:
        def walk(node: yaml.Node, path: str) -> str | None:
            if node is target:
                return path
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    found = walk(v, _join(path, k.value))
                    if found is not None:
                        return found
            elif isinstance(node, yaml.SequenceNode):
                for i, v in enumerate(node.value):
                    found = walk(v, f"{path}[{i}]")
                    if found is not None:
                        return found
            return None

        return walk(self._root, "") or ""

    def construct_document(self, node):  # type: ignore[no-untyped-def]
        self._root = node
        return super().construct_document(node)


class _Loader:
    TOP_KEYS = {
        "channels": True,
        "platforms": True,
        "defaults": True,
        "scenarios": True,
        "upgrades": False,
        "install_pins": False,
        "known_defects": False,
        "timeouts": False,
        "upgrade_guides": False,
    }

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, hint: str | None = None) -> typing.NoReturn:
        raise MatrixFileError(self.path, key, problem, hint=hint)

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {_kind(value)}",
                      hint=f"write `{key.rsplit('.', 1)[-1]}:` followed by indented `name: value` lines")
        return value

    def keys(self, value: dict[str, Any], key: str, allowed: Mapping[str, bool]) -> None:
        for name in value:
            if name not in allowed:
                close = _closest(str(name), allowed)
                self.fail(_join(key, name), "unknown key",
                          hint=(f"did you mean `{close}`? " if close else "")
                          + f"allowed keys here: {', '.join(allowed)}")
        for name, required in allowed.items():
            if required and name not in value:
                self.fail(_join(key, name), "missing required key",
                          hint=f"add `{name}:` under `{key or 'the top level'}`")

    def typed(self, value: Any, hint: Any, key: str) -> Any:
        return _convert(self, value, hint, key)

    def load(self, raw: Any) -> Matrix:
        if raw is None:
            self.fail("(top level)", "the file is empty",
                      hint="start from the matrix.yaml shipped with the project")
        raw = self.mapping(raw, "(top level)")
        self.keys(raw, "", self.TOP_KEYS)
        channels = self.load_channels(raw["channels"])
        suites = self.load_suites(raw["scenarios"])
        platforms = self.load_platforms(raw["platforms"])
        for name, suite in suites.items():
            for platform in suite.platforms or ():
                if platform not in platforms:
                    self.fail(f"scenarios.{name}.platforms", f"unknown platform {platform!r}",
                              hint=f"use `all` or names from `platforms:` ({', '.join(platforms)})")
        upgrades = self.load_upgrades(raw.get("upgrades") or [], channels)
        pins = self.load_pins(raw.get("install_pins") or [])
        defects = self.load_defects(raw.get("known_defects") or [])
        timeouts = self.typed(raw.get("timeouts") or {}, Timeouts, "timeouts")
        defaults = self.load_defaults(raw["defaults"], channels, platforms, suites, upgrades)
        guides = self.load_guides(raw.get("upgrade_guides") or [], channels, defects)
        return Matrix(self.path, channels, platforms, suites, upgrades, pins, defects, defaults,
                      timeouts, guides)

    def load_channels(self, value: Any) -> dict[str, Channel]:
        value = self.mapping(value, "channels")
        if not value:
            self.fail("channels", "no channels declared", hint="add at least one channel")
        channels = {}
        for name, body in value.items():
            key = f"channels.{name}"
            body = self.mapping(body, key)
            if "mlflow" not in body:
                self.fail(f"{key}.mlflow", "channel has no MLflow version",
                          hint="add `mlflow: X.Y.Z` (the upstream MLflow this channel ships)")
            body = dict(body)
            version = self.typed(body.pop("mlflow"), str, f"{key}.mlflow")
            self.version(version, f"{key}.mlflow")
            if "mlflow_version" in body:
                self.fail(f"{key}.mlflow_version", "unknown key", hint="write `mlflow:`")
            channel = self.typed({"name": str(name), "mlflow_version": version, **body},
                                 Channel, key)
            channels[str(name)] = channel
        return channels

    def version(self, text: str, key: str) -> None:
        try:
            Version(text)
        except InvalidVersion:
            self.fail(key, f"{text!r} is not a version", hint="write a release such as 2.22.0")

    def specifier(self, text: str, key: str) -> None:
        try:
            SpecifierSet(text)
        except InvalidSpecifier:
            self.fail(key, f"{text!r} is not a version range", hint="write e.g. `>=2.6,<2.16`")

    def load_suites(self, value: Any) -> dict[str, Suite]:
        value = self.mapping(value, "scenarios")
        suites = {}
        for name, body in value.items():
            key = f"scenarios.{name}"
            if not SUITE_NAME.match(str(name)):
                self.fail(key, "suite names are lower-case identifiers",
                          hint=f"the suite `x` is the module scenarios/test_x.py; rename {name!r}")
            body = dict(self.mapping(body or {}, key))
            platforms = body.pop("platforms", "all")
            if platforms == "all":
                platforms = None
            else:
                platforms = self.typed(platforms, tuple[str, ...], f"{key}.platforms")
            suite = self.typed({"name": str(name), "platforms": None, **body}, Suite, key)
            suites[str(name)] = dataclasses.replace(suite, platforms=platforms)
        return suites

    def load_platforms(self, value: Any) -> dict[str, Platform]:
        value = self.mapping(value, "platforms")
        platforms: dict[str, Platform] = {}
        for name, body in value.items():
            key = f"platforms.{name}"
            if not PLATFORM_NAME.match(str(name)):
                self.fail(key, "platform names use lower-case letters, digits, '.' and '-'",
                          hint="rename it, e.g. `microk8s-1.32`")
            body = dict(self.mapping(body, key))
            kind = body.pop("kind", None)
            from harness.config.kinds import registered_kinds, unknown_kind_error

            if kind is None:
                self.fail(f"{key}.kind", "missing required key",
                          hint=f"add `kind:` with one of: {', '.join(registered_kinds())}")
            if kind not in registered_kinds():
                self.fail(f"{key}.kind", *unknown_kind_error(str(kind)))
            description = str(body.pop("description", ""))
            try:
                cls = load_provisioner_class(kind)
            except ConfigError as exc:
                self.fail(f"{key}.kind", exc.message, hint=exc.hint)
            settings = self.typed(body, cls.Settings, key)
            traits = dataclasses.replace(cls.traits(settings),
                                         takes_mlflow_version=cls.takes_mlflow_version,
                                         cli_options=tuple(cls.cli_options))
            platforms[str(name)] = Platform(str(name), kind, settings, description, traits)
        return platforms

    def load_upgrades(self, value: Any, channels: Mapping[str, Channel]) -> tuple[UpgradePath, ...]:
        if not isinstance(value, list):
            self.fail("upgrades", f"must be a list, got {_kind(value)}",
                      hint="write `- {from: 2.15/stable, to: 2.22/stable}` items")
        paths = []
        for i, item in enumerate(value):
            key = f"upgrades[{i}]"
            item = self.mapping(item, key)
            self.keys(item, key, {"from": True, "to": True})
            for side in ("from", "to"):
                if item[side] not in channels:
                    self.fail(f"{key}.{side}", f"unknown channel {item[side]!r}",
                              hint=f"use a channel from `channels:` ({', '.join(channels)})")
            paths.append(UpgradePath(str(item["from"]), str(item["to"])))
        return tuple(paths)

    def load_pins(self, value: Any) -> tuple[InstallPin, ...]:
        pins: tuple[InstallPin, ...] = self.typed(value, tuple[InstallPin, ...], "install_pins")
        for i, pin in enumerate(pins):
            self.specifier(pin.mlflow, f"install_pins[{i}].mlflow")
        return pins

    def load_defects(self, value: Any) -> tuple[KnownDefect, ...]:
        defects: tuple[KnownDefect, ...] = self.typed(value, tuple[KnownDefect, ...], "known_defects")
        seen = set()
        for i, defect in enumerate(defects):
            key = f"known_defects[{i}]"
            if defect.id in seen:
                self.fail(f"{key}.id", f"duplicate id {defect.id!r}",
                          hint="give every known defect its own id")
            seen.add(defect.id)
            for name in ("mlflow", "client"):
                if getattr(defect, name):
                    self.specifier(getattr(defect, name), f"{key}.{name}")
            for where, problem, hint in check_entry(defect):
                self.fail(_join(key, where), problem, hint=hint)
        return defects

    def load_guides(self, value: Any, channels: Mapping[str, Channel],
                    defects: tuple[KnownDefect, ...]) -> tuple[Guide, ...]:
        guides: tuple[Guide, ...] = self.typed(value, tuple[Guide, ...], "upgrade_guides")
        ids = tuple(d.id for d in defects)
        covered: dict[tuple[str, str], str] = {}
        for i, guide in enumerate(guides):
            key = f"upgrade_guides[{i}]"
            for where, problem, hint in check_guide(guide, channels, ids):
                self.fail(_join(key, where), problem, hint=hint)
            for path in guide.paths:
                if (guide.kind, path) in covered:
                    self.fail(f"{key}.paths", f"{path} already follows guide "
                              f"{covered[(guide.kind, path)]!r}",
                              hint="a path follows one guide of each kind; remove one")
                covered[(guide.kind, path)] = guide.id
        return guides

    def load_defaults(self, value: Any, channels: Mapping[str, Channel],
                      platforms: Mapping[str, Platform], suites: Mapping[str, Suite],
                      upgrades: tuple[UpgradePath, ...]) -> Selection:
        selection: Selection = self.typed(value, Selection, "defaults")
        for key in ("parallel", "workers"):
            if getattr(selection, key) < 0:
                self.fail(f"defaults.{key}", "must be 0 (sized to this machine) or more",
                          hint=f"write `{key}: 0` for the automatic default")
        for name in selection.platforms:
            if name not in platforms:
                self.fail("defaults.platforms", f"unknown platform {name!r}",
                          hint=f"use names from `platforms:` ({', '.join(platforms)})")
        for name in selection.channels:
            if name not in channels:
                self.fail("defaults.channels", f"unknown channel {name!r}",
                          hint=f"use names from `channels:` ({', '.join(channels)})")
        for name in selection.scenarios:
            if name not in suites:
                self.fail("defaults.scenarios", f"unknown scenario suite {name!r}",
                          hint=f"use names from `scenarios:` ({', '.join(suites)})")
        labels = {f"{u.source}:{u.target}" for u in upgrades}
        for name in selection.upgrades:
            if name not in labels:
                self.fail("defaults.upgrades", f"unknown upgrade path {name!r}",
                          hint=f"write FROM:TO from `upgrades:` ({', '.join(sorted(labels))})")
        return selection


def _convert(loader: _Loader, value: Any, hint: Any, key: str) -> Any:
    """`value` from the YAML as the type `hint` of a settings dataclass, or a file/key/fix error."""
    if dataclasses.is_dataclass(hint):
        return _to_dataclass(loader, value, hint, key)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        present = [a for a in args if a is not type(None)]
        return _convert(loader, value, present[0], key)
    if origin is tuple:
        return _to_tuple(loader, value, args[0], key)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        value = loader.mapping(value, key)
        inner = args[1] if args else str
        return {str(k): _convert(loader, v, inner, _join(key, k)) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            loader.fail(key, f"must be one of {', '.join(map(str, args))} (got {value!r})",
                        hint=f"pick one of: {', '.join(map(str, args))}")
        return value
    if hint is Any:
        return value
    if hint in _SCALARS:
        return _SCALARS[hint](loader, value, key)
    raise TypeError(f"unsupported settings type {hint!r} at {key}")


def _to_dataclass(loader: _Loader, value: Any, hint: Any, key: str) -> Any:
    value = loader.mapping(value, key)
    hints = typing.get_type_hints(hint)
    fields = {f.name: f for f in dataclasses.fields(hint)}
    allowed = {name: (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
               for name, f in fields.items()}
    display = {name: req for name, req in allowed.items() if name != "name"}
    for name in value:
        if name not in fields:
            close = _closest(str(name), display)
            loader.fail(_join(key, name), "unknown key",
                        hint=(f"did you mean `{close}`? " if close else "")
                        + f"allowed keys here: {', '.join(display) or '(none)'}")
    for name, required in allowed.items():
        if required and name not in value:
            loader.fail(_join(key, name), "missing required key",
                        hint=f"add `{name}:` under `{key}`")
    kwargs = {name: _convert(loader, v, hints[name], _join(key, name)) for name, v in value.items()}
    try:
        return hint(**kwargs)
    except (ValueError, TypeError) as exc:
        loader.fail(key, str(exc))


def _to_tuple(loader: _Loader, value: Any, item: Any, key: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        loader.fail(key, f"must be a list, got {_kind(value)}",
                    hint="write `[a, b]` or one `- item` per line")
    return tuple(_convert(loader, v, item, f"{key}[{i}]") for i, v in enumerate(value))


def _to_bool(loader: _Loader, value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        loader.fail(key, f"must be true or false, got {_kind(value)} {value!r}",
                    hint="write `true` or `false` without quotes")
    return value


def _to_int(loader: _Loader, value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        loader.fail(key, f"must be a whole number, got {_kind(value)} {value!r}",
                    hint="write a number without quotes, e.g. `600`")
    _check_sign(loader, key, value)
    return value


def _to_float(loader: _Loader, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        loader.fail(key, f"must be a number, got {_kind(value)} {value!r}",
                    hint="write a number without quotes, e.g. `5`")
    _check_sign(loader, key, value)
    return float(value)


def _to_str(loader: _Loader, value: Any, key: str) -> str:
    if isinstance(value, (dict, list)) or value is None:
        loader.fail(key, f"must be text, got {_kind(value)}",
                    hint="write a single value; quote it if it has special characters")
    if isinstance(value, float):
        loader.fail(key, f"must be text, got the number {value!r}",
                    hint=f"quote it: \"{value}\" (YAML reads 2.20 as the number 2.2)")
    return str(value)


_SCALARS: dict[Any, Callable[[_Loader, Any, str], Any]] = {
    bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _check_sign(loader: _Loader, key: str, value: float) -> None:
    """Seconds, counts and intervals: never negative; deadlines and intervals above zero."""
    name = key.rsplit(".", 1)[-1]
    positive = key.startswith("timeouts.") or any(
        word in name for word in ("timeout", "interval", "successes"))
    if value < 0 or (positive and value == 0):
        unit = "a count" if name in ("successes", "parallel") else "seconds"
        loader.fail(key, f"must be {'above zero' if positive else 'zero or more'} (got {value})",
                    hint=f"write a positive number ({unit}), e.g. "
                         f"`{name}: {_example_number(key)}`")


def _example_number(key: str) -> str:
    name = key.rsplit(".", 1)[-1]
    if name == "poll_interval":
        return "5"
    if name in ("successes", "parallel"):
        return "2"
    return "600"


def _join(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _closest(name: str, options: typing.Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


# ---------------------------------------------------------------- selection


def expand_cells(matrix: Matrix, selection: Selection) -> list[Cell]:
    """Cells for a selection: every platform × channel, plus every platform × upgrade path."""
    for name in selection.platforms:
        if name not in matrix.platforms:
            from harness.config.kinds import unknown_platform_error

            raise unknown_platform_error(name, matrix.platforms, matrix.path)
    for name in selection.channels:
        if name not in matrix.channels:
            raise ConfigError(f"unknown channel {name!r}",
                              hint=f"use one of: {', '.join(matrix.channels)}")
    for name in selection.scenarios:
        if name not in matrix.suites:
            raise ConfigError(f"unknown scenario suite {name!r}",
                              hint=f"use one of: {', '.join(matrix.suites)}")
    cells = []
    for platform_name in selection.platforms:
        platform = matrix.platforms[platform_name]
        suites = _suites_for(matrix, selection, platform, upgrade=False)
        if suites:
            cells += [Cell(platform, matrix.channels[c], suites) for c in selection.channels]
        for label in selection.upgrades:
            source, _, target = label.partition(":")
            if source not in matrix.channels or target not in matrix.channels or not target:
                raise ConfigError(f"unknown upgrade path {label!r}",
                                  hint="write --upgrade FROM:TO with channels from matrix.yaml, "
                                  f"e.g. {_example_upgrade(matrix)}")
            upgrade_suites = _suites_for(matrix, selection, platform, upgrade=True)
            if upgrade_suites:
                cells.append(Cell(platform, matrix.channels[source], upgrade_suites,
                                  upgrade_to=matrix.channels[target]))
        restore_suites = _suites_for(matrix, selection, platform, upgrade=True)
        for label in selection.restores if restore_suites else ():
            source, _, target = label.partition(":")
            cells.append(Cell(platform, matrix.channels[source], restore_suites,
                              upgrade_to=matrix.channels[target], procedure="restore"))
    return cells


def _suites_for(matrix: Matrix, selection: Selection, platform: Platform,
                *, upgrade: bool) -> tuple[str, ...]:
    wanted = selection.scenarios or tuple(matrix.suites)
    chosen = []
    for name in wanted:
        suite = matrix.suites[name]
        if suite.platforms is not None and platform.name not in suite.platforms:
            continue
        if (name == UPGRADE_SCENARIO) != upgrade:
            continue
        chosen.append(name)
    return tuple(chosen)


def _example_upgrade(matrix: Matrix) -> str:
    if matrix.upgrades:
        return f"{matrix.upgrades[0].source}:{matrix.upgrades[0].target}"
    names = list(matrix.channels)
    return f"{names[0]}:{names[-1]}"


def adhoc_channel(version: str) -> Channel:
    """A channel for `--mlflow-version V`: qualify an upstream release before it is charmed."""
    if version == DETECT:
        return Channel(name="detected", mlflow_version=DETECT)
    try:
        Version(version)
    except InvalidVersion:
        raise ConfigError(f"--mlflow-version {version!r} is not a version",
                          hint="write a release such as 2.22.0") from None
    return Channel(name=f"mlflow-{version}", mlflow_version=version,
                   migrates_db_on_upgrade=Version(version).major >= 3)
