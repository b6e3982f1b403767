"""Security: known MLflow server advisories, re-tested against the running server.

One test per advisory (GHSA/CVE id, affected and fixed ranges from the public advisory records,
linked in the Allure result). Each sends the advisory's *detection* request pattern and passes
when the server refuses it with the release's own 4xx and nothing outside the artifact root is
served, written or deleted. Whether a channel is open to an advisory is measured here, never read
off a version table: the ranges below are shown in reports, they decide nothing.

Safety rules (see docs/security.md):
- probes read only a canary the harness placed outside the artifact root (`endpoint.canary_path`,
  local platforms); elsewhere they ask for `/etc/hostname`, whose content proves nothing secret,
  and report only that something was served, never what;
- probes that would write (upload traversal) run only where a canary directory exists; a delete
  probe targets a file the test itself created next to the canary, or elsewhere a path that does
  not exist;
- every request goes to the cell's own tracking URI, with a 30 s timeout; the suite sends at most
  MAX_REQUESTS requests;
- a probe leaves nothing behind: every registered model (with its versions), run, experiment
  and file it creates is deleted in a `finally` and looked up again to prove it is gone (a model
  version whose source names a server directory would otherwise stay readable through
  get-artifact by anyone with API access). Deleting a model or version only removes database
  rows; MLflow never touches the files a version's source names. Runs and experiments are
  soft-deleted (MLflow keeps them, marked deleted, until `mlflow gc`): verified by their
  lifecycle stage.

Applicability: the probes run on every release. One whose release lies outside the advisory's
affected range (`Advisory.affected`, from the advisory record or measured where the record names
no fix) and holds ends *not applicable*, not passed: nothing was at stake there. A probe that does
not hold fails wherever it runs (a fixed advisory that comes back is red).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import allure
import mlflow
import pytest
from _rules import not_applicable, rule
from packaging.specifiers import SpecifierSet
from packaging.version import Version

MLFLOW_VERSION = Version(mlflow.__version__)
TIMEOUT = 30.0  # generous: a loaded CI runner, not the server's verdict
MAX_REQUESTS = 250
DEPTH = 12  # enough `..` to reach / from any artifact root or working directory
REMOTE_TARGET = ("/etc", "hostname")  # harmless on any Linux server: the host or pod name
INVALID = "INVALID_PARAMETER_VALUE"
ARTIFACTS_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"
PROMPT_TAG = "mlflow.prompt.is_prompt"


# ---------------------------------------------------------------- advisories


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    title: str
    affected: str          # a version specifier, from the advisory record (or measured)
    fixed_in: str
    link: str
    extra_links: tuple[str, ...] = ()

    def applies_to(self, version: Version) -> bool:
        return not self.affected or version in SpecifierSet(self.affected, prereleases=True)

    def held(self) -> None:
        """The probe held: outside the affected range that is *not applicable*, not a pass."""
        if not self.applies_to(MLFLOW_VERSION):
            not_applicable(f"MLflow {MLFLOW_VERSION} is outside {self.id}'s affected range "
                           f"({self.affected}); the probe ran and was refused, as expected")


def _nvd(cve: str) -> str:
    return f"https://nvd.nist.gov/vuln/detail/{cve}"


CVE_2023_1177 = Advisory(
    "CVE-2023-1177", ("PYSEC-0000-CVE-2023-1177",),
    "model version `source` pointing at a server path, read back through get-artifact",
    "<2.2.1", "2.2.1", _nvd("CVE-2023-1177"))
CVE_2023_2356 = Advisory(
    "CVE-2023-2356", ("PYSEC-0000-CVE-2023-2356",),
    "relative path traversal (`..`) in a non-local model version `source`",
    "<2.3.1", "2.3.1", _nvd("CVE-2023-2356"))
CVE_2023_2780 = Advisory(
    "CVE-2023-2780", (),
    "backslash path traversal (`\\..\\`) in a file URI model version source",
    "<2.3.1", "2.3.1", _nvd("CVE-2023-2780"))
CVE_2023_6909 = Advisory(
    "CVE-2023-6909", ("PYSEC-0000-CVE-2023-6909",),
    "`..` in the query string of an experiment's artifact_location",
    "<2.9.2", "2.9.2", _nvd("CVE-2023-6909"))
CVE_2023_6831 = Advisory(
    "CVE-2023-6831", ("PYSEC-0000-CVE-2023-6831",),
    "path traversal in artifact deletion (double-encoded `..` in the artifact path)",
    "<2.9.2", "2.9.2", _nvd("CVE-2023-6831"))
CVE_2024_1483 = Advisory(
    "CVE-2024-1483", (),
    "experiment `artifact_location` with a `#` fragment that walks out of the artifact root",
    "<2.11.3", "not named by the record (it names 2.9.2; refused from 2.11.3, measured)",
    _nvd("CVE-2024-1483"))
GHSA_5CVJ = Advisory(
    "GHSA-5cvj-7rg6-jggj", ("CVE-2025-11201", "ZDI-CAN-26921"),
    "model version creation with a source outside the artifact store (prompt-tag route)",
    # the record: < 2.22.4 and 3.0.0rc0; its fix is an opt-in regex the charm does not set, so
    # the prompt-tag route it probes stays open as the charm runs MLflow until 3.10.0 closes it
    "<3.10.0", "2.22.4 / 3.0.0 (opt-in: "
    "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX); 3.10.0 closes the prompt-tag route",
    "https://github.com/advisories/GHSA-5cvj-7rg6-jggj", (_nvd("CVE-2025-11201"),))
GHSA_42H5 = Advisory(
    "GHSA-42h5-h8qh-vv9v", ("CVE-2026-2614",),
    "the `mlflow.prompt.is_prompt` tag skips model version source validation; get-artifact "
    "then serves the server's files",
    "<=3.9.0", "3.10.0", "https://github.com/advisories/GHSA-42h5-h8qh-vv9v",
    (_nvd("CVE-2026-2614"),))

def link_advisory(advisory: Advisory) -> None:
    allure.dynamic.link(advisory.link, name=advisory.id)
    for extra in advisory.extra_links:
        allure.dynamic.link(extra, name=extra.rsplit("/", 1)[-1])
    allure.dynamic.title(f"{advisory.id}: {advisory.title}")
    allure.dynamic.label("advisory", advisory.id)
    allure.dynamic.tag(advisory.id)
    allure.dynamic.description(
        f"{advisory.id} ({', '.join(advisory.aliases) or 'no alias'}): {advisory.title}.\n\n"
        f"Affected: {advisory.affected}. Fixed in: {advisory.fixed_in}. "
        f"Server under test: MLflow {MLFLOW_VERSION}.")


# ---------------------------------------------------------------- raw HTTP, bounded


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def error_code(self) -> str:
        return str(self.json.get("error_code", ""))

    def brief(self) -> str:
        """What the server answered, short enough for a failure message (no file content)."""
        code = self.error_code
        text = self.json.get("message") if code else None
        if text:
            return f"HTTP {self.status} {code}: {str(text)[:160]}"
        return f"HTTP {self.status} ({len(self.body)} bytes)"


class Http:
    """Raw requests with http.client: the request target goes out exactly as written (requests
    and urllib3 would normalise `..` segments away, which is precisely what a probe must send)."""

    def __init__(self, tracking_uri: str) -> None:
        parsed = urlparse(tracking_uri)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.https else 80)
        self.prefix = parsed.path.rstrip("/")
        self.sent = 0
        self.seconds = 0.0

    def request(self, method: str, target: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Answer:
        if self.sent >= MAX_REQUESTS:
            raise AssertionError(f"security suite exceeded its budget of {MAX_REQUESTS} requests")
        self.sent += 1
        payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        all_headers = {"Content-Type": "application/json"} if isinstance(body, (dict, list)) \
            else {}
        all_headers.update(headers or {})
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        for attempt in (1, 2):  # one retry: a worker recycling under load drops a connection
            conn = cls(self.host, self.port, timeout=TIMEOUT)
            t0 = time.monotonic()
            try:
                conn.request(method, self.prefix + target, body=payload, headers=all_headers)
                response = conn.getresponse()
                return Answer(response.status, response.read(),
                              {k.lower(): v for k, v in response.getheaders()})
            except TimeoutError:
                raise AssertionError(f"{method} {target[:80]}: no answer within {TIMEOUT:.0f} s "
                                     "(the server is overloaded or hung; no security verdict)"
                                     ) from None
            except (http.client.RemoteDisconnected, ConnectionResetError) as exc:
                if attempt == 2:
                    raise AssertionError(f"{method} {target[:80]}: the server closed the "
                                         f"connection without an answer, twice ({exc})") from None
                time.sleep(1)
            finally:
                conn.close()
                self.seconds += time.monotonic() - t0
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, body: Any = None) -> Answer:
        if method == "GET" and body:
            query = "&".join(f"{quote(str(k))}={quote(str(v))}" for k, v in body.items())
            return self.request("GET", f"/api/2.0/mlflow/{path}?{query}")
        return self.request(method, f"/api/2.0/mlflow/{path}", body)


@pytest.fixture(scope="module")
def http_client(endpoint):
    client = Http(endpoint.tracking_uri)
    yield client
    allure.attach(json.dumps({"requests": client.sent, "seconds": round(client.seconds, 2)}),
                  name="security probe budget", attachment_type=allure.attachment_type.JSON)


@pytest.fixture
def probe(http_client):
    """Per test: the shared client, and the test's share of the probe time in its result."""
    sent, seconds = http_client.sent, http_client.seconds
    yield http_client
    allure.dynamic.parameter("probe requests", http_client.sent - sent)
    allure.dynamic.parameter("probe seconds", round(http_client.seconds - seconds, 2))


