"""Durations as users write them (`90m`, `6h`, `2d`): one parser for flags and settings."""

from __future__ import annotations

import re
from datetime import timedelta

from harness.system.errors import ConfigError, clip

_DURATION = re.compile(r"^\s*(\d{1,30})\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE = timedelta(days=3650)  # ten years: nothing the harness waits for or sweeps is older
HINT = "write a whole number and a unit: 90m, 6h, 2d (s, m, h, d), at most 3650d"


def parse_duration(text: str) -> timedelta:
    """`90m`, `6h`, `2d`, `30s` → timedelta; anything else is bad input (exit 2)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{clip(repr(text), 60)} is not a duration", hint=HINT)
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds > MAX_AGE.total_seconds():  # before timedelta, which overflows past 999999999d
        raise ConfigError(f"{clip(text.strip(), 60)} is longer than ten years", hint=HINT)
    return timedelta(seconds=seconds)
