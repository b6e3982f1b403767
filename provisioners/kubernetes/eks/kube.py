"""The Kubernetes side of `up`: with the STS-token kubeconfig, create the default gp3
StorageClass and a cluster-admin service account, and hand out a kubeconfig with that account's
token (the STS token lives ~15 minutes; this one lasts as long as the cluster)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import yaml

from harness.system.errors import InfrastructureError, MatrixError
from harness.system.redact import redact, register_secret
from harness.system.waits import DeadlineExceeded
from provisioners.kubernetes.cloud import write_private
from provisioners.kubernetes.eks.settings import SERVICE_ACCOUNT, EksSettings

MANAGED_BY = {"app.kubernetes.io/managed-by": "mlflow-matrix"}




def storage_class(name: str) -> dict[str, Any]:
    """The default class the bundle's PVCs get: EBS gp3 through the EBS CSI driver."""
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "labels": MANAGED_BY, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "fsType": "ext4"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def service_account_objects() -> list[dict[str, Any]]:
    """A cluster-admin service account and a Secret the token controller fills with its token."""
    meta = {"name": SERVICE_ACCOUNT, "namespace": "kube-system", "labels": MANAGED_BY}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": SERVICE_ACCOUNT, "labels": MANAGED_BY},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                       "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {**meta, "annotations": {
             "kubernetes.io/service-account.name": SERVICE_ACCOUNT}}},
    ]


def prepare_cluster(bootstrap: Path, kubeconfig: Path, settings: EksSettings,
                    deadline: float) -> Path:
    """Create the objects with the `bootstrap` kubeconfig (409: already there is fine), wait for
    the token, write `kubeconfig` with it; returns that path."""
    from lightkube import Client, KubeConfig
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Secret, ServiceAccount
    from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
    from lightkube.resources.storage_v1 import StorageClass

    kinds = {"StorageClass": StorageClass, "ServiceAccount": ServiceAccount,
             "ClusterRoleBinding": ClusterRoleBinding, "Secret": Secret}
    objects = [storage_class(settings.storage_class), *service_account_objects()]
    timeout = max(1.0, min(30.0, deadline - time.monotonic()))
    try:
        with Client(KubeConfig.from_file(bootstrap), trust_env=False, timeout=timeout) as client:
            for body in objects:
                obj = kinds[body["kind"]].from_dict(body)  # type: ignore[attr-defined]
                try:
                    client.create(obj)
                except ApiError as exc:
                    if exc.status.code != 409:
                        raise InfrastructureError(
                            f"creating {body['kind']} {body['metadata']['name']} failed: "
                            f"{exc.status.message}") from None

            def minted() -> str:
                secret = client.get(Secret, SERVICE_ACCOUNT, namespace="kube-system")
                return base64.b64decode((secret.data or {}).get("token", "")).decode()

            token = minted()
            while not token:
                if time.monotonic() > deadline:
                    raise DeadlineExceeded("timed out waiting for the service-account token of "
                                           f"{SERVICE_ACCOUNT}")
                time.sleep(min(2.0, settings.waiter_delay))
                token = minted()
    except MatrixError:
        raise
    except Exception as exc:  # httpx transport errors, a bad kubeconfig
        raise InfrastructureError(f"the cluster's API server did not answer: "
                                  f"{redact(str(exc))}") from None
    register_secret(token)
    config = yaml.safe_load(bootstrap.read_text(encoding="utf-8"))
    config["users"][0]["user"] = {"token": token}
    return write_private(kubeconfig, yaml.safe_dump(config, sort_keys=False))