# ---------------------------------------------------------------- what a probe may read


@dataclass(frozen=True)
class Target:
    """The one file a read probe asks for: the harness's canary, or a harmless system file."""

    directory: str          # absolute, no trailing slash
    name: str
    expected: bytes | None  # the canary's bytes; None where only "something was served" is known
    writable: bool          # a canary directory: write/delete probes may use it

    @property
    def path(self) -> str:
        return f"{self.directory}/{self.name}"

    def served_by(self, answer: Answer) -> bool:
        if answer.status != 200 or not answer.body:
            return False
        if self.expected is not None:
            return self.expected in answer.body
        return not answer.error_code

    def describe(self) -> str:
        return "the harness's canary" if self.expected is not None else self.path


@pytest.fixture(scope="module")
def target(endpoint) -> Target:
    canary = getattr(endpoint, "canary_path", None)
    if canary and Path(canary).is_file():
        path = Path(canary)
        return Target(str(path.parent), path.name, path.read_bytes().strip(), writable=True)
    return Target(*REMOTE_TARGET, expected=None, writable=False)


def up(depth: int = DEPTH) -> str:
    return "../" * depth


def relative(directory: str) -> str:
    """`directory` reached from any working directory: `../../…/<directory without />`."""
    return up() + directory.lstrip("/")


