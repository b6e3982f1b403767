"""Secrets seeded into a real local cell never reach a file under reports/.

The S3 keys of the cell's SeaweedFS are seeded (the provisioner's own key generator returns
known values, so its own registration path is exercised), and a fake kubeconfig with a bearer
token is handed to the run through KUBECONFIG. A scenario prints, logs, attaches and fails with
all of them. Then the whole report is built (Allure 3 when npm is there, the matrix page) and
every file under reports/ is searched, also for base64 forms (the single-file Allure report
embeds attachments base64-encoded). A canary file outside reports/ proves the scenario really
saw the secrets, so the test cannot pass vacuously: remove redaction and it fails.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import types
from pathlib import Path

import pytest

import provisioners.local as local
from harness.config.matrix import Selection, expand_cells, load_matrix
from harness.run.runner import Progress, Runner, RunOptions

ACCESS_KEY_HEX = "5eed0ac0e55c0de1"            # → access key "mm5eed0ac0e55c0de1"
SECRET_KEY = "SeedS3cretKey-QmF5ZW4tc2VjcmV0-x9"
KUBE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.ZmFrZS1rdWJlY29uZmlnLXRva2Vu.c2lnbmF0dXJlLXNlZWQ"
CLIENT_KEY_DATA = "LS0tLS1CRUdJTiBGQUtFIFBSSVZBVEUgS0VZLS0tLS0K"

SCENARIO = '''
import logging
import os
from pathlib import Path

import allure


def test_prints_and_logs_every_secret(mlflow_client):
    assert mlflow_client.search_experiments()
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    kubeconfig = Path(os.environ["KUBECONFIG"]).read_text()
    token = next(line.split(":", 1)[1].strip() for line in kubeconfig.splitlines()
                 if line.strip().startswith("token:"))
    Path(os.environ["REDACTION_CANARY"]).write_text(f"{key}\\n{secret}\\n{token}\\n")
    print(f"AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY={secret}")
    print(f"boto3 would sign with {secret}")
    print(kubeconfig)
    logging.getLogger("scenario").warning("Authorization: Bearer %s; secret %s", token, secret)
    allure.attach(kubeconfig, name="kubeconfig", attachment_type=allure.attachment_type.TEXT)
    allure.attach(f"credentials {key}:{secret}", name="credentials")
    raise AssertionError(f"deliberate: the S3 secret is {secret}; token: {token}")
'''

KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: {CLIENT_KEY_DATA}
users:
- name: admin
  user:
    token: {KUBE_TOKEN}
    client-key-data: {CLIENT_KEY_DATA}
contexts:
- name: fake
  context: {{cluster: fake, user: admin}}
current-context: fake
"""


def _needles(secret: str) -> list[bytes]:
    """The secret, and its base64 forms: whatever its offset inside an encoded blob, the groups
    made only of its own bytes encode to b64(secret[skip:]) for skip 0, 1 or 2 (whole groups)."""
    raw = secret.encode()
    found = [raw]
    for skip in range(3):
        part = raw[skip:]
        found.append(base64.b64encode(part[:len(part) // 3 * 3]))
    return found


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory) -> Path:
    """One real local cell whose scenario spills every seeded secret; reports built after it."""
    tmp_path = tmp_path_factory.mktemp("redaction")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "pytest.ini").write_text("[pytest]\n")
    (scenarios / "test_tracking.py").write_text(SCENARIO)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    canary = tmp_path / "canary.txt"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_MATRIX_SCENARIOS_DIR", str(scenarios))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setenv("REDACTION_CANARY", str(canary))
        # the provisioner's own key generator hands out known keys; its registration stays real
        monkeypatch.setattr(local, "secrets", types.SimpleNamespace(
            token_hex=lambda n=None: ACCESS_KEY_HEX,
            token_urlsafe=lambda n=None: SECRET_KEY))
        matrix = load_matrix()
        matrix = dataclasses.replace(matrix, platforms={"local": matrix.platforms["local"]})
        cells = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                               scenarios=("tracking",)))
        reports = tmp_path / "reports"
        with (tmp_path / "progress.log").open("w") as log:
            code = Runner(matrix, cells, RunOptions(reports_dir=reports),
                          progress=Progress(log)).run()
    assert code == 1, (tmp_path / "progress.log").read_text()
    assert canary.read_text().split() == [f"mm{ACCESS_KEY_HEX}", SECRET_KEY, KUBE_TOKEN], \
        "the scenario must have seen the seeded secrets"

    from harness.reporting.build import build_reports

    outcome = build_reports(reports, allure=bool(shutil.which("npm") and shutil.which("node")))
    assert outcome.error is None, outcome.error
    return reports


def _leaks(reports: Path, secrets: tuple[str, ...]) -> list[str]:
    files = [p for p in reports.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-attachment.txt") for p in files)
    assert any(p.name == "pytest.log" for p in files)
    leaks = []
    for secret in secrets:
        needles = _needles(secret)
        for path in files:
            if any(needle in path.read_bytes() for needle in needles):
                leaks.append(f"{secret[:12]}… in {path.relative_to(reports)}")
    return leaks


@pytest.mark.timeout(900)
def test_seeded_secrets_never_reach_reports(seeded_run):
    leaks = _leaks(seeded_run, (SECRET_KEY, KUBE_TOKEN, CLIENT_KEY_DATA))
    assert not leaks, "secrets in reports:\n" + "\n".join(leaks)
    log = (seeded_run / "local" / "2.22-stable" / "pytest.log").read_text()
    assert "AWS_SECRET_ACCESS_KEY=***" in log and "AWS_ACCESS_KEY_ID=***" in log, \
        "the keys were printed, and masked"
    if shutil.which("npm") and shutil.which("node"):
        assert (seeded_run / "allure-report" / "single-file" / "index.html").is_file()


@pytest.mark.timeout(900)
def test_bare_s3_access_key_never_reaches_reports(seeded_run):
    leaks = _leaks(seeded_run, (f"mm{ACCESS_KEY_HEX}",))
    assert not leaks, "access key in reports:\n" + "\n".join(leaks)


def test_needles_find_base64_forms():
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = base64.b64encode(prefix + SECRET_KEY.encode() + b" tail")
        assert any(needle in blob for needle in _needles(SECRET_KEY)[1:]), prefix
    assert not any(needle in base64.b64encode(b"unrelated text" * 4) for needle in _needles(SECRET_KEY))


def test_fixture_data_holds_no_secret_shapes():
    """The committed fixture tree came from real runs: it must carry no credentials."""
    from harness.system.redact import redact

    data = Path(__file__).resolve().parent / "data"
    for path in data.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".log", ".properties", ".md"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert redact(text) == text, f"{path} holds something secret-shaped"
