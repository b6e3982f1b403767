"""Names of what a run creates in Juju: bounded, lower-case, run-scoped (no jubilant)."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioners.api import RunContext


NAME_LIMIT = 63  # a model is a Kubernetes namespace: RFC 1123 label


def _slug(text: str) -> str:
    """Lower-case letters, digits and '-' (placeholders such as <run-id> are kept for plans)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9<>-]", "-", text.lower())).strip("-")


def _bounded(name: str) -> str:
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[:NAME_LIMIT - 9].rstrip("-") + "-" + digest


def cloud_name(context: RunContext) -> str:
    """The Juju cloud this run adds for a platform (one per run and platform)."""
    return _bounded(_slug(f"mm-{context.run_id}-{context.platform.name}"))


def controller_name(context: RunContext) -> str:
    """`--controller NAME` if given, else the controller this run bootstraps for the platform."""
    return str(context.options.get("controller") or cloud_name(context))


def model_name(context: RunContext, cell_id: str) -> str:
    """The model (and Kubernetes namespace) of one cell: run id + cell."""
    return _bounded(_slug(f"mm-{context.run_id}-{cell_id}"))


def _timeout(context: RunContext, key: str, default: int) -> float:
    value = context.options.get(key)
    return float(value) if value else float(default)