# ---------------------------------------------------------------- model version source probes


@dataclass(frozen=True)
class SourceProbe:
    source: str
    refused: bool
    created: Answer
    served: Answer | None = None
    leaked: bool = False

    def verdict(self) -> str:
        if self.refused:
            return f"refused ({self.created.brief()})"
        version = self.created.json.get("model_version", {}).get("version", "?")
        served = self.served.brief() if self.served else "not requested"
        return (f"ACCEPTED as version {version}; get-artifact answered {served}"
                + (" and served the target: REPRODUCED" if self.leaked else ""))


@contextmanager
def probe_model(probe: Http, advisory: Advisory, tags: list[dict[str, str]] | None = None
                ) -> Iterator[str]:
    """A registered model for the probes, deleted with every version afterwards, whatever the
    probes did, and looked up again: a version whose source names a server directory must not
    outlive the test (get-artifact would serve that directory to anyone)."""
    name = f"mm-security-{advisory.id.lower().replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"name": name}
    if tags:
        body["tags"] = tags
    answer = probe.api("POST", "registered-models/create", body)
    assert answer.status == 200, f"could not create registered model {name}: {answer.brief()}"
    try:
        yield name
    finally:
        delete_model(probe, name)


def delete_model(probe: Http, name: str) -> None:
    """Delete a probe's registered model (its versions go with it) and prove it is gone."""
    versions = probe.api("GET", "model-versions/search", {"filter": f"name='{name}'"})
    deleted = probe.api("DELETE", "registered-models/delete", {"name": name})
    gone = probe.api("GET", "registered-models/get", {"name": name})
    assert gone.status == 404 and gone.error_code == "RESOURCE_DOES_NOT_EXIST", (
        f"probe model {name} is still on the server after registered-models/delete "
        f"({deleted.brief()}; get answered {gone.brief()}): delete it by hand")
    for version in versions.json.get("model_versions", []):
        left = probe.api("GET", "model-versions/get",
                         {"name": name, "version": version.get("version")})
        assert left.status == 404, (f"probe model {name} version {version.get('version')} "
                                    f"outlived its model ({left.brief()}): delete it by hand")


