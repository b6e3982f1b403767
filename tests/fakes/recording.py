"""Read a recording with its ${PLACEHOLDERS} filled in (what the fake CLIs replay)."""

from __future__ import annotations

import string
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parent / "recordings"


def recording(name: str, **values: str) -> str:
    text = (RECORDINGS / name).read_text(encoding="utf-8")
    return string.Template(text).safe_substitute(values)
