"""Platform options given on the command line, handed to provisioners as `RunContext.options`."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from harness.system.errors import ConfigError, clip

PLATFORM_OPTIONS = ("tracking_uri", "s3_endpoint_url", "artifact_bucket", "artifact_mode",
                    "kubeconfig", "controller")


def provisioner_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in PLATFORM_OPTIONS
            if getattr(args, name, None) is not None}


_DURATION = re.compile(r"^\s*(\d{1,30})\s*([smhd])\s*$")
MAX_AGE = timedelta(days=3650)  # ten years: cloud resources are younger than the project
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90m`, `6h`, `2d`, `30s` → timedelta; anything else is bad input (exit 2)."""
    match = _DURATION.match(text or "")
    hint = "write a whole number and a unit: 90m, 6h, 2d (s, m, h, d), at most 3650d"
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{clip(repr(text), 60)} is not a duration", hint=hint)
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds > MAX_AGE.total_seconds():  # before timedelta, which overflows past 999999999d
        raise ConfigError(f"{clip(text.strip(), 60)} is longer than ten years", hint=hint)
    return timedelta(seconds=seconds)