def delete_experiment(probe: Http, experiment_id: str, run_ids: tuple[str, ...] = ()) -> None:
    """Delete a probe's runs and experiment and prove it. MLflow deletes softly (lifecycle stage
    `deleted` until `mlflow gc`): that stage is what is checked."""
    for run_id in run_ids:
        probe.api("POST", "runs/delete", {"run_id": run_id})
        run = probe.api("GET", "runs/get", {"run_id": run_id}).json.get("run", {})
        stage = run.get("info", {}).get("lifecycle_stage")
        assert stage in ("deleted", None) , f"probe run {run_id} is still {stage!r} after runs/delete"
    probe.api("POST", "experiments/delete", {"experiment_id": experiment_id})
    found = probe.api("GET", "experiments/get", {"experiment_id": experiment_id})
    stage = found.json.get("experiment", {}).get("lifecycle_stage")
    assert found.status == 404 or stage == "deleted", (
        f"probe experiment {experiment_id} is still {stage!r} after experiments/delete "
        f"({found.brief()})")


def source_probe(probe: Http, target: Target, name: str, source: str, *,
                 tags: list[dict[str, str]] | None = None, run_id: str | None = None,
                 read_path: str | None = None) -> SourceProbe:
    """Ask for a model version with `source`; if accepted, try to read the target through it."""
    body: dict[str, Any] = {"name": name, "source": source}
    if tags:
        body["tags"] = tags
    if run_id:
        body["run_id"] = run_id
    created = probe.api("POST", "model-versions/create", body)
    if created.status != 200:
        return SourceProbe(source, True, created)
    version = created.json.get("model_version", {}).get("version", "1")
    path = quote(read_path or target.name, safe="")
    served = probe.request(
        "GET", f"/model-versions/get-artifact?path={path}&name={quote(name)}&version={version}")
    return SourceProbe(source, False, created, served, target.served_by(served))


def assert_refused(advisory: Advisory, probes: list[SourceProbe], target: Target) -> None:
    lines = [f"  {p.source!r}: {p.verdict()}" for p in probes]
    allure.attach("\n".join(lines), name="probes", attachment_type=allure.attachment_type.TEXT)
    bad = [p for p in probes if not p.refused or p.created.status != 400
           or p.created.error_code != INVALID]
    if not bad:
        advisory.held()
    else:
        leaked = any(p.leaked for p in bad)
        raise AssertionError(
            f"{advisory.id}: MLflow {MLFLOW_VERSION} "
            + ("served " + target.describe() + " from outside the artifact root"
               if leaked else "did not refuse the detection request with HTTP 400 "
               f"{INVALID}") + f" ({len(bad)} of {len(probes)} probes):\n" + "\n".join(
                f"  {p.source!r}: {p.verdict()}" for p in bad))


# ---------------------------------------------------------------- advisories: model version source


def test_cve_2023_1177_local_source_is_refused(probe, target):
    """A local source in each spelling a server path takes: `file://`, absolute, and `//`
    (a network-path reference, which a URL parser reads as an empty host and that path)."""
    link_advisory(CVE_2023_1177)
    with probe_model(probe, CVE_2023_1177) as name:
        probes = [source_probe(probe, target, name, source)
                  for source in (f"file://{target.directory}", target.directory,
                                 f"/{target.directory}")]
    assert_refused(CVE_2023_1177, probes, target)


def test_cve_2023_2356_relative_source_is_refused(probe, target):
    link_advisory(CVE_2023_2356)
    tail = target.directory.lstrip("/")
    with probe_model(probe, CVE_2023_2356) as name:
        probes = [source_probe(probe, target, name, source) for source in (
            "mlflow-artifacts:/" + up() + tail,
            "http://127.0.0.1/api/2.0/mlflow-artifacts/artifacts/" + up() + tail)]
    assert_refused(CVE_2023_2356, probes, target)


