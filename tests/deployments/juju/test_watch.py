"""deployments.juju.watch: the grace periods and the terminal messages, on recorded statuses."""

from __future__ import annotations

import json

import jubilant
import pytest
from fakes.recording import recording

from deployments.juju import settings as jsettings
from deployments.juju import watch as jwatch
from harness.system.waits import Terminal

VALUES = {"MODEL": "m", "CONTROLLER": "c", "CLOUD": "c", "SERVER_CHANNEL": "2.22/stable",
          "MINIO_CHANNEL": "ckf-1.10/stable", "TARGET_SERVER_CHANNEL": "2.22/stable",
          "TARGET_MINIO_CHANNEL": "ckf-1.10/stable"}


def status(name: str, server_message: str | None = None) -> jubilant.Status:
    data = json.loads(recording(f"juju/{name}.json", **VALUES))
    if server_message is not None:
        unit = data["applications"]["mlflow-server"]["units"]["mlflow-server/0"]
        unit["workload-status"]["message"] = server_message
    return jubilant.Status._from_dict(data)


# The charm's own words when the bucket is missing and it may not create it (mlflow-operator
# src/charm.py `_validate_default_s3_bucket_name_and_access`): no retry changes that.
NO_BUCKET = ("Error with default S3 artifact store - bucket not accessible or does not exist. "
             "Set create_default_artifact_root_if_missing=True to automatically create a missing "
             "default bucket")


def test_a_terminal_message_ends_the_wait_at_once_even_within_the_grace():
    clock = {"now": 0.0}
    watch = jwatch.BundleWatch(jsettings.BUNDLE_APPS, blocked_grace=600,
                               terminal=jsettings.TERMINAL_MESSAGES, clock=lambda: clock["now"])
    with pytest.raises(Terminal, match="create_default_artifact_root_if_missing"):
        watch.error(status("status-blocked", NO_BUCKET))


def test_error_and_blocked_each_get_their_grace_per_unit():
    clock = {"now": 0.0}
    watch = jwatch.BundleWatch(jsettings.BUNDLE_APPS, blocked_grace=100, error_grace=50,
                               clock=lambda: clock["now"])
    assert watch.error(status("status-error")) is False
    clock["now"] = 49
    assert watch.error(status("status-error")) is False
    clock["now"] = 60
    assert watch.error(status("status-blocked")) is False    # left error: its grace resets
    clock["now"] = 70
    assert watch.error(status("status-error")) is False
    clock["now"] = 121
    with pytest.raises(Terminal, match=r"has been in error for 51s \(grace 50s\): hook failed"):
        watch.error(status("status-error"))


def test_a_refreshed_app_is_not_ready_on_its_old_revision_or_while_upgrading():
    watch = jwatch.BundleWatch(jsettings.BUNDLE_APPS, blocked_grace=100,
                               revisions={"mlflow-server": 762})
    assert watch.ready(status("status-healthy")) is False       # still revision 762
    refreshed = json.loads(recording("juju/status-refreshed.json", **VALUES))
    assert watch.ready(jubilant.Status._from_dict(refreshed)) is True   # revision 1020
    unit = refreshed["applications"]["mlflow-server"]["units"]["mlflow-server/0"]
    unit["upgrading-from"] = "ch:amd64/mlflow-server-762"
    assert watch.ready(jubilant.Status._from_dict(refreshed)) is False
    assert "upgrading from ch:amd64/mlflow-server-762" in watch.summary()
