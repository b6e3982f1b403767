"""Helpers shared by the scenario suites (imported as a plain module: pytest puts scenarios/ on
sys.path). Runs inside the cell's MLflow virtualenv: MLflow, boto3, numpy, packaging, stdlib.

Things live here because every suite needs them the same way:
- where an artifact's bytes land in the bucket (`bucket_location`): the one place that maps an
  MLflow artifact URI to a bucket key, for both artifact modes the charm can run in;
- how a model is logged (`log_model`): the one place that knows MLflow 3 renamed `artifact_path`;
- how a paged list or search is walked (`walk_pages`, `assert_walk`, `expect_page_refusals`): so
  every collection is read past its first page and judged the same way;
- whether a release has an API at all (`require_api`): not applicable, never passed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
from _rules import not_applicable, rule, source
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


def expect_refusal(action: Any, code: str | tuple[str, ...], *, by_server: bool = False) -> Any:
    """`action` must be refused with MLflow error `code` (or one of several) and a 4xx response;
    a 500, or any other error code, is a failure. `by_server`: the refusal must be an HTTP answer
    (not the client's own check before sending). Returns the MlflowException."""
    import pytest
    from mlflow.exceptions import MlflowException

    _record_http_status()
    _LastStatus.status = None
    with pytest.raises(MlflowException) as info:
        action()
    status = _LastStatus.status
    if status is None:  # a 5xx the client gave up on raises before any response is returned
        import re

        gave_up = re.search(r"too many (\d{3}) error responses", info.value.message)
        status = int(gave_up.group(1)) if gave_up else None
    codes = (code,) if isinstance(code, str) else code
    assert info.value.error_code in codes, (
        f"refused with {info.value.error_code} (HTTP {status}), expected {' or '.join(codes)}: "
        f"{info.value.message[:300]}")
    assert status is None or 400 <= status < 500, (
        f"refused with HTTP {status}, expected a 4xx ({info.value.error_code}): "
        f"{info.value.message[:300]}")
    assert status is not None or not by_server, (
        f"the client refused before asking the server ({info.value.error_code}): "
        f"{info.value.message[:300]}")
    return info.value


# ---------------------------------------------------------------- releases and their APIs


def require_api(name: str, version: Version | str) -> None:
    """Not applicable unless the release has the API (rule `api_<name>` in _rules.py)."""
    if not rule(f"api_{name}", version):
        not_applicable(f"MLflow {version} has no {name.replace('_', ' ')} API "
                       f"(added later: {source(f'api_{name}', version)})")


def rest(endpoint: Any, method: str, path: str, **kwargs: Any) -> Any:
    """One raw HTTP request to the tracking server (path from its root, e.g.
    /api/2.0/mlflow/...): for what the client does not expose, and to see status codes."""
    import requests

    return requests.request(method, endpoint.tracking_uri.rstrip("/") + path, timeout=60, **kwargs)


# ---------------------------------------------------------------- paging


@dataclass(frozen=True)
class Walk:
    """One walk through a paged list or search: every page, as the server returned it."""

    pages: tuple[tuple[Any, ...], ...]
    page_size: int

    @property
    def items(self) -> list[Any]:
        return [item for page in self.pages for item in page]

    @property
    def sizes(self) -> list[int]:
        return [len(page) for page in self.pages]


def walk_pages(fetch: Callable[[int, str | None], Any], page_size: int, limit: int = 500) -> Walk:
    """Follow page tokens from the first page to the last. `fetch(max_results, page_token)`
    returns one page: an MLflow PagedList (a list with `.token`), or `(items, token)` for raw
    REST. Fails on a page larger than asked for, on a token handed out twice (a walk that would
    never end) and past `limit` pages."""
    pages: list[tuple[Any, ...]] = []
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = fetch(page_size, token)
        items, token = page if isinstance(page, tuple) else (tuple(page), page.token)
        items = tuple(items)
        assert len(items) <= page_size, (
            f"page {len(pages) + 1} has {len(items)} items, asked for at most {page_size}: "
            "max_results is ignored")
        pages.append(items)
        if not token:
            return Walk(tuple(pages), page_size)
        assert token not in seen, f"page token {token!r} handed out twice: the walk never ends"
        seen.add(token)
        assert len(pages) < limit, f"still a next page after {limit} pages of {page_size}"


def page_sizes(written: int, page_size: int) -> list[int]:
    """The pages a walk over exactly `written` items must return (`written` is not a multiple
    of `page_size`, so no release may end on an empty page)."""
    assert written % page_size, "write a number of items that is not a multiple of the page"
    return [page_size] * (written // page_size) + [written % page_size]


def assert_walk(walk: Walk, expected: Sequence[Any], key: Callable[[Any], Any], *, what: str,
                ordered: bool = True) -> None:
    """The walk returned exactly `expected` (by `key`), each once, in that order when the API
    promises one, on full pages but the last. The walk must span more than one page."""
    got = [key(item) for item in walk.items]
    twice = sorted(str(k) for k, n in Counter(got).items() if n > 1)
    assert not twice, f"{what}: {twice} came back on more than one page (pages {walk.sizes})"
    missing = [k for k in expected if k not in set(got)]
    foreign = [k for k in got if k not in set(expected)]
    assert not missing, f"{what}: {len(missing)} written items never came back: {missing[:5]}"
    assert not foreign, f"{what}: items that were not written came back: {foreign[:5]}"
    if ordered:
        assert got == list(expected), f"{what}: not in the promised order: {got} != {list(expected)}"
    assert len(walk.pages) > 1, f"{what}: everything came back on one page of {walk.page_size}"
    assert walk.sizes == page_sizes(len(expected), walk.page_size), (
        f"{what}: pages of {walk.sizes} for {len(expected)} items in pages of {walk.page_size}")


def expect_page_refusals(fetch: Callable[[int, str | None], Any], limit_rule: str,
                         version: Version | str, code: str = "INVALID_PARAMETER_VALUE") -> None:
    """An invalid page token, and a max_results over the API's documented limit (rule
    `limit_rule`, if the release documents one), are refused by the server with `code`.
    The client does not retry here: a refusal is one answer, and a 5xx shows as what it is
    instead of as minutes of the client's backoff."""
    previous = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        expect_refusal(lambda: fetch(1, "not-a-page-token"), code, by_server=True)
        limit = rule(limit_rule, version)
        if limit is not None:
            expect_refusal(lambda: fetch(limit + 1, None), code, by_server=True)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = previous


def traces_logged_synchronously() -> None:
    """Traces are exported when their root span ends, not by a background queue (the default
    since 2.2x), so a read right after a write sees them. Set before the first trace."""
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"


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
