"""`mlflow-matrix janitor --cloud KIND`: the registry → Sweepable → sweep plumbing, end to end.

The cloud here is a kind registered by a separate distribution (an entry point, exactly as a
third party would), whose resources live in a JSON inventory; the janitor runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from provisioners.kubernetes.cloud import run_tags

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(timezone.utc)

PROVIDER = '''
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from deployments.juju.settings import JujuSettings
from provisioners.api import Substrate
from provisioners.kubernetes.base import KubernetesProvisioner
from provisioners.kubernetes.cloud import TaggedResource, sweep_resources


@dataclass(frozen=True)
class FakeCloudSettings(JujuSettings):
    inventory: str = ""


class FakeCloudProvisioner(KubernetesProvisioner):
    kind: ClassVar[str] = "fakecloud"
    Settings = FakeCloudSettings

    def create_cluster(self) -> Substrate:
        raise NotImplementedError

    def delete_cluster(self) -> None:
        pass

    def cluster_goes_away(self) -> bool:
        return True

    def cluster_plan(self) -> list[str]:
        return ["create a fake cluster"]

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        return []

    @classmethod
    def sweep(cls, settings, *, older_than, dry_run, progress):
        path = Path(settings.inventory)
        items = json.loads(path.read_text())

        def delete(resource):
            current = json.loads(path.read_text())
            path.write_text(json.dumps([i for i in current if i["name"] != resource.name]))

        found = [TaggedResource(i["kind"], i["name"], i["tags"]) for i in items]
        return sweep_resources(found, delete, older_than=older_than, dry_run=dry_run,
                               progress=progress)
'''


@pytest.fixture
def fakecloud(tmp_path: Path) -> dict[str, Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "fakecloud_provider.py").write_text(PROVIDER)
    dist = site / "fakecloud-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakecloud\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[mlflow_matrix.provisioners]\nfakecloud = fakecloud_provider:FakeCloudProvisioner\n")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps([
        {"kind": "cluster", "name": "expired",
         "tags": run_tags("run-a", owner="ci", now=NOW - timedelta(hours=7))},
        {"kind": "cluster", "name": "fresh",
         "tags": run_tags("run-b", owner="ci", now=NOW - timedelta(hours=1))},
        {"kind": "cluster", "name": "not-ours", "tags": {"team": "data"}},
    ]))
    matrix = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    matrix["platforms"]["fakecloud-1"] = {"kind": "fakecloud", "inventory": str(inventory)}
    matrix_path = tmp_path / "matrix.yaml"
    matrix_path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    return {"site": site, "inventory": inventory, "matrix": matrix_path}


def janitor(fakecloud: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fakecloud["site"]), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, "-m", "harness", "janitor", *args,
                           "--matrix", str(fakecloud["matrix"])],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def names(fakecloud: dict[str, Path]) -> set[str]:
    return {item["name"] for item in json.loads(fakecloud["inventory"].read_text())}


def test_dry_run_lists_and_a_real_run_removes_only_expired_tagged_resources(fakecloud):
    proc = janitor(fakecloud, "--cloud", "fakecloud", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "janitor --cloud fakecloud: would delete cluster expired (run run-a" in proc.stdout
    assert "fresh" not in proc.stdout and "not-ours" not in proc.stdout
    assert names(fakecloud) == {"expired", "fresh", "not-ours"}

    proc = janitor(fakecloud, "--cloud", "fakecloud")
    assert proc.returncode == 0, proc.stderr
    assert "deleted cluster expired" in proc.stdout
    assert names(fakecloud) == {"fresh", "not-ours"}

    proc = janitor(fakecloud, "--cloud", "fakecloud", "--older-than", "30m")
    assert proc.returncode == 0, proc.stderr
    assert names(fakecloud) == {"not-ours"}, "a resource without our tag is never touched"


def test_a_kind_that_cannot_sweep_is_bad_input(fakecloud):
    proc = janitor(fakecloud, "--cloud", "local")
    assert proc.returncode == 2
    assert "provisioner kind 'local' cannot sweep cloud resources by tag" in proc.stderr
    assert "fakecloud" in proc.stderr, "the hint names the kinds that can"


def test_unknown_kind_and_bad_age_are_bad_input(fakecloud):
    proc = janitor(fakecloud, "--cloud", "nope")
    assert proc.returncode == 2
    assert "unknown provisioner kind 'nope' (registered kinds: " in proc.stderr
    assert "fakecloud" in proc.stderr and "microk8s" in proc.stderr
    proc = janitor(fakecloud, "--cloud", "fakecloud", "--older-than", "6 hours")
    assert proc.returncode == 2 and "is not a duration" in proc.stderr
    assert names(fakecloud) == {"expired", "fresh", "not-ours"}


def test_older_than_without_cloud_is_bad_input(fakecloud):
    proc = janitor(fakecloud, "--older-than", "6h")
    assert proc.returncode == 2 and "go with --cloud KIND" in proc.stderr
