"""`--mlflow-version`: one release, several, or a range resolved to the newest patch of each minor.

A release sweep is `--mlflow-version '>=2.15,<3.18'`: every MLflow minor release in the range,
each at its latest patch, as PyPI lists them (`pip index versions mlflow`, the index this
machine's pip is configured for). A full version (3.1.0) is taken as written, without a
lookup; a minor (`3.14`) is that minor's newest patch on PyPI, and the run says which: taken as
written, pip would install 3.14.0 and the server would report a version the cell did not ask for.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from harness.system.errors import ConfigError, InfrastructureError

RANGE = re.compile(r"^\s*(~=|==|!=|<=|>=|<|>)")
LOOKUP_TIMEOUT = 120


def is_range(text: str) -> bool:
    return bool(RANGE.match(text)) or "," in text


def resolve_versions(values: Sequence[str],
                     available: Callable[[], list[Version]] | None = None,
                     notes: list[str] | None = None, *, flag: str = "--mlflow-version",
                     ) -> list[str]:
    """Versions for the given `--mlflow-version` values, in release order, without duplicates;
    what a minor (`3.14`) resolved to is added to `notes`."""
    chosen: dict[Version, str] = {}
    listing: list[Version] | None = None
    for text in values:
        text = text.strip()
        if not is_range(text):
            try:
                version = Version(text)
            except InvalidVersion:
                raise ConfigError(f"{flag} {text!r} is not a version or a range",
                                  hint="write a release (3.1.0), a minor (3.14: its newest "
                                       "patch) or a range ('>=2.15,<3.18')") from None
            if len(version.release) > 2 or version.pre or version.dev:
                chosen.setdefault(version, text)
                continue
            newest = _newest_patch(available() if available else index_versions(),
                                   f"=={text}.*", flag)
            if notes is not None:
                notes.append(f"{flag} {version}: MLflow {newest}, the newest patch of "
                             f"{version} on PyPI")
            chosen.setdefault(newest, str(newest))
            continue
        try:
            spec = SpecifierSet(text)
        except InvalidSpecifier:
            raise ConfigError(f"--mlflow-version {text!r} is not a version range",
                              hint="write e.g. '>=2.15' or '>=2.15,<3.0' (quote it in a shell)"
                              ) from None
        if listing is None:
            listing = (available or pypi_versions)()
        picked = latest_patches(v for v in listing if v in spec)
        if not picked:
            raise ConfigError(f"no MLflow release matches --mlflow-version {text!r}",
                              hint=f"releases listed: {', '.join(map(str, listing[-5:]))} …")
        for version in picked:
            chosen.setdefault(version, str(version))
    return [chosen[v] for v in sorted(chosen)]


def _newest_patch(listing: list[Version], spec: str, flag: str) -> Version:
    picked = latest_patches(v for v in listing if v in SpecifierSet(spec))
    if not picked:
        minor = spec.removeprefix("==").removesuffix(".*")
        raise ConfigError(f"{flag} {minor}: PyPI lists no final MLflow {minor}.x release",
                          hint=f"releases listed: {', '.join(map(str, listing[-5:]))} …")
    return picked[-1]


def latest_patches(versions: object) -> list[Version]:
    """The newest final release of each minor (X.Y)."""
    best: dict[tuple[int, int], Version] = {}
    for version in versions:  # type: ignore[attr-defined]
        if version.is_prerelease or version.is_devrelease:
            continue
        key = (version.major, version.minor)
        if key not in best or version > best[key]:
            best[key] = version
    return [best[k] for k in sorted(best)]


def index_versions(package: str = "mlflow") -> list[Version]:
    """Releases the package index lists (harness.config.pypi: the index `--mlflow-version`
    is checked against, cached for a day), oldest first."""
    from harness.config.pypi import listed_releases

    found, url = listed_releases(package)
    if not found:
        raise InfrastructureError(f"could not list {package} releases from {url}",
                                  hint="check network access to the package index, or give "
                                       "the full version (3.14.1)")
    versions = []
    for text in found:
        try:
            versions.append(Version(text))
        except InvalidVersion:
            continue
    return sorted(versions)


def pypi_versions(package: str = "mlflow") -> list[Version]:
    """Releases of a package on the configured index, oldest first."""
    argv = [sys.executable, "-m", "pip", "index", "versions", package,
            "--disable-pip-version-check"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=LOOKUP_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(f"could not list {package} releases: {exc}",
                                  hint="check network access to the package index") from None
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    if proc.returncode != 0 or not match:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InfrastructureError(f"could not list {package} releases (`pip index versions`)",
                                  hint="; ".join(tail) or "check access to the package index")
    found = []
    for text in match.group(1).split(","):
        try:
            found.append(Version(text.strip()))
        except InvalidVersion:
            continue
    return sorted(found)
