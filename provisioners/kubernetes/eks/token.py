"""The static-token kubeconfig: a presigned STS GetCallerIdentity, as `aws eks get-token` makes."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import yaml

from harness.system.redact import register_secret
from provisioners.kubernetes.eks.settings import TOKEN_PREFIX


def presigned_token(sts: Any, cluster: str) -> str:
    """A bearer token for the EKS API server: STS GetCallerIdentity presigned with the
    `x-k8s-aws-id` header, as `aws eks get-token` makes it (valid ~15 minutes server-side)."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster

    sts.meta.events.register_first("before-sign.sts.GetCallerIdentity", add_header,
                                   unique_id=f"mlflow-matrix-k8s-aws-id-{cluster}")
    try:
        url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60,
                                         HttpMethod="GET")
    finally:
        sts.meta.events.unregister("before-sign.sts.GetCallerIdentity",
                                   unique_id=f"mlflow-matrix-k8s-aws-id-{cluster}")
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    register_secret(token)
    return token


def kubeconfig_text(cluster: Mapping[str, Any], token: str) -> str:
    name = str(cluster["name"])
    body = {
        "apiVersion": "v1", "kind": "Config", "current-context": name, "preferences": {},
        "clusters": [{"name": name, "cluster": {
            "server": cluster["endpoint"],
            "certificate-authority-data": cluster["certificateAuthority"]["data"]}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    return yaml.safe_dump(body, sort_keys=False)
