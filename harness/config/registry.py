"""Provisioner kinds: the entry-point group `mlflow_matrix.provisioners`, and nothing else.

Built-ins register there too (pyproject.toml), so a third-party kind is added exactly like one of
ours. A kind's module is imported only when that kind is used.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from harness.system.errors import ConfigError

if TYPE_CHECKING:
    from provisioners.api import Provisioner

ENTRY_POINT_GROUP = "mlflow_matrix.provisioners"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    return sorted(_entry_points())


def load_provisioner_class(kind: str) -> type[Provisioner]:
    found = _entry_points()
    if kind not in found:
        registered = ", ".join(sorted(found)) or "none"
        raise ConfigError(
            f"unknown provisioner kind {kind!r} (registered kinds: {registered})",
            hint=f"use one of the registered kinds, or install the package that registers "
                 f"{kind!r} under the entry-point group {ENTRY_POINT_GROUP!r}")
    try:
        return found[kind].load()  # type: ignore[no-any-return]
    except ImportError as exc:
        raise ConfigError(f"provisioner kind {kind!r} is registered but cannot be loaded ({exc})",
                          hint="reinstall the package that provides it "
                               "(`pip install -e .` for the built-ins)") from exc
