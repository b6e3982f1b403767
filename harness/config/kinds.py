"""What a user meant by a platform or kind the matrix does not have, said from the registry.

Messages are built from what is registered (the entry-point group) and what the matrix file
declares, never from a hard-coded list: once a kind such as `eks` is registered, `--platform eks`
reads "no platform of kind eks in this matrix file yet"; a kind registered but whose module is
missing reads "not available in this installation" — without a change here.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from harness.system.errors import ConfigError

VERSIONED = re.compile(r"^(?P<kind>[a-z][a-z0-9-]*?)-\d")  # eks-1.32 → eks


def declared_kinds() -> dict[str, str]:
    """kind → module, for every provisioner kind registered under the entry-point group."""
    from harness.config.registry import ENTRY_POINT_GROUP

    return {ep.name: ep.value.partition(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def registered_kinds() -> list[str]:
    """Kinds whose provisioner module is present: the ones a matrix file can use."""
    return sorted(k for k, module in declared_kinds().items() if _importable(module))


def unavailable_kinds() -> dict[str, str]:
    """Kinds known by name whose module is not in this installation (yet)."""
    return {k: m for k, m in sorted(declared_kinds().items()) if not _importable(m)}


def kind_of_name(name: str) -> str | None:
    """`eks` or `eks-1.32` → `eks` when that is a kind this installation knows by name."""
    declared = declared_kinds()
    if name in declared:
        return name
    match = VERSIONED.match(name)
    return match["kind"] if match and match["kind"] in declared else None


def unknown_kind_error(kind: str) -> tuple[str, str]:
    """(problem, fix) for `kind: X` in a matrix file when X cannot be loaded."""
    registered = ", ".join(registered_kinds())
    missing = unavailable_kinds()
    if kind in missing:
        return (f"provisioner kind {kind!r} is registered but not installed (module "
                f"{missing[kind]} is missing)",
                f"usable kinds: {registered}; reinstall the package that registers {kind!r} "
                "(`pip install -e .` for the built-ins), or remove this platform")
    close = difflib.get_close_matches(kind, registered_kinds(), n=1, cutoff=0.6)
    return (f"unknown provisioner kind {kind!r}",
            (f"did you mean `{close[0]}`? " if close else "") + f"registered kinds: {registered}")


def unknown_platform_error(name: str, platforms: Mapping[str, Any], matrix_path: object,
                           flag: str = "--platform") -> ConfigError:
    """`--platform X` where the matrix file has no platform X."""
    names = ", ".join(platforms)
    kind = kind_of_name(name)
    of_kind = [p for p, platform in platforms.items() if getattr(platform, "kind", None) == kind]
    if kind is not None and of_kind:
        return ConfigError(f"{flag} {name}: no platform named {name!r} in {matrix_path}",
                           hint=f"platforms of kind {kind}: {', '.join(of_kind)}")
    if kind is not None and kind in registered_kinds():
        return ConfigError(
            f"{flag} {name}: {kind} is a provisioner kind, and {matrix_path} has no platform of "
            f"kind {kind} yet",
            hint=f"add one under `platforms:` (e.g. `{kind}-<version>: {{kind: {kind}, …}}`, "
                 f"keys in docs/platforms.md), or use one of: {names}")
    if kind is not None:
        return ConfigError(
            f"{flag} {name}: no {kind} platform in {matrix_path}, and provisioner kind "
            f"{kind!r} is registered but not installed",
            hint=f"use one of: {names}; usable kinds: {', '.join(registered_kinds())}")
    close = difflib.get_close_matches(name, list(platforms), n=1, cutoff=0.6)
    return ConfigError(f"{flag} {name}: unknown platform {name!r}: {matrix_path} has no platform "
                       "of that name, and no registered provisioner kind is called that",
                       hint=(f"did you mean `{close[0]}`? " if close else "")
                       + f"use one of: {names}, or `all`; registered kinds: "
                       f"{', '.join(registered_kinds())}")