@pytest.mark.parametrize("variant", ["url-encoded", "double-encoded"])
def test_encoded_relative_source_is_refused(probe, target, variant):
    """Upstream hardening after CVE-2023-2356: the source is URL-decoded until it stops
    changing before the `..` check (2.3.1 itself accepted `..%2f`)."""
    allure.dynamic.label("hardening", "model-version-source")
    tail = target.directory.lstrip("/")
    if variant == "url-encoded":
        source = "mlflow-artifacts:/" + "..%2f" * DEPTH + quote(tail, safe="")
    else:
        source = "mlflow-artifacts:/" + "%252e%252e%252f" * DEPTH + quote(quote(tail, safe=""),
                                                                           safe="")
    advisory = Advisory(f"source traversal ({variant})", (), "hardening", "", "", "")
    with probe_model(probe, advisory) as name:
        probes = [source_probe(probe, target, name, source)]
    assert_refused(advisory, probes, target)


def test_cve_2023_2780_backslash_traversal_not_applicable():
    link_advisory(CVE_2023_2780)
    not_applicable("`\\` is a path separator only on Windows; the charm runs the MLflow server "
                   "on Linux, where a backslash is an ordinary file-name character")


def test_cve_2023_6909_query_traversal_in_artifact_location_is_refused(probe, target):
    """The route 2.9.2 closed (mlflow/mlflow@1da75dfc): `..` in the query string of an
    experiment's artifact_location, which was appended to run artifact paths."""
    link_advisory(CVE_2023_6909)
    _artifact_location_probe(
        probe, target, CVE_2023_6909,
        "file:///mm-security-nonexistent?/" + up() + target.directory.lstrip("/"))


def test_ghsa_5cvj_7rg6_jggj_prompt_tagged_source_is_refused(probe, target):
    """The route the opt-in regex of 2.22.4/3.0.0 closes: a source outside the artifact store
    registered through the prompt tag. The charm does not set the regex, so this measures the
    server as the charm runs it."""
    link_advisory(GHSA_5CVJ)
    tags = [{"key": PROMPT_TAG, "value": "true"}]
    with probe_model(probe, GHSA_5CVJ, tags) as name:
        probes = [source_probe(probe, target, name, f"file://{target.directory}", tags=tags)]
    assert_refused(GHSA_5CVJ, probes, target)


def test_ghsa_42h5_h8qh_vv9v_prompt_tag_does_not_bypass_source_validation(probe, target):
    link_advisory(GHSA_42H5)
    tags = [{"key": PROMPT_TAG, "value": "true"}]
    with probe_model(probe, GHSA_42H5, tags) as name:
        probes = [source_probe(probe, target, name, source, tags=tags) for source in (
            f"file://{target.directory}", target.directory)]
    assert_refused(GHSA_42H5, probes, target)


# ---------------------------------------------------------------- advisories: experiments


def test_cve_2024_1483_fragment_artifact_location_is_refused(probe, target):
    link_advisory(CVE_2024_1483)
    _artifact_location_probe(probe, target, CVE_2024_1483,
                             "http:///#/" + up() + target.directory.lstrip("/") + "/")


def _artifact_location_probe(probe: Http, target: Target, advisory: Advisory,
                             location: str) -> None:
    """experiments/create must refuse `location`; if it does not, try the advisory's chain
    (a run in that experiment, a model version on the run) to see whether the target leaks."""
    name = f"mm-security-{advisory.id.lower()}-{uuid.uuid4().hex[:8]}"
    created = probe.api("POST", "experiments/create", {"name": name, "artifact_location": location})
    if created.status == 400 and created.error_code == INVALID:
        advisory.held()
        return
    detail = f"experiments/create with artifact_location {location!r} answered {created.brief()}"
    experiment_id = created.json.get("experiment_id")
    leaked = False
    if created.status == 200 and experiment_id:
        run_ids: tuple[str, ...] = ()
        try:
            run = probe.api("POST", "runs/create", {"experiment_id": experiment_id})
            run_id = run.json.get("run", {}).get("info", {}).get("run_id")
            if run_id:
                run_ids = (run_id,)
                direct = probe.request(
                    "GET", f"/get-artifact?path={quote(target.name)}&run_uuid={run_id}")
                leaked = target.served_by(direct)
                detail += f"; run get-artifact answered {direct.brief()}"
            with probe_model(probe, advisory) as model:
                chained = source_probe(probe, target, model, f"file://{target.directory}",
                                       run_id=run_id)
            leaked = leaked or chained.leaked
            detail += f"; model version with that run: {chained.verdict()}"
        finally:
            delete_experiment(probe, experiment_id, run_ids)
    raise AssertionError(
        f"{advisory.id}: MLflow {MLFLOW_VERSION} "
        + (f"served {target.describe()} from outside the artifact root" if leaked
           else f"did not refuse the detection request with HTTP 400 {INVALID}") + f": {detail}")


