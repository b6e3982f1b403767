"""The Juju steps of one cell, as `mlflow-matrix plan` prints them; no side effects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deployments.juju.bundle import BundleSource, _juju_data_dir, bundle_channels, charm_plan, read_bundle
from deployments.juju.names import _timeout, cloud_name, controller_name, model_name
from deployments.juju.settings import (
    BUNDLE_APPS,
    COS_AGENT_APP,
    COS_AGENT_UNIT,
    COS_INTEGRATIONS,
    DEFAULT_DEPLOY_TIMEOUT,
    DEFAULT_TEARDOWN_TIMEOUT,
    FORCE_DESTROY_STEP_TIMEOUT,
    MINIO_APP,
    MINIO_ARTIFACT_SECRET,
    MYSQL_APP,
    SERVER_APP,
    STATUS_LOG_ENTRIES,
    JujuSettings,
    bootstrap_config,
    juju_settings,
)
from harness.system.errors import InfrastructureError

if TYPE_CHECKING:
    from harness.config.model import Cell, Channel
    from provisioners.api import RunContext


def cell_plan(context: RunContext, cell: Cell) -> list[str]:
    """The Juju (and Kubernetes API) steps of one cell, in order; no side effects."""
    sections = cell_sections(context, cell)
    restart = sections["restart"] if "persistence" in cell.scenarios and not cell.upgrade_to \
        else []
    return [*sections["deploy"], *sections["upgrade"], *restart, *sections["close"]]


def cell_sections(context: RunContext, cell: Cell) -> dict[str, list[str]]:
    """The plan by step (deploy, upgrade, restart, close), for `mlflow-matrix plan` to place
    each one where the cell's step list (harness.run.cell_steps) runs it."""
    s = juju_settings(context.platform.settings)
    cloud, controller = cloud_name(context), controller_name(context)
    model = model_name(context, cell.id)
    ref = f"{controller}:{model}"
    deploy_t = int(_timeout(context, "deploy_timeout", DEFAULT_DEPLOY_TIMEOUT))
    teardown_t = int(_timeout(context, "teardown_timeout", DEFAULT_TEARDOWN_TIMEOUT))
    given = context.options.get("controller")
    add_k8s = f"juju add-k8s {cloud} " + (f"--controller {given}" if given else "--client")
    if s.storage_class:
        add_k8s += f" --storage {s.storage_class}"
    lines = [f"once per platform: {add_k8s}   (the platform's kubeconfig on stdin)"]
    if given:
        lines.append(f"once per platform: reuse Juju controller {given} (--controller)")
    else:
        config = "".join(f" --config {value}" for value in bootstrap_config(s))
        lines.append(f"once per platform: juju bootstrap {cloud} {controller} --no-switch{config}"
                     f"   (deadline {s.bootstrap_timeout}s)")
    lines.append(f"juju add-model --no-switch {model} {cloud} --controller {controller}")
    lines += _deploy_plan(cell.channel, s, ref)
    wait = (f"juju status --model {ref} --format json every {s.poll_interval:g}s until every "
            f"unit of {', '.join(BUNDLE_APPS)} is active/idle {s.successes} polls in a row "
            f"(deadline timeouts.deploy = {deploy_t}s)")
    lines.append(f"wait: {wait}; a unit in error, or blocked for more than "
                 f"{s.blocked_grace}s, ends the wait at once with its message and"
                 f" `juju show-status-log --model {ref} <unit> -n {STATUS_LOG_ENTRIES}`")
    lines += _endpoint_plan(ref, model, s)
    lines += _cos_plan(ref, s, deploy_t)
    upgrade = []
    if cell.upgrade_to:
        upgrade = [*_refresh_plan(cell.upgrade_to, ref),
                   f"wait as after deploy until {SERVER_APP} runs {cell.upgrade_to.name}, "
                   "then GET <tracking-uri>/version again"]
    restart = [f"delete pod {SERVER_APP}-0 through the Kubernetes API, wait for its "
               f"replacement to be Ready, then {wait}; then find the endpoint again"]
    close = [
        f"diagnostics (on a failed phase and after the scenarios): juju status "
        f"--model {ref} --format yaml; juju debug-log --model {ref} --replay "
        f"--no-tail (newest {s.debug_log_lines} lines); juju show-status-log per "
        f"unit; kubectl get all -o wide / describe pods -n {model}; logs of every"
        " container not running and ready — all redacted",
        f"teardown: juju destroy-model {ref} --no-prompt --destroy-storage "
        f"(deadline {teardown_t}s); if that fails: juju destroy-model {ref} "
        f"--no-prompt --destroy-storage --force --no-wait --timeout "
        f"{FORCE_DESTROY_STEP_TIMEOUT}s"]
    return {"deploy": lines, "upgrade": upgrade, "restart": restart, "close": close}


