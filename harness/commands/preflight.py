"""Before anything starts: every selected platform's prerequisites, then its own preflight.

Each kind declares what this machine must have (provisioners.api.ProvisionerBase.prerequisites:
a CLI, snapd, a kubeconfig) and checks its credentials (`preflight`); the core asks every
selected platform, by name, and never by kind. Missing anything is bad input: exit 2, before a
state file, a temp dir or a process exists, with what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config.matrix import Platform
from harness.config.registry import load_provisioner_class
from harness.system.errors import ConfigError


def preflight(platform: Platform, options: Mapping[str, Any]) -> None:
    """Every problem at once: a missing CLI and missing credentials are one screen, not two
    attempts."""
    cls = load_provisioner_class(platform.kind)
    missing = [p for p in cls.prerequisites(platform.settings, options) if not p.here]
    problems = [f"{p.what} is missing" for p in missing]
    hints = [p.hint for p in missing]
    try:
        cls.preflight(platform.settings, options)
    except ConfigError as exc:
        if not missing:
            raise
        problems.append(exc.message)
        hints.append(exc.hint or "")
    if problems:
        raise ConfigError(f"platform {platform.name} cannot start on this machine: "
                          + "; ".join(problems), hint="\n  ".join(h for h in hints if h))
