"""Every registered provisioner kind (entry points, built-in or not) honours the contract the
core relies on: the Provisioner protocol, frozen Settings, side-effect-free plans."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
from pathlib import Path

import pytest

from harness.commands.options import PLATFORM_OPTIONS
from harness.config.matrix import Platform, Selection, expand_cells, load_matrix
from harness.config.registry import known_kinds, load_provisioner_class
from harness.system.errors import MatrixError
from harness.system.state import RunState
from provisioners.api import DeploymentPlan, Provisioner, RunContext, Substrate, Sweepable

KINDS = known_kinds()
OPTIONS = {"tracking_uri": "http://127.0.0.1:9", "kubeconfig": "/nonexistent/kubeconfig"}


def test_the_built_in_kinds_are_registered_through_entry_points():
    assert {"local", "external", "microk8s", "canonical-k8s", "existing"} <= set(KINDS)


def _platform(kind: str) -> Platform:
    """The first matrix.yaml platform of the kind, else one with the kind's default settings."""
    matrix = load_matrix()
    for platform in matrix.platforms.values():
        if platform.kind == kind:
            return platform
    return Platform(f"{kind}-default", kind, load_provisioner_class(kind).Settings(), "")


def _context(kind: str, tmp_path: Path) -> RunContext:
    state = RunState(tmp_path / "state" / "conformance.json", "conformance")
    return RunContext(run_id="20260101-000000-abcdef", platform=_platform(kind),
                      work_dir=tmp_path / "work", state=state,
                      env_for=lambda channel: pytest.fail("plan built an environment"),
                      options=dict(OPTIONS))


@pytest.fixture
def no_processes(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail(f"a plan ran a process: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.mark.parametrize("kind", KINDS)
def test_class_declares_every_member_the_core_calls(kind):
    cls = load_provisioner_class(kind)
    assert cls.kind == kind, "the class's kind is the name it is registered under"
    # called on the class, before any instance exists (selection, janitor)
    for name in ("check_options", "preflight", "release_recorded"):
        assert isinstance(inspect.getattr_static(cls, name), (classmethod, staticmethod)), name
    for name in ("plan", "deployment_plan", "up", "down", "collect", "deployment"):
        assert callable(getattr(cls, name, None)), name
    # read by selection before a run: which CLI options the kind reads, whether a bare
    # MLflow version means something on it
    assert isinstance(inspect.getattr_static(cls, "takes_mlflow_version"), bool)
    options = inspect.getattr_static(cls, "cli_options")
    assert isinstance(options, tuple) and set(options) <= set(PLATFORM_OPTIONS), options
    if isinstance(cls, Sweepable):
        assert isinstance(inspect.getattr_static(cls, "sweep"), (classmethod, staticmethod))


@pytest.mark.parametrize("kind", KINDS)
def test_settings_are_a_frozen_dataclass_with_defaults(kind):
    settings_cls = load_provisioner_class(kind).Settings
    assert dataclasses.is_dataclass(settings_cls)
    assert settings_cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    settings = settings_cls()  # every field has a default: matrix.yaml may set only some
    field = dataclasses.fields(settings_cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, field, getattr(settings, field))


@pytest.mark.parametrize("kind", KINDS)
def test_plan_has_no_side_effects_and_says_what_it_would_do(kind, tmp_path, no_processes):
    context = _context(kind, tmp_path)
    cls = load_provisioner_class(kind)
    cls.check_options(context.platform.settings, context.options)
    provisioner = cls(context)
    assert isinstance(provisioner, Provisioner)
    lines = provisioner.plan()
    assert lines and all(isinstance(line, str) and line.strip() for line in lines)
    matrix = load_matrix()
    if context.platform.name in matrix.platforms:
        cell = expand_cells(matrix, Selection(platforms=(context.platform.name,),
                                              channels=matrix.defaults.channels[:1],
                                              scenarios=("tracking",)))[0]
        plan = provisioner.deployment_plan(cell)
        assert isinstance(plan, DeploymentPlan)
        for section in (plan.deploy, plan.upgrade, plan.restart, plan.close):
            assert isinstance(section, tuple)
            assert all(isinstance(step, str) and step.strip() for step in section)
        # `plan` asks the deployment what it can do, as the runner does: no side effect either
        provisioner.deployment(Substrate(name=context.platform.name), tmp_path / "cell")
        assert not (tmp_path / "cell").exists(), "building a deployment wrote its cell dir"
    assert context.state.resources() == [], "plan recorded a resource"
    assert not context.work_dir.exists(), "plan wrote into the work dir"


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_recorded_resource_is_refused_not_ignored(kind):
    cls = load_provisioner_class(kind)
    with pytest.raises(MatrixError, match="no way to release"):
        cls.release_recorded({"type": "something-else", "kind": kind, "name": "x"})


@pytest.mark.parametrize("kind", [k for k in KINDS if k in ("microk8s", "canonical-k8s",
                                                              "existing")])
def test_kubernetes_kinds_build_on_the_base_and_juju_settings(kind, tmp_path):
    from deployments.juju.deployment import JujuDeployment
    from deployments.juju.settings import JujuSettings
    from provisioners.api import Substrate
    from provisioners.kubernetes.base import KubernetesProvisioner

    cls = load_provisioner_class(kind)
    assert issubclass(cls, KubernetesProvisioner)
    assert issubclass(cls.Settings, JujuSettings)
    provisioner = cls(_context(kind, tmp_path))
    deployment = provisioner.deployment(Substrate(name=kind), tmp_path / "cell")
    assert isinstance(deployment, JujuDeployment)
