"""Platform options given on the command line, handed to provisioners as `RunContext.options`."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from harness.system.errors import ConfigError

PLATFORM_OPTIONS = ("tracking_uri", "s3_endpoint_url", "artifact_bucket", "artifact_mode",
                    "kubeconfig", "controller")


def provisioner_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in PLATFORM_OPTIONS
            if getattr(args, name, None) is not None}


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90m`, `6h`, `2d`, `30s` → timedelta; anything else is bad input (exit 2)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{text!r} is not a duration",
                          hint="write a whole number and a unit: 90m, 6h, 2d (s, m, h, d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
