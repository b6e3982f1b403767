"""KubernetesProvisioner: what a provider gets from the base without writing it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from fakes.fixtures import RUN_ID, context_for  # noqa: F401  (pytest fixtures)

from deployments.juju.controller import release_recorded_juju
from deployments.juju.deployment import JujuDeployment
from deployments.juju.settings import JujuSettings
from harness.system.errors import InfrastructureError
from provisioners.api import Provisioner, Substrate
from provisioners.kubernetes.base import KubernetesProvisioner


@dataclass(frozen=True)
class ToySettings(JujuSettings):
    fail_delete: bool = False


class ToyProvisioner(KubernetesProvisioner):
    kind: ClassVar[str] = "toy"
    Settings = ToySettings
    released: ClassVar[list[str]] = []

    def __init__(self, context: Any, settings: ToySettings) -> None:
        super().__init__(context)
        self.settings = settings
        self.calls: list[str] = []
        self.rid = ""

    def create_cluster(self) -> Substrate:
        self.rid = self.record("toy-cluster", name="c1")
        self.calls.append("create")
        return Substrate(name="toy", kubeconfig=self.context.work_dir / "kubeconfig",
                         cluster_goes_away=True)

    def delete_cluster(self) -> None:
        self.calls.append("delete")
        if self.settings.fail_delete:
            raise InfrastructureError("cluster c1 is stuck deleting")
        self.forget(self.rid)

    def cluster_goes_away(self) -> bool:
        return True

    def cluster_plan(self) -> list[str]:
        return ["toy create-cluster c1"]

    def cluster_down_plan(self) -> list[str]:
        return ["down: toy delete-cluster c1"]

    def collect_commands(self) -> list[tuple[str, list[str]]]:
        return [("echo.txt", ["echo", "toy nodes"])]

    @classmethod
    def release_cluster_resource(cls, resource: Any) -> bool:
        if resource["type"] != "toy-cluster":
            return False
        cls.released.append(resource["name"])
        return True


def test_up_down_record_and_release(context_for, tmp_path):  # noqa: F811
    context = context_for("existing")
    toy = ToyProvisioner(context, ToySettings())
    assert isinstance(toy, Provisioner)
    substrate = toy.up()
    [resource] = context.state.resources()
    assert (resource.type, resource.data["kind"], resource.data["name"]) == \
        ("toy-cluster", "toy", "c1")
    assert isinstance(toy.deployment(substrate, tmp_path / "cell"), JujuDeployment)
    toy.down()
    assert toy.calls == ["create", "delete"] and context.state.resources() == []
    ToyProvisioner.released.clear()
    ToyProvisioner.release_recorded({"type": "toy-cluster", "kind": "toy", "name": "c9"})
    assert ToyProvisioner.released == ["c9"]
    assert release_recorded_juju({"type": "toy-cluster"}) is False


def test_plan_puts_juju_release_between_create_and_delete(context_for):  # noqa: F811
    lines = ToyProvisioner(context_for("existing"), ToySettings()).plan()
    assert lines[0] == "toy create-cluster c1"
    juju = [i for i, line in enumerate(lines) if line.startswith("down: juju")]
    assert juju and max(juju) < lines.index("down: toy delete-cluster c1")
    assert lines[-1] == "collect: echo toy nodes"


def test_a_failed_delete_is_reported_and_collect_writes_each_command(context_for, tmp_path):  # noqa: F811
    toy = ToyProvisioner(context_for("existing"), ToySettings(fail_delete=True))
    toy.up()
    with pytest.raises(InfrastructureError, match="cluster c1 is stuck deleting"):
        toy.down()
    assert len(toy.context.state.resources()) == 1, "what could not be deleted stays recorded"
    toy.collect(tmp_path / "diag")
    assert (tmp_path / "diag" / "echo.txt").read_text() == "$ echo toy nodes\ntoy nodes\n"
