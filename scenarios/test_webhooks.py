"""Registry webhooks (3.3+): created, read back, updated, listed page by page, deleted.

Webhooks are server-wide, so the tests of this suite take one lock (a file beside the other
workers' temp dirs) and never see each other's webhooks mid-walk. Every webhook is created
DISABLED and points at a public address no test serves: the server never delivers a thing
(`WebhookStatus.is_active()` gates delivery), so probing leaves nothing behind but what each test
deletes. The secret is write-only: the server must never hand it back. On releases without
webhooks the tests are not applicable (scenarios/_rules.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import time
from pathlib import Path

import pytest
from _helpers import assert_walk, expect_page_refusals, expect_refusal, require_api, walk_pages
from packaging.version import Version

# https and a global address: what every release's URL validation accepts (3.1x refuses
# non-public addresses); DISABLED webhooks are never called.
URL = "https://1.1.1.1/mlflow-matrix-probe"
EVENTS = ["model_version.created", "registered_model.created"]
PAGE = 2
WRITTEN = 5


@pytest.fixture
def version(endpoint) -> Version:
    version = Version(endpoint.mlflow_version)
    require_api("webhooks", version)
    return version


@pytest.fixture
def webhooks(mlflow_client, endpoint, version):
    """Ids the test created, deleted afterwards; the suite's lock is held throughout."""
    key = hashlib.sha256(endpoint.tracking_uri.encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"mm-webhooks-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        created: list[str] = []
        yield created
        for webhook_id in created:
            mlflow_client.delete_webhook(webhook_id)


def create(client, created: list[str], name: str, **kwargs):
    webhook = client.create_webhook(name, URL, EVENTS, status="DISABLED", **kwargs)
    created.append(webhook.webhook_id)
    time.sleep(0.003)  # distinct creation timestamps: the listing order is by them
    return webhook


def _status(webhook) -> str:
    return str(getattr(webhook.status, "value", webhook.status))


def test_webhook_round_trip(mlflow_client, unique_name, webhooks):
    name = unique_name()
    made = create(mlflow_client, webhooks, name, description="probe ✓", secret="s3cr3t-value")
    got = mlflow_client.get_webhook(made.webhook_id)
    assert (got.webhook_id, got.name, got.url) == (made.webhook_id, name, URL)
    assert sorted(str(e) for e in got.events) == sorted(EVENTS)
    assert got.description == "probe ✓" and _status(got) == "DISABLED"
    assert not got.secret, "the server handed the webhook's secret back"
    assert got.creation_timestamp <= got.last_updated_timestamp

    updated = mlflow_client.update_webhook(made.webhook_id, description="changed",
                                           events=["model_version_alias.created"])
    again = mlflow_client.get_webhook(made.webhook_id)
    assert again.description == updated.description == "changed"
    assert [str(e) for e in again.events] == ["model_version_alias.created"]
    assert _status(again) == "DISABLED" and again.url == URL


def test_deleted_webhook_is_gone(mlflow_client, unique_name, webhooks):
    made = create(mlflow_client, [], unique_name())
    mlflow_client.delete_webhook(made.webhook_id)
    expect_refusal(lambda: mlflow_client.get_webhook(made.webhook_id), "RESOURCE_DOES_NOT_EXIST")
    listed = walk_pages(lambda n, t: mlflow_client.list_webhooks(max_results=n, page_token=t), 100)
    assert made.webhook_id not in {w.webhook_id for w in listed.items}


def test_list_webhooks_pages(mlflow_client, unique_name, webhooks, version):
    """Newest first (creation_timestamp DESC): the ones written here, then those already there."""
    def fetch(max_results, token):
        return mlflow_client.list_webhooks(max_results=max_results, page_token=token)

    before = [w.webhook_id for w in walk_pages(fetch, 100).items]
    ours = [create(mlflow_client, webhooks, unique_name(str(i))).webhook_id
            for i in range(WRITTEN)]
    expected = ours[::-1] + before
    if len(expected) % PAGE == 0:  # keep the last page partial (see page_sizes)
        ours.append(create(mlflow_client, webhooks, unique_name("odd")).webhook_id)
        expected = ours[::-1] + before
    assert_walk(walk_pages(fetch, PAGE), expected, lambda w: w.webhook_id, what="list_webhooks")
    expect_page_refusals(fetch, "max_results_list_webhooks", version)
