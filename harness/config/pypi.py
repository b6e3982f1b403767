"""Does an MLflow release exist? Asked of the package index, bounded, and remembered.

`--mlflow-version 99.0.0` is bad input (exit 2) and must be refused before a run starts, not
found out as a failed environment build (exit 3) after provisioning. One request to the index's
simple API (PEP 691 JSON, ~150 kB for mlflow; an HTML simple page works too), a short deadline,
a size cap, and a cache of the releases seen (a release never disappears; one not found yet may
appear, so a miss is asked again).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

INDEX_ENV = "MLFLOW_MATRIX_PYPI_URL"  # a simple index: PyPI's, a mirror, a test server
DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 10.0
MAX_BYTES = 20_000_000
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Lookup:
    exists: bool | None  # None: could not tell (offline, index down)
    url: str
    reason: str = ""


def index_url() -> str:
    for name in (INDEX_ENV, "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return DEFAULT_INDEX


def _cache_file() -> Path:
    from harness.system.cache import cache_root

    return cache_root() / "index-releases.json"


def _cached(key: str) -> set[str]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    entry = data.get(key) if isinstance(data, dict) else None
    return set(entry.get("versions", [])) if isinstance(entry, dict) else set()


def _remember(key: str, versions: set[str]) -> None:
    path = _cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    data[key] = {"versions": sorted(versions), "fetched": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache, not a record


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _versions(project: str, body: bytes, content_type: str) -> set[str]:
    if "json" in content_type:
        data = json.loads(body or b"{}")
        versions = set(map(str, data.get("versions") or []))
        for item in data.get("files") or []:
            versions |= _from_filename(project, str(item.get("filename", "")))
        return versions
    text = body.decode("utf-8", errors="replace")
    found: set[str] = set()
    for name in re.findall(r">([^<>]+)</a>", text):
        found |= _from_filename(project, name.strip())
    return found


def _from_filename(project: str, filename: str) -> set[str]:
    stem = re.sub(r"(\.tar\.gz|\.zip|\.whl|\.egg)$", "", filename)
    name, _, rest = stem.partition("-")
    if canonicalize_name(name) != canonicalize_name(project) or not rest:
        return set()
    return {rest.split("-", 1)[0]}


def release_exists(project: str, version: str, *, timeout: float = TIMEOUT_S) -> Lookup:
    index = index_url()
    url = f"{index}/{canonicalize_name(project)}/"
    key = f"{index}|{canonicalize_name(project)}"
    if any(_same(version, v) for v in _cached(key)):
        return Lookup(True, url, "cached")
    request = urllib.request.Request(url, headers={
        "Accept": f"{SIMPLE_JSON}, text/html;q=0.1", "User-Agent": "mlflow-matrix"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES)
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return Lookup(False, url, f"the index has no project {project!r}")
        return Lookup(None, url, f"HTTP {exc.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Lookup(None, url, str(getattr(exc, "reason", None) or exc))
    try:
        versions = _versions(project, body, content_type)
    except ValueError as exc:
        return Lookup(None, url, f"unreadable index page: {exc}")
    if not versions:
        return Lookup(None, url, "the index page lists no releases")
    _remember(key, versions)
    if any(_same(version, v) for v in versions):
        return Lookup(True, url)
    return Lookup(False, url, f"{len(versions)} releases listed, {version} not among them")
