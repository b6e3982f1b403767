"""Where a channel's deployment comes from: a bundle file, a bundle URL, or single charms."""

from __future__ import annotations

import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from deployments.juju.settings import MINIO_APP, MYSQL_APP, SERVER_APP, JujuSettings
from harness.system.errors import InfrastructureError

if TYPE_CHECKING:

    from harness.config.model import Channel


@dataclass(frozen=True)
class BundleSource:
    """Where a channel's deployment comes from: a bundle file, a bundle URL, or single charms."""

    kind: Literal["file", "url", "charms"]
    location: str = ""

    @classmethod
    def of(cls, channel: Channel) -> BundleSource:
        bundle = (channel.bundle or "").strip()
        if not bundle:
            return cls("charms")
        if re.match(r"^https?://", bundle):
            return cls("url", bundle)
        return cls("file", str(Path(bundle).expanduser()))


def charm_plan(channel: Channel, settings: JujuSettings) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(charm, app, channel, extra args) for a channel without a bundle; mirrors the bundle."""
    return [
        ("minio", MINIO_APP, settings.minio_channel, ()),
        ("mysql-k8s", MYSQL_APP, settings.mysql_channel, ("--constraints", "mem=2G")),
        ("mlflow-server", SERVER_APP, channel.name, ()),
    ]


def read_bundle(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InfrastructureError(f"cannot read the bundle {path}: {exc}",
                                  hint="check `bundle:` of the channel in matrix.yaml") from None
    if not isinstance(data, dict) or not isinstance(data.get("applications"), dict):
        raise InfrastructureError(f"{path} is not a Juju bundle (no `applications:`)",
                                  hint="point `bundle:` at releases/<track>/<risk>/mlflow/bundle.yaml")
    missing = [app for app in (SERVER_APP, MINIO_APP) if app not in data["applications"]]
    if missing:
        raise InfrastructureError(f"bundle {path} lacks {', '.join(missing)}",
                                  hint="the harness expects the Charmed MLflow bundle")
    return data


def fetch_bundle(source: BundleSource, dest: Path, *, timeout: float = 60) -> Path:
    """A local copy of the bundle Juju can read (a strictly confined juju snap cannot read /tmp)."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "bundle.yaml"
    if source.kind == "file":
        shutil.copyfile(source.location, target)
    else:
        try:
            with urllib.request.urlopen(source.location, timeout=timeout) as response:
                target.write_bytes(response.read())
        except (OSError, urllib.error.URLError) as exc:
            raise InfrastructureError(f"cannot download the bundle {source.location}: {exc}",
                                      hint="check the network or set `bundle:` to a local path") \
                from None
    read_bundle(target)
    return target


def bundle_channels(bundle: Mapping[str, Any]) -> dict[str, str]:
    return {app: str(body.get("channel", "")) for app, body in bundle["applications"].items()
            if isinstance(body, dict)}


def _juju_data_dir() -> Path:
    """A directory the juju client can read: ~/snap/juju/common when juju is a snap."""
    found = shutil.which("juju") or ""
    if "/snap/" in found:
        return Path.home() / "snap" / "juju" / "common" / "mlflow-matrix"
    return Path(tempfile.gettempdir())