# ---------------------------------------------------------------- advisories: artifact deletion


def _seed_artifact_root(probe: Http) -> str:
    """Make sure the artifact-serving root exists (a traversal through a missing directory
    fails at the OS level and would hide the advisory): one small file under a private prefix."""
    seed = f"mm-security-seed-{uuid.uuid4().hex[:8]}/seed.txt"
    answer = probe.request("PUT", f"{ARTIFACTS_ROUTE}{seed}", b"seed\n",
                           {"Content-Type": "application/octet-stream"})
    if answer.status == 503 or (answer.status == 404 and not answer.error_code):
        not_applicable(f"the server does not serve artifacts (PUT {ARTIFACTS_ROUTE}… answered "
                       f"{answer.brief()}): there is no artifact route to walk out of")
    assert answer.status == 200, (
        f"could not place the seed file the traversal probes need: PUT {ARTIFACTS_ROUTE}{seed} "
        f"answered {answer.brief()}; without it a refusal would prove nothing")
    return seed


def _remove_seed(probe: Http, seed: str) -> None:
    """Delete the seed's folder and prove it is gone."""
    folder = seed.split("/")[0]
    probe.request("DELETE", f"{ARTIFACTS_ROUTE}{folder}")
    left = probe.request("GET", f"{ARTIFACTS_ROUTE}{seed}")
    assert left.status == 404 or (left.status >= 400 and left.error_code), (
        f"the probe's seed file {seed} is still served after its DELETE ({left.brief()})")


def test_cve_2023_6831_artifact_delete_traversal_is_refused(probe, target):
    """DELETE through the artifact-serving route at a directory outside its root, the path
    double-URL-encoded: before 2.9.2 the check ran on the once-decoded path and the local
    artifact repository decoded it again (url2pathname) before `rmtree`.

    The directory is one this test creates next to the canary (local platforms); elsewhere a
    path that does not exist, so even a server open to the advisory has nothing to delete.
    """
    link_advisory(CVE_2023_6831)
    token = uuid.uuid4().hex[:12]
    if target.writable:
        victim = Path(target.directory) / f"mm-delete-probe-{token}"
        victim.mkdir()
        (victim / "file.txt").write_text("delete probe\n", encoding="utf-8")
    else:
        victim = Path(f"/tmp/mlflow-matrix-absent-{token}")
    seed = _seed_artifact_root(probe)
    url = ("/api/2.0/mlflow-artifacts/artifacts/"
           + relative(str(victim)).replace("../", "%252e%252e%252f"))
    try:
        answer = probe.request("DELETE", url)
        deleted = target.writable and not victim.exists()
    finally:
        if target.writable and victim.exists():
            (victim / "file.txt").unlink(missing_ok=True)
            victim.rmdir()
        _remove_seed(probe, seed)
    assert not deleted, (f"{CVE_2023_6831.id}: MLflow {MLFLOW_VERSION} deleted a directory "
                         f"outside the artifact root ({answer.brief()})")
    if not (target.writable and answer.status < 400):  # else: a literal name inside the root,
        # safe, and proven so by the victim's survival
        assert answer.status == 400 and answer.error_code == INVALID, (
            f"{CVE_2023_6831.id}: MLflow {MLFLOW_VERSION} did not refuse the detection request "
            f"with HTTP 400 {INVALID}: DELETE {url[:80]}… answered {answer.brief()}")
    CVE_2023_6831.held()


# ---------------------------------------------------------------- hardening: every artifact route

VARIANTS = {
    "plain": lambda p: p,
    "url-encoded": lambda p: p.replace("../", "..%2f"),
    "double-encoded": lambda p: p.replace("../", "%252e%252e%252f"),
}


@pytest.fixture(scope="module")
def seeded_root(http_client):
    """The artifact-serving root exists for the traversal probes (see _seed_artifact_root)."""
    seed = _seed_artifact_root(http_client)
    yield
    _remove_seed(http_client, seed)


@pytest.fixture(scope="module")
def probe_run(mlflow_client, http_client):
    experiment = mlflow_client.create_experiment(f"mm-security-{uuid.uuid4().hex[:8]}")
    run = mlflow_client.create_run(experiment)
    try:
        yield run.info.run_id
    finally:
        mlflow_client.set_terminated(run.info.run_id)
        delete_experiment(http_client, experiment, (run.info.run_id,))


