"""provisioners.kubernetes.cloud: run-scoped names, the four tags, expiry and sweeps."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from harness.system.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, ConfigError, InfrastructureError
from provisioners.kubernetes import cloud

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
RUN = "20260101-120000-abcdef"


def test_names_are_bounded_lowercase_and_unique_when_shortened():
    short = cloud.resource_name(RUN, "EKS-1.32", "nodes")
    assert short == "mm-20260101-120000-abcdef-eks-1-32-nodes"
    long_a = cloud.resource_name(RUN, "x" * 80, "a")
    long_b = cloud.resource_name(RUN, "x" * 80, "b")
    assert len(long_a) == len(long_b) == 63 and long_a != long_b
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", long_a)
    assert len(cloud.resource_name(RUN, "aks", limit=24)) <= 24


def test_tags_carry_run_owner_created_and_expiry_in_utc():
    tags = cloud.run_tags(RUN, owner="ci", now=NOW, ttl=timedelta(hours=6))
    assert tags == {"mlflow-matrix-run": RUN, "mlflow-matrix-owner": "ci",
                    "mlflow-matrix-created": "2026-01-01T12:00:00Z",
                    "mlflow-matrix-expires": "2026-01-01T18:00:00Z"}


def test_gke_labels_are_valid_labels_and_read_back_as_the_same_times():
    labels = cloud.gke_labels(cloud.run_tags(RUN, owner="Jane.Doe@Example.com", now=NOW))
    for key, value in labels.items():
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key)
        assert re.fullmatch(r"[a-z0-9_-]{0,63}", value), value
    resource = cloud.TaggedResource("gke-cluster", "c", labels)
    assert resource.run_id == RUN.lower()
    assert resource.created == NOW and resource.expires == NOW + timedelta(hours=6)


@pytest.mark.parametrize(("text", "expected"), [("90m", timedelta(minutes=90)),
                                                ("6h", timedelta(hours=6)),
                                                ("2d", timedelta(days=2)),
                                                ("30s", timedelta(seconds=30))])
def test_durations(text, expected):
    assert cloud.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["6", "h", "-1h", "0h", "1.5h", "6 hours", ""])
def test_bad_durations_are_bad_input(text):
    with pytest.raises(ConfigError, match="is not a duration") as info:
        cloud.parse_duration(text)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_credentials_error_is_exit_2_and_names_what_to_set():
    error = cloud.CredentialsError("AWS", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "or AWS_PROFILE"], "ExpiredToken")
    assert error.exit_code == EXIT_BAD_INPUT
    text = error.render()
    assert "no usable AWS credentials: ExpiredToken" in text
    assert "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or AWS_PROFILE" in text


def test_capacity_error_is_exit_3():
    error = cloud.CapacityError("GKE", "3 x e2-standard-4", "ZONE_RESOURCE_POOL_EXHAUSTED")
    assert isinstance(error, InfrastructureError) and error.exit_code == EXIT_INFRASTRUCTURE
    assert "pick another region/zone" in error.render()


def _resource(name: str, *, created: datetime | None, ttl: timedelta = timedelta(hours=6),
              tagged: bool = True) -> cloud.TaggedResource:
    tags = cloud.run_tags(RUN, owner="ci", now=created, ttl=ttl) if tagged and created else {}
    return cloud.TaggedResource("cluster", name, tags)


def test_sweep_deletes_only_tagged_resources_that_are_due():
    live = {
        "expired": _resource("expired", created=NOW - timedelta(hours=7)),
        "fresh": _resource("fresh", created=NOW - timedelta(hours=1)),
        "someone-elses": _resource("someone-elses", created=None, tagged=False),
    }
    lines: list[str] = []

    def delete(resource: cloud.TaggedResource) -> None:
        del live[resource.name]

    swept = cloud.sweep_resources(list(live.values()), delete, older_than=None, dry_run=False,
                                  progress=lines.append, now=NOW)
    assert [(s.name, s.deleted) for s in swept] == [("expired", True)]
    assert set(live) == {"fresh", "someone-elses"}
    swept = cloud.sweep_resources(list(live.values()), delete, older_than=timedelta(minutes=30),
                                  dry_run=False, progress=lines.append, now=NOW)
    assert [s.name for s in swept] == ["fresh"]
    assert set(live) == {"someone-elses"}, "an untagged resource is never touched"


def test_dry_run_only_lists_and_a_failed_delete_is_reported():
    found = [_resource("a", created=NOW - timedelta(days=1)),
             _resource("b", created=NOW - timedelta(days=1))]
    lines: list[str] = []
    swept = cloud.sweep_resources(found, lambda r: pytest.fail("dry-run deleted"),
                                  older_than=None, dry_run=True, progress=lines.append, now=NOW)
    assert [(s.name, s.deleted) for s in swept] == [("a", False), ("b", False)]
    assert lines[0].startswith("would delete cluster a (run 20260101-120000-abcdef")

    def delete(resource: cloud.TaggedResource) -> None:
        if resource.name == "a":
            raise InfrastructureError("DependencyViolation")

    swept = cloud.sweep_resources(found, delete, older_than=None, dry_run=False,
                                  progress=lines.append, now=NOW)
    assert [(s.name, s.deleted, s.error) for s in swept] == [("a", False, "DependencyViolation"),
                                                             ("b", True, "")]