def _deploy_plan(channel: Channel, s: JujuSettings, ref: str) -> list[str]:
    source = BundleSource.of(channel)
    if source.kind == "charms":
        lines = [f"juju deploy --model {ref} {charm} {app} --channel {ch} --trust"
                 + (" " + " ".join(extra) if extra else "")
                 for charm, app, ch, extra in charm_plan(channel, s)]
        lines += [f"juju integrate --model {ref} {SERVER_APP} {other}"
                  for other in (MINIO_APP, MYSQL_APP)]
        return lines
    bundle = f"{_juju_data_dir()}/mlflow-matrix-<run-id>-<random>/bundle.yaml"
    fetch = (f"download {source.location} → {bundle}" if source.kind == "url"
             else f"copy {source.location} → {bundle}")
    return [fetch + " (checked: a bundle with mlflow-server and mlflow-minio; removed once "
            "deployed)", f"juju deploy --model {ref} {bundle} --trust"]


def _refresh_plan(channel: Channel, ref: str) -> list[str]:
    source = BundleSource.of(channel)
    if source.kind == "charms":
        minio = "<minio_channel setting>"
        server = channel.name
    elif source.kind == "file":
        try:
            channels = bundle_channels(read_bundle(Path(source.location)))
        except InfrastructureError:
            channels = {}
        minio = channels.get(MINIO_APP, "<mlflow-minio channel of the target bundle>")
        server = channels.get(SERVER_APP, channel.name)
    else:
        minio = f"<mlflow-minio channel in {source.location}>"
        server = f"<mlflow-server channel in the same bundle, normally {channel.name}>"
    return [f"juju refresh --model {ref} {MINIO_APP} --channel {minio}   (skipped when the "
            "channel is unchanged)",
            f"juju refresh --model {ref} {SERVER_APP} --channel {server}"]


def _endpoint_plan(ref: str, model: str, s: JujuSettings) -> list[str]:
    reach = {
        "nodeport": "the node's InternalIP and the Service's nodePort (a NodePort Service "
                    "mm-<app>-nodeport is created when the charm's Service has none)",
        "loadbalancer": "a LoadBalancer Service mm-<app>-lb with the charm Service's selector; "
                        "wait for its ingress address",
        "port-forward": "an in-process port-forward (Kubernetes API websocket) to the pod "
                        "behind the Service",
    }[s.access]
    return [
        f"juju config --model {ref} --format json {SERVER_APP}   (mlflow_port, "
        "default_artifact_root)",
        f"juju show-unit --model {ref} {SERVER_APP}/0 --format json → MinIO keys from the "
        "object-storage relation data (else `juju run mlflow-server/0 get-minio-credentials`,"
        f" else Secret {MINIO_ARTIFACT_SECRET}); registered as secrets, never printed",
        f"Kubernetes API (lightkube), namespace {model}: Services {SERVER_APP} and {MINIO_APP}"
        f" reached by {reach}",
        f"GET <tracking-uri>/version until it answers (deadline {s.endpoint_timeout}s) → "
        "the server's MLflow version",
    ]


def _cos_plan(ref: str, s: JujuSettings, deploy_t: int) -> list[str]:
    if not s.cos_check:
        return ["COS relation check skipped (cos_check: false): no grafana-agent-k8s is "
                "deployed, metrics-endpoint and grafana-dashboard data are not read"]
    return [
        f"juju deploy --model {ref} {COS_AGENT_APP} --channel {s.cos_agent_channel} --trust",
        *(f"juju integrate --model {ref} {provider} {consumer}"
          for provider, consumer in COS_INTEGRATIONS),
        f"wait as after deploy until every unit of {', '.join((*BUNDLE_APPS, COS_AGENT_APP))} "
        f"is idle and active ({COS_AGENT_APP}: active or blocked, it has nowhere to forward "
        f"to) (deadline timeouts.deploy = {deploy_t}s)",
        f"juju show-unit --model {ref} {COS_AGENT_UNIT} --format json → {SERVER_APP}'s "
        "metrics-endpoint data (scrape_jobs with /metrics on mlflow_port, scrape_metadata, "
        "alert_rules) and grafana-dashboard data (dashboards that decode); anything missing "
        "fails the deploy phase",
    ]


def platform_down_plan(context: RunContext) -> list[str]:
    """What a Kubernetes provisioner's `down` does in Juju before the cluster goes."""
    controller, cloud = controller_name(context), cloud_name(context)
    given = context.options.get("controller")
    lines = []
    if not given:
        lines.append(f"down: juju destroy-controller {controller} --no-prompt "
                     "--destroy-all-models --destroy-storage (fallback: juju "
                     f"kill-controller {controller} --no-prompt --timeout 60s)")
    target = f"--controller {given}" if given else "--client"
    lines.append(f"down: juju remove-k8s {cloud} {target}")
    return lines