def _read_routes(run_id: str, encoded_path: str) -> dict[str, tuple[str, str]]:
    q = encoded_path  # already encoded for a path; for a query it must be encoded once more
    query = quote(q, safe="%")
    return {
        "mlflow-artifacts download": ("GET", "/api/2.0/mlflow-artifacts/artifacts/" + q),
        "mlflow-artifacts list": ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=" + query),
        "run get-artifact": ("GET", f"/get-artifact?path={query}&run_uuid={run_id}"),
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_artifact_read_routes_refuse_traversal(probe, target, probe_run, seeded_root,
                                               variant):
    """Upstream hardening (validate_path_is_safe) on every route that reads artifacts by path.

    `plain` and `url-encoded` must be refused with a 4xx. A release may take the double-encoded
    form as a literal name inside the root (`%2e%2e%2f…`): that is safe, so where the canary
    proves nothing leaked any answer passes; elsewhere only a 4xx does."""
    allure.dynamic.label("hardening", "artifact-path-traversal")
    encode = VARIANTS[variant]
    failures = []
    for route, (method, url) in _read_routes(probe_run, encode(relative(target.path))).items():
        answer = probe.request(method, url)
        literal_ok = variant == "double-encoded" and target.expected is not None
        if target.served_by(answer) or not (400 <= answer.status < 500 or literal_ok):
            failures.append(f"  {route}: {method} {url[:90]}… answered {answer.brief()}"
                            + (f", serving {target.describe()}" if target.served_by(answer)
                               else ""))
    assert not failures, (f"artifact path traversal ({variant}): MLflow {MLFLOW_VERSION} did not "
                          "refuse with a 4xx:\n" + "\n".join(failures))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_artifact_upload_refuses_traversal(probe, target, seeded_root, variant):
    """Upstream hardening: an upload whose path walks out of the artifact-serving root."""
    allure.dynamic.label("hardening", "artifact-path-traversal")
    if not target.writable:
        pytest.skip("write probe needs a harness-owned canary directory (local platforms); here "
                    "a server open to it would write outside the run's own experiment")
    token = uuid.uuid4().hex[:12]
    victim = Path(target.directory) / f"mm-upload-probe-{token}.txt"
    url = "/api/2.0/mlflow-artifacts/artifacts/" + VARIANTS[variant](relative(str(victim)))
    try:
        answer = probe.request("PUT", url, b"upload probe\n",
                               {"Content-Type": "application/octet-stream"})
        written = victim.exists()
    finally:
        victim.unlink(missing_ok=True)
    assert not written, (f"artifact path traversal ({variant}): MLflow {MLFLOW_VERSION} wrote "
                         f"{victim.name} outside the artifact root ({answer.brief()})")
    if variant == "double-encoded" and answer.status < 400:
        # stored under a literal `%2e%2e%2f…` name inside the root: safe, proven above
        _remove_literal_upload(probe, url)
        return
    assert 400 <= answer.status < 500, (
        f"artifact path traversal ({variant}): MLflow {MLFLOW_VERSION} accepted PUT "
        f"{url[:90]}… with {answer.brief()} (nothing was written outside the root)")


def _remove_literal_upload(probe: Http, url: str) -> None:
    """Delete what a double-encoded upload stored inside the root under a literal name, through
    the same URL, and prove it is gone. Only where deletes decode once (outside CVE-2023-6831's
    range): an affected server would decode the DELETE twice and walk out of the root."""
    if CVE_2023_6831.applies_to(MLFLOW_VERSION):
        allure.attach(f"left in the artifact root (an affected server could delete outside it): "
                      f"{url}", name="left behind", attachment_type=allure.attachment_type.TEXT)
        return
    probe.request("DELETE", url)
    left = probe.request("GET", url)
    assert left.status >= 400, (f"the literal-name upload {url[:90]}… is still served after its "
                                f"DELETE ({left.brief()})")


# ---------------------------------------------------------------- hardening: Host header, CORS


def _security_rules():
    """The release's own rules, from the client env (same MLflow version as the server).
    Releases before the middleware are *not applicable* by the version table; on a release that
    has it, a failing import is a failure, not a skip."""
    if not rule("server_security_middleware", MLFLOW_VERSION):
        not_applicable(f"MLflow {MLFLOW_VERSION} has no tracking-server security middleware "
                       "(Host/CORS validation came with mlflow/mlflow#17910, MLflow 3.5)")
    from mlflow.server import security_utils

    return security_utils


def test_host_header_outside_allowed_hosts_is_refused(probe):
    allure.dynamic.label("hardening", "host-header")
    allure.dynamic.link("https://github.com/mlflow/mlflow/pull/17910", name="mlflow#17910")
    rules = _security_rules()
    host = "mm-dns-rebinding.invalid"
    default_hosts = rules.get_default_allowed_hosts()
    assert not rules.is_allowed_host_header(default_hosts, host)  # the release's own rule
    answer = probe.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1",
                           headers={"Host": host})
    assert answer.status == 403 and rules.INVALID_HOST_MSG.encode() in answer.body, (
        f"Host header validation: MLflow {MLFLOW_VERSION} answered {answer.brief()} to Host: "
        f"{host} (its default allowed hosts refuse it with 403 {rules.INVALID_HOST_MSG!r})")
    allowed = probe.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1")
    assert allowed.status == 200, f"the server's own Host was refused: {allowed.brief()}"


