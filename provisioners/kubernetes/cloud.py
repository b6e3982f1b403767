"""What the cloud providers (EKS, AKS, GKE) share: names, tags, expiry, errors, sweeps.

Every cloud resource a run creates carries the same four tags (DESIGN.md contract):

    mlflow-matrix-run      the run id (only resources with this tag are ever swept)
    mlflow-matrix-owner    who ran it (user name, or CI)
    mlflow-matrix-created  UTC ISO time of creation
    mlflow-matrix-expires  UTC ISO time after which `janitor --cloud` may delete it

GKE labels allow only lower-case letters, digits, `-` and `_` (≤ 63 chars): `gke_labels` encodes
the same tags so `parse_time` reads both forms back.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from harness.system.durations import parse_duration
from harness.system.errors import ConfigError, InfrastructureError, MatrixError
from harness.system.redact import redact
from provisioners.api import SweptResource

__all__ = ["CapacityError", "CredentialsError", "TaggedResource", "gke_labels", "is_due", "iso",
           "label_value", "parse_duration", "parse_time", "resource_name", "run_tags",
           "sweep_resources"]

TAG_RUN = "mlflow-matrix-run"
TAG_OWNER = "mlflow-matrix-owner"
TAG_CREATED = "mlflow-matrix-created"
TAG_EXPIRES = "mlflow-matrix-expires"
DEFAULT_TTL = timedelta(hours=6)
LABEL_LIMIT = 63          # GKE label keys/values, Kubernetes names
NAME_PREFIX = "mm"


# ---------------------------------------------------------------- names


def resource_name(run_id: str, *parts: str, limit: int = LABEL_LIMIT, lowercase: bool = True,
                  prefix: str = NAME_PREFIX) -> str:
    """`mm-<run id>-<parts>`: letters, digits and '-', at most `limit` chars (a hash keeps
    shortened names unique), starting with a letter as every cloud requires."""
    text = "-".join([prefix, run_id, *parts])
    if lowercase:
        text = text.lower()
    text = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")
    if len(text) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        text = text[:limit - 9].rstrip("-") + "-" + digest
    return text


def label_value(text: str) -> str:
    """A GKE label value: lower-case letters, digits, '-' and '_', at most 63 chars."""
    value = re.sub(r"[^a-z0-9_-]", "-", text.lower())
    if len(value) > LABEL_LIMIT:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        value = value[:LABEL_LIMIT - 9] + "-" + digest
    return value


# ---------------------------------------------------------------- tags and time


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """`2026-01-01T06:00:00Z`: UTC, seconds, the form every tag uses."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_owner() -> str:
    """Who runs this: $MLFLOW_MATRIX_OWNER, else `ci` in CI, else the login name."""
    explicit = os.environ.get("MLFLOW_MATRIX_OWNER")
    if explicit:
        return explicit
    if os.environ.get("CI"):
        return "ci"
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "unknown"


def run_tags(run_id: str, *, owner: str | None = None, now: datetime | None = None,
             ttl: timedelta = DEFAULT_TTL) -> dict[str, str]:
    """The four tags of every resource this run creates (AWS and Azure tag form)."""
    created = now or utc_now()
    return {TAG_RUN: run_id, TAG_OWNER: owner or default_owner(), TAG_CREATED: iso(created),
            TAG_EXPIRES: iso(created + ttl)}


def gke_labels(tags: Mapping[str, str]) -> dict[str, str]:
    """The same tags as GKE labels (lower-case, ≤ 63 chars; ':' in times becomes '-')."""
    return {label_value(key): label_value(value) for key, value in tags.items()}


_TIME_FORMS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dt%H-%M-%Sz")


def parse_time(text: str | None) -> datetime | None:
    """A tag's time in either form (tag or GKE label), as aware UTC; None if absent or bad."""
    if not text:
        return None
    for form in _TIME_FORMS:
        try:
            return datetime.strptime(text, form).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- errors


class CredentialsError(ConfigError):
    """Missing or expired cloud credentials: exit 2 before anything is created."""

    def __init__(self, cloud: str, expected: Iterable[str], detail: str = "",
                 *, hint: str | None = None) -> None:
        names = ", ".join(expected)
        message = f"no usable {cloud} credentials" + (f": {redact(detail)}" if detail else "")
        super().__init__(message, hint=hint or f"set {names} (tox -e matrix passes them "
                                               "through), then run again")
        self.cloud = cloud
        self.expected = tuple(expected) if not isinstance(expected, str) else (expected,)


class CapacityError(InfrastructureError):
    """A quota, a stockout or a capacity limit: exit 3 with what to change."""

    def __init__(self, cloud: str, what: str, detail: str, *, hint: str | None = None) -> None:
        super().__init__(f"{cloud}: not enough capacity for {what}: {redact(detail)}",
                         hint=hint or "ask for a quota increase, or pick another region/zone or "
                                      "a smaller node type in matrix.yaml")
        self.cloud = cloud


# ---------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class TaggedResource:
    """One resource a provider's list call found, with its tags as the cloud reports them."""

    kind: str
    name: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.tags.get(TAG_RUN) or self.tags.get(label_value(TAG_RUN)) or ""

    @property
    def ours(self) -> bool:
        """Only what carries our run tag is ever deleted by a sweep."""
        return bool(self.run_id)

    @property
    def expires(self) -> datetime | None:
        return parse_time(self.tags.get(TAG_EXPIRES) or self.tags.get(label_value(TAG_EXPIRES)))

    @property
    def created(self) -> datetime | None:
        return parse_time(self.tags.get(TAG_CREATED) or self.tags.get(label_value(TAG_CREATED)))


def is_due(resource: TaggedResource, *, now: datetime, older_than: timedelta | None) -> bool:
    """Ours, and expired (or, with `older_than`, created longer ago than that)."""
    if not resource.ours:
        return False
    if resource.expires is not None and resource.expires <= now:
        return True
    return older_than is not None and resource.created is not None \
        and resource.created <= now - older_than


def sweep_resources(found: Iterable[TaggedResource],
                    delete: Callable[[TaggedResource], None], *,
                    older_than: timedelta | None, dry_run: bool,
                    progress: Callable[[str], None], now: datetime | None = None,
                    ) -> list[SweptResource]:
    """The sweep every cloud's `sweep` classmethod runs over its list results.

    `found` is listed by the provider (in deletion order: clusters before networks); `delete`
    is the same code `down` uses. A failing delete is reported and the sweep goes on.
    """
    moment = now or utc_now()
    swept: list[SweptResource] = []
    for resource in found:
        if not is_due(resource, now=moment, older_than=older_than):
            continue
        expires = iso(resource.expires) if resource.expires else ""
        what = f"{resource.kind} {resource.name} (run {resource.run_id}, expires {expires or '?'})"
        if dry_run:
            progress(f"would delete {what}")
            swept.append(SweptResource(resource.kind, resource.name, resource.run_id, expires))
            continue
        try:
            delete(resource)
        except MatrixError as exc:
            progress(f"could not delete {what}: {exc.message}")
            swept.append(SweptResource(resource.kind, resource.name, resource.run_id, expires,
                                       error=exc.message))
            continue
        progress(f"deleted {what}")
        swept.append(SweptResource(resource.kind, resource.name, resource.run_id, expires,
                                   deleted=True))
    return swept
