"""`existing`: a Kubernetes cluster you already have; nothing is provisioned.

The kubeconfig is `--kubeconfig PATH` (context.options["kubeconfig"]), else the platform's
`kubeconfig:` setting, else $KUBECONFIG / ~/.kube/config; the context is the `context:` setting,
else the kubeconfig's current context. `up` only checks that the API answers; `down` releases
only what the run added to Juju (the cell models, and the controller and cloud if it created
them) — the cluster itself is never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from harness.diagnostics import kubectl_argv
from harness.errors import ConfigError, InfrastructureError, MatrixError
from harness.juju import JujuSettings, cloud_name, controller_name, release_platform
from harness.procs import run
from harness.redact import redact
from provisioners.base import RunContext, Substrate


@dataclass(frozen=True)
class ExistingSettings(JujuSettings):
    kubeconfig: str = ""    # default: --kubeconfig, then $KUBECONFIG, then ~/.kube/config
    context: str = ""       # default: the kubeconfig's current context
    # A cluster of unknown shape: the API server is the one address surely reachable.
    access: Literal["nodeport", "loadbalancer", "port-forward"] = "port-forward"


class ExistingClusterProvisioner:
    """Uses the cluster a kubeconfig points at; creates and removes nothing in it but models."""

    kind: ClassVar[str] = "existing"
    Settings = ExistingSettings

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.settings: ExistingSettings = context.platform.settings

    def kubeconfig_path(self) -> Path:
        given = self.context.options.get("kubeconfig") or self.settings.kubeconfig
        if given:
            return Path(str(given)).expanduser()
        env = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        return Path(env) if env else Path.home() / ".kube" / "config"

    def plan(self) -> list[str]:
        path = self.kubeconfig_path()
        ctx = self.settings.context or "its current context"
        lines = [
            f"use the cluster of {path} ({ctx}); nothing is installed",
            "check the API answers: GET /api/v1/nodes (lightkube)",
        ]
        controller, cloud = controller_name(self.context), cloud_name(self.context)
        if not self.context.options.get("controller"):
            lines.append(f"down: juju destroy-controller {controller} --no-prompt "
                         "--destroy-all-models --destroy-storage (the controller this run "
                         "bootstrapped into the cluster; fallback: juju kill-controller)")
        target = (f"--controller {self.context.options['controller']}"
                  if self.context.options.get("controller") else "--client")
        lines.append(f"down: juju remove-k8s {cloud} {target}; the cluster is left as it was")
        lines.append("collect: " + "; ".join(" ".join(argv) for argv in
                                              self._collect_commands()))
        return lines

    def up(self) -> Substrate:
        path = self.kubeconfig_path()
        if not path.is_file():
            raise ConfigError(f"no kubeconfig at {path}",
                              hint="pass --kubeconfig PATH or set `kubeconfig:` for the platform")
        context = self.settings.context or None
        from harness.kube import load_config

        config = load_config(path, context)
        try:
            from lightkube import Client
            from lightkube.resources.core_v1 import Node

            with Client(config) as client:
                nodes = list(client.list(Node))
        except Exception as exc:  # lightkube/httpx raise many types for an unreachable API
            raise InfrastructureError(
                f"the cluster of {path} does not answer: {redact(str(exc))[:300]}",
                hint="check the kubeconfig's server, credentials and context") from None
        return Substrate(name=self.context.platform.name, kubeconfig=path, kube_context=context,
                         details={"nodes": str(len(nodes)), "cluster_goes_away": "false"})

    def down(self) -> None:
        try:
            release_platform(self.context, timeout=float(self.context.options.get(
                "teardown_timeout") or 600), cluster_goes_away=False)
        except MatrixError as exc:
            raise InfrastructureError(exc.message, hint=exc.hint) from None

    def _collect_commands(self) -> list[list[str]]:
        base = kubectl_argv(self.kubeconfig_path(), self.settings.context or None, "default", [])
        base = base[: base.index("-n")]  # cluster-wide
        return [[*base, "version"], [*base, "get", "nodes", "-o", "wide"]]

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, argv in zip(("version.txt", "nodes.txt"), self._collect_commands(), strict=True):
            try:
                proc = run(argv, timeout=60, check=False)
                text = f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}"
            except MatrixError as exc:
                text = f"$ {' '.join(argv)}\n({exc.message})\n"
            (dest / name).write_text(redact(text), encoding="utf-8")

    @classmethod
    def release_recorded(cls, resource: dict[str, Any]) -> None:
        from harness.juju import release_recorded_juju

        if not release_recorded_juju(resource):
            raise InfrastructureError(f"no way to release a {resource['type']!r} resource")
