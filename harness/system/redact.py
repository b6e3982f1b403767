"""Keep secrets out of logs, Allure attachments and reports.

Two layers: every secret the harness generates or reads is registered by value, and
well-known secret shapes (key=value pairs, URLs with passwords, kubeconfig data) are masked
by pattern so that secrets printed by third-party tools are caught too.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS = [
    # scheme://user:password@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)(?P<secret>[^@\s/]+)(?P<post>@)"), None),
    # key: value / key=value for secret-looking keys (YAML, env, CLI flags, JSON)
    (
        re.compile(
            r"(?P<pre>(?i:[\w.-]*(?:secret|password|passwd|token|access[_-]?key|private[_-]?key"
            r"|client-key-data|client-certificate-data|certificate-authority-data|api[_-]?key)"
            r"[\w.-]*)[\"']?\s*[:=]\s*[\"']?)(?P<secret>[^\s\"',}]+)(?P<post>)"
        ),
        None,
    ),
    # Authorization headers
    (
        re.compile(r"(?P<pre>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:\w+\s+)?)"
                   r"(?P<secret>[^\s\"',]+)(?P<post>)"),
        None,
    ),
    # PEM private keys (kubeconfig client keys, Juju controller and charm certificates)
    (
        re.compile(r"(?P<pre>-----BEGIN [A-Z ]*PRIVATE KEY-----)(?P<secret>.*?)"
                   r"(?P<post>-----END [A-Z ]*PRIVATE KEY-----)", re.DOTALL),
        None,
    ),
    # JSON Web Tokens: Kubernetes service-account tokens, OIDC tokens in kubeconfigs
    (re.compile(r"(?P<pre>)(?P<secret>eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,})(?P<post>)"), None),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value so that `redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        text = text.replace(value, MASK)
    for pattern, _ in _PATTERNS:
        text = pattern.sub(lambda m: f"{m['pre']}{MASK}{m['post']}", text)
    return text


def redact_bytes(data: bytes) -> bytes:
    return redact(data.decode("utf-8", errors="replace")).encode("utf-8")


def redact_tree(root: Path) -> int:
    """Scrub every text file below `root` in place; returns how many files changed.

    Run over a cell's Allure results and logs after the scenario process wrote them, so a
    secret a third-party library printed never survives into a report.
    """
    changed = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.stat().st_size > 50_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue
        text = data.decode("utf-8", errors="replace")
        clean = redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
            changed += 1
    return changed
