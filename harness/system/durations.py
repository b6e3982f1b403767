"""Durations as users write them (`90m`, `6h`, `2d`): one parser for flags and settings."""

from __future__ import annotations

import re
from datetime import timedelta

from harness.system.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90m`, `6h`, `2d`, `30s` → timedelta; anything else is bad input (exit 2)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{text!r} is not a duration",
                          hint="write a whole number and a unit: 90m, 6h, 2d (s, m, h, d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
