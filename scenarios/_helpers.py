"""Helpers shared by the scenario suites (imported as a plain module: pytest puts scenarios/ on
sys.path). Runs inside the cell's MLflow virtualenv: MLflow, boto3, numpy, packaging, stdlib.

Two things live here because every suite needs them the same way:
- where an artifact's bytes land in the bucket (`bucket_location`): the one place that maps an
  MLflow artifact URI to a bucket key, for both artifact modes the charm can run in;
- how a model is logged (`log_model`): the one place that knows MLflow 3 renamed `artifact_path`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
from packaging.version import Version

MIB = 1024 * 1024
CHUNK = MIB
MLFLOW_VERSION = Version(mlflow.__version__)
MLFLOW_3 = MLFLOW_VERSION.major >= 3

DIRECT = "direct"      # `--default-artifact-root s3://bucket/`: clients write to S3 themselves
PROXIED = "proxied"    # `--serve-artifacts --artifacts-destination s3://bucket/`: through the server


# ---------------------------------------------------------------- artifact URI → bucket key


@dataclass(frozen=True)
class BucketLocation:
    """Where an artifact (or a directory of them) lives in the deployment's object store."""

    bucket: str
    key: str          # no leading slash; a directory's key has no trailing slash
    mode: str         # DIRECT or PROXIED

    def child(self, relative: str) -> BucketLocation:
        relative = relative.strip("/")
        key = f"{self.key}/{relative}" if self.key and relative else (self.key or relative)
        return BucketLocation(self.bucket, key, self.mode)

    @property
    def prefix(self) -> str:
        """The key prefix of everything below this location."""
        return f"{self.key}/" if self.key else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def artifact_mode(artifact_uri: str) -> str:
    """The artifact mode the server chose, read from a URI it returned (run or model version)."""
    scheme = urlparse(artifact_uri).scheme
    if scheme == "s3":
        return DIRECT
    if scheme == "mlflow-artifacts":
        return PROXIED
    raise AssertionError(
        f"artifact URI {artifact_uri!r} is neither s3:// (direct) nor mlflow-artifacts: (proxied); "
        "the server does not store artifacts in the bucket the charm configures")


def bucket_location(endpoint: Any, artifact_uri: str, relative: str = "") -> BucketLocation:
    """Map an artifact URI the server returned to the bucket and key where its bytes must be.

    direct:  s3://<bucket>/<path>                          → (<bucket>, <path>)
    proxied: mlflow-artifacts:[//host]/<path>              → (<artifact_bucket>, <path>), i.e. the
             server's `--artifacts-destination s3://<artifact_bucket>/` (the charm's layout: the
             destination is the bucket root)
    """
    parsed = urlparse(artifact_uri)
    mode = artifact_mode(artifact_uri)
    path = unquote(parsed.path).strip("/")
    if mode == DIRECT:
        bucket = parsed.netloc
        assert not endpoint.artifact_bucket or bucket == endpoint.artifact_bucket, (
            f"the server stores artifacts in bucket {bucket!r}, not in the deployment's "
            f"bucket {endpoint.artifact_bucket!r} ({artifact_uri})")
    else:
        bucket = endpoint.artifact_bucket
        assert bucket, "proxied artifacts but the platform names no artifact bucket"
    return BucketLocation(bucket, path, mode).child(relative)


# ---------------------------------------------------------------- refusals


class _LastStatus:
    """The HTTP status of the client's last REST response (None: nothing was sent)."""

    status: int | None = None
    installed = False


