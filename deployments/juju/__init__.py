"""Charmed MLflow on Kubernetes through Juju (jubilant), split by concern.

    settings     JujuSettings: the fields every Kubernetes platform accepts in matrix.yaml
    names        run-scoped cloud, controller and model names
    cli          the jubilant seam (deadlines, own session, redacted errors)
    bundle       where a channel's deployment comes from
    controller   JujuController: the cloud and controller a platform's cells share (owned by
                 the provisioner), and the janitor's release of recorded ones
    watch        fail-fast waits on `juju status`
    deployment   JujuDeployment: deploy, upgrade, restart, endpoint, teardown
    plan         the steps of one cell, for `mlflow-matrix plan`
    diagnostics  what a failed or finished cell leaves in diagnostics/

The public names below are loaded on first use, so importing `deployments.juju.settings` (as
matrix.yaml validation does) never imports jubilant or lightkube.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JujuSettings": "settings", "juju_settings": "settings",
    "cloud_name": "names", "controller_name": "names", "model_name": "names",
    "juju_errors": "cli",
    "BundleSource": "bundle", "charm_plan": "bundle", "fetch_bundle": "bundle",
    "read_bundle": "bundle",
    "JujuController": "controller",
    "release_recorded_juju": "controller", "destroy_recorded_model": "controller",
    "destroy_controller": "controller", "remove_cloud": "controller",
    "BundleWatch": "watch",
    "JujuDeployment": "deployment",
    "cell_plan": "plan", "platform_down_plan": "plan",
    "collect_deployment": "diagnostics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
