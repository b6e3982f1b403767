"""`juju refresh` as the upgrade guides do it, and what tells that it has really happened.

The channel `juju status` shows changes the moment `juju refresh` returns; the unit keeps
running the old charm (`upgrading-from`) until Kubernetes replaces its pod. An upgrade is done
when every refreshed application shows a new charm revision, no unit is still upgrading, and
each refreshed application's pod is a new pod (new UID) that is Ready.

Juju refuses a refresh to a channel published only for another base (juju/juju#20830: the
2.15 charm runs on ubuntu 20.04, 2.22 on 24.04); that refusal is turned into a message naming
both bases and the Juju issue, which the known defect `juju-refresh-across-bases` matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jubilant

from deployments.juju.settings import REFRESH_ORDER, SERVER_APP
from harness.system.errors import InfrastructureError
from harness.system.waits import NotYet, wait_for

if TYPE_CHECKING:
    from harness.system.kube import Kube

CROSS_BASE_ISSUE = "https://github.com/juju/juju/issues/20830"
_NOT_FOUND_FOR_BASE = re.compile(r'charm or bundle not found for channel "(?P<channel>[^"]+)", '
                                 r'base "(?P<arch>[^/"]+)/(?P<os>[^/"]+)/(?P<version>[^"]+)"')
_AVAILABLE = re.compile(r'channel "(?P<channel>[^"]+)": available bases are: (?P<bases>.+)')


@dataclass(frozen=True)
class Before:
    """What ran before the refresh: each application's revision and its first pod's UID."""

    revisions: Mapping[str, int]
    pods: Mapping[str, str]


def refresh_targets(status: jubilant.Status, targets: Mapping[str, str]) -> dict[str, str]:
    """app → channel to refresh to, in the documented order (MinIO only when its channel
    changes, mlflow-server always)."""
    planned = {}
    for app in REFRESH_ORDER:
        target, current = targets.get(app), status.apps.get(app)
        if not target or current is None:
            continue
        if app != SERVER_APP and current.charm_channel == target:
            continue
        planned[app] = target
    return planned


def pod_of(app: str) -> str:
    """Sidecar charms: unit app/0 runs in pod app-0."""
    return f"{app}-0"


def before(status: jubilant.Status, apps: Mapping[str, str], kube: Kube) -> Before:
    uids = {}
    for app in apps:
        pod = kube.client.get(_pod_kind(), pod_of(app), namespace=kube.namespace)
        uids[app] = str(pod.metadata.uid if pod.metadata else "")
    return Before({app: status.apps[app].charm_rev for app in apps}, uids)


def wait_new_pods(kube: Kube, old: Before, *, timeout: float) -> None:
    """Each refreshed application's pod replaced (new UID) and Ready."""

    def replaced() -> None:
        for app, uid in old.pods.items():
            pod = kube.client.get(_pod_kind(), pod_of(app), namespace=kube.namespace)
            if str(pod.metadata.uid if pod.metadata else "") == uid:
                raise NotYet(f"pod {pod_of(app)} still runs the old charm")
            conditions = (pod.status.conditions or []) if pod.status else []
            if not any(c.type == "Ready" and c.status == "True" for c in conditions):
                raise NotYet(f"pod {pod_of(app)} replaced, not Ready yet")

    wait_for(replaced, what="the refreshed pods to be replaced and Ready", timeout=timeout,
             interval=kube.poll, hint="the pods' events are in diagnostics/")


def cross_base(app: str, error: jubilant.CLIError) -> InfrastructureError | None:
    """Juju's refusal of a refresh across bases, said plainly; None for any other error."""
    text = error.stderr or ""
    refused = _NOT_FOUND_FOR_BASE.search(text)
    if refused is None:
        return None
    channel = refused["channel"]
    published = next((m["bases"].strip() for m in _AVAILABLE.finditer(text)
                      if m["channel"] == channel), "")
    if not published:
        return None
    return InfrastructureError(
        f"juju refresh {app} --channel {channel} refused: {app} runs on "
        f"{refused['os']}@{refused['version']}, and {channel} is published for {published} only "
        f"— Juju cannot refresh a Kubernetes charm to another base (juju/juju#20830)",
        hint=f"a known Juju limitation ({CROSS_BASE_ISSUE}); the documented upgrade path "
             "cannot be run as written until Juju or the charm changes")


def _pod_kind() -> type:
    from lightkube.resources.core_v1 import Pod

    return Pod