def _record_http_status() -> None:
    """Wrap MLflow's one REST entry point to see the status code of each response. Observes the
    real client; changes nothing it sends or receives."""
    if _LastStatus.installed:
        return
    from mlflow.utils import rest_utils

    original = rest_utils.http_request

    def http_request(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        _LastStatus.status = getattr(response, "status_code", None)
        return response

    rest_utils.http_request = http_request
    _LastStatus.installed = True


def expect_refusal(action: Any, code: str | tuple[str, ...]) -> Any:
    """`action` must be refused with MLflow error `code` (or one of several) and a 4xx response;
    a 500, or any other error code, is a failure. Returns the MlflowException."""
    import pytest
    from mlflow.exceptions import MlflowException

    _record_http_status()
    _LastStatus.status = None
    with pytest.raises(MlflowException) as info:
        action()
    status = _LastStatus.status
    codes = (code,) if isinstance(code, str) else code
    assert info.value.error_code in codes, (
        f"refused with {info.value.error_code} (HTTP {status}), expected {' or '.join(codes)}: "
        f"{info.value.message[:300]}")
    assert status is None or 400 <= status < 500, (
        f"refused with HTTP {status}, expected a 4xx ({info.value.error_code}): "
        f"{info.value.message[:300]}")
    return info.value


# ---------------------------------------------------------------- bucket reads


def bucket_object(s3: Any, location: BucketLocation) -> tuple[int, str, str]:
    """(size, sha256, etag) of one object, read from the bucket itself; fails if it is absent."""
    from botocore.exceptions import ClientError

    try:
        response = s3.get_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise AssertionError(
                f"artifact is not in the bucket: no object {location} "
                "(it may round-trip through MLflow, but the bucket does not have it)") from None
        raise
    digest = hashlib.sha256()
    size = 0
    for chunk in response["Body"].iter_chunks(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    assert size == response["ContentLength"], f"{location}: short read from the bucket"
    return size, digest.hexdigest(), response.get("ETag", "").strip('"')


def bucket_listing(s3: Any, location: BucketLocation) -> dict[str, int]:
    """Every object below a location: key relative to it → size."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket,
                                                            Prefix=location.prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(location.prefix):]] = item["Size"]
    return found


def assert_in_bucket(s3: Any, location: BucketLocation, size: int, sha256: str) -> str:
    """The object exists with exactly these bytes; returns its ETag."""
    got_size, got_sha, etag = bucket_object(s3, location)
    assert got_size == size, f"{location}: {got_size} bytes in the bucket, expected {size}"
    assert got_sha == sha256, f"{location}: the bucket holds different bytes (sha256 {got_sha}, " \
                              f"expected {sha256})"
    return etag


# ---------------------------------------------------------------- files and MLflow listings


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: str | os.PathLike[str]) -> dict[str, tuple[int, str]]:
    """Every file below `root`: POSIX relative path → (size, sha256)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): (p.stat().st_size, sha256_file(p))
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_random(path: Path, size: int, seed: int) -> str:
    """A file of `size` pseudo-random bytes (reproducible from `seed`); returns its sha256."""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = rng.randbytes(min(left, CHUNK))
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def mlflow_tree(client: Any, run_id: str, path: str | None = None) -> dict[str, int | None]:
    """Every file MLflow lists for a run, recursively: artifact path → size."""
    found: dict[str, int | None] = {}
    for info in client.list_artifacts(run_id, path) if path else client.list_artifacts(run_id):
        if info.is_dir:
            found.update(mlflow_tree(client, run_id, info.path))
        else:
            found[info.path] = info.file_size
    return found


# ---------------------------------------------------------------- models


def log_model(flavor: Any, name: str, **kwargs: Any) -> Any:
    """`mlflow.<flavor>.log_model` under artifact name `name`, on MLflow 2.x and 3.x alike.

    MLflow 3 renamed `artifact_path` to `name` (the old name is deprecated) and stores the model
    as a LoggedModel under the experiment's `models/` prefix instead of under the run.
    Requirements are given explicitly so logging does not spend seconds inferring them.
    """
    kwargs.setdefault("pip_requirements", [f"mlflow=={mlflow.__version__}"])
    if MLFLOW_3:
        return flavor.log_model(name=name, **kwargs)
    return flavor.log_model(artifact_path=name, **kwargs)


class AddN(mlflow.pyfunc.PythonModel):
    """A custom pyfunc with a known output: 10·x + n for every x (n tells versions apart).

    Defined here, not in a test module, so that a model pickled by one pytest process (a
    persistence phase) loads in another.
    """

    def __init__(self, n: float) -> None:
        self.n = n

    def predict(self, context, model_input, params=None):  # MLflow calls it with these names
        return [10.0 * float(x) + self.n for x in model_input["x"]]


def model_storage_uri(client: Any, name: str, version: str | int) -> str:
    """Where the registry says a model version's files are (s3:// or mlflow-artifacts:)."""
    return client.get_model_version_download_uri(name, str(version))


# ---------------------------------------------------------------- manifest of a phased suite


def manifest_read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_record(path: Path, section: str, record: dict[str, Any]) -> None:
    """Add one section to the manifest: read-modify-write under an exclusive lock, so tests of
    one phase may run in several pytest-xdist workers."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = manifest_read(path)
        data[section] = record
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
