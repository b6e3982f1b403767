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
                               clock=lambda: clock["now"])
    with pytest.raises(Terminal, match="create_default_artifact_root_if_missing"):
        watch.error(status("status-blocked", NO_BUCKET))
