"""A bucket copied to a folder and back, as the backup and restore guides do with `rclone
--size-only sync`: one way, objects whose size differs or that are missing are copied, objects
the source lacks are deleted from the destination."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.system.endpoint import Credentials


def sync_bucket(endpoint_url: str, credentials: Credentials, bucket: str, folder: Path, *,
                to_folder: bool) -> int:
    """Sync `bucket` → `folder` (`to_folder`) or back; the number of objects copied."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint_url,
                          aws_access_key_id=credentials.access_key,
                          aws_secret_access_key=credentials.secret_key, region_name="us-east-1")
    remote: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        remote.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    local = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}
    source, dest = (remote, local) if to_folder else (local, remote)
    copied = [key for key, size in source.items() if dest.get(key) != size]
    for key in copied:
        path = folder / key
        if to_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(path))
        else:
            client.upload_file(str(path), bucket, key)
    for key in set(dest) - set(source):
        if to_folder:
            (folder / key).unlink()
        else:
            client.delete_object(Bucket=bucket, Key=key)
    return len(copied)