CORS_PROBE_ORIGIN = "http://mm-cors-probe.invalid"


def test_cross_origin_state_change_is_refused(probe):
    """A state-changing API call from a foreign Origin is refused with 403 and changes nothing."""
    allure.dynamic.label("hardening", "cors")
    allure.dynamic.link("https://github.com/mlflow/mlflow/pull/17910", name="mlflow#17910")
    rules = _security_rules()
    origin = CORS_PROBE_ORIGIN
    assert rules.should_block_cors_request(origin, "POST", None)  # the release's own rule
    name = f"mm-cors-probe-{uuid.uuid4().hex[:12]}"
    answer = probe.request("POST", "/api/2.0/mlflow/experiments/create", {"name": name},
                           headers={"Origin": origin})
    after = probe.api("GET", "experiments/get-by-name", {"experiment_name": name})
    if after.status == 200:  # the probe's own experiment: remove it, then report
        probe.api("POST", "experiments/delete",
                  {"experiment_id": after.json.get("experiment", {}).get("experiment_id")})
    assert after.status == 404 and after.error_code == "RESOURCE_DOES_NOT_EXIST", (
        f"CORS validation: MLflow {MLFLOW_VERSION} created experiment {name} for a cross-origin "
        f"POST from {origin} ({answer.brief()}); looking it up answered {after.brief()}")
    assert answer.status == 403 and rules.CORS_BLOCKED_MSG.encode() in answer.body, (
        f"CORS validation: MLflow {MLFLOW_VERSION} answered {answer.brief()} to a cross-origin "
        f"POST from {origin} (its rules refuse it with 403 {rules.CORS_BLOCKED_MSG!r})")
    same_origin = probe.request("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1})
    assert same_origin.status == 200, f"a same-origin POST was refused: {same_origin.brief()}"


def test_foreign_origin_is_not_granted_cors(probe):
    """No answer to a foreign Origin carries Access-Control-Allow-Origin for it (or `*`): not
    the refused POST, not a read. Otherwise a page on that origin may read the API's answers in
    the user's browser. MLflow 3.5.0-3.9.x grant every origin, with credentials (their FastAPI
    layer: CORSMiddleware allow_origins=["*"]); matrix.yaml known defect
    mlflow-fastapi-cors-allows-any-origin."""
    allure.dynamic.label("hardening", "cors")
    allure.dynamic.link("https://github.com/mlflow/mlflow/pull/20832", name="mlflow#20832")
    _security_rules()
    origin = CORS_PROBE_ORIGIN
    answers = {
        "refused POST experiments/search": probe.request(
            "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1},
            headers={"Origin": origin}),
        "GET experiments/search": probe.request(
            "GET", "/api/2.0/mlflow/experiments/search?max_results=1",
            headers={"Origin": origin}),
    }
    granted = [
        f"{what} ({answer.brief()}): Access-Control-Allow-Origin: "
        f"{answer.headers['access-control-allow-origin']}, Access-Control-Allow-Credentials: "
        f"{answer.headers.get('access-control-allow-credentials', '-')}"
        for what, answer in answers.items()
        if answer.headers.get("access-control-allow-origin") in (origin, "*")]
    assert not granted, (f"CORS: MLflow {MLFLOW_VERSION} grants the foreign origin {origin}:\n  "
                         + "\n  ".join(granted))
