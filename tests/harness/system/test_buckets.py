"""The guides' `rclone --size-only sync`, one way and back, against a real S3 API (moto's server
on loopback): what differs in size or is missing is copied, what the source lacks is deleted."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from fakes.aws import MotoServer

from harness.system.buckets import sync_bucket
from harness.system.endpoint import Credentials

KEYS = Credentials("testing", "testing-secret")


@pytest.fixture
def s3():
    server = MotoServer().start()
    client = boto3.client("s3", endpoint_url=server.url, aws_access_key_id=KEYS.access_key,
                          aws_secret_access_key=KEYS.secret_key, region_name="us-east-1")
    client.create_bucket(Bucket="mlflow")
    yield server.url, client
    server.stop()


def test_backup_then_restore_brings_the_bucket_back_exactly(s3, tmp_path: Path):
    url, client = s3
    objects = {"1/run/artifacts/notes.txt": b"notes\n", "1/run/artifacts/ü n i.bin": bytes(300),
               "empty": b""}
    for key, body in objects.items():
        client.put_object(Bucket="mlflow", Key=key, Body=body)
    backup = tmp_path / "backup"
    assert sync_bucket(url, KEYS, "mlflow", backup, to_folder=True) == 3
    assert sync_bucket(url, KEYS, "mlflow", backup, to_folder=True) == 0  # size-only: nothing new
    for key in objects:
        client.delete_object(Bucket="mlflow", Key=key)
    client.put_object(Bucket="mlflow", Key="written-after-the-backup", Body=b"x")
    assert sync_bucket(url, KEYS, "mlflow", backup, to_folder=False) == 3
    listed = client.list_objects_v2(Bucket="mlflow")["Contents"]
    assert {o["Key"] for o in listed} == set(objects)  # the newer object is gone, as rclone does
    for key, body in objects.items():
        assert client.get_object(Bucket="mlflow", Key=key)["Body"].read() == body
