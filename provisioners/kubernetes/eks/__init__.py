"""`eks`: an Amazon EKS cluster per run (boto3), with Juju deploying the bundle onto it.

up:   STS GetCallerIdentity (credentials, before anything exists) → one CloudFormation stack
      (VPC, two public subnets, IGW, routes, the cluster/node/EBS-CSI IAM roles) → EKS cluster with
      access-entry auth → access entry + cluster-admin policy for the caller → managed nodegroup
      → addons `eks-pod-identity-agent` and `aws-ebs-csi-driver` (pod identity) → a static-token
      kubeconfig (presigned STS, what `aws eks get-token` makes) → default gp3 StorageClass.
down: nodegroup → addons → cluster → what Kubernetes leaked for the cluster (ELBs, security
      groups, ENIs, EBS volumes) → stack. Every step tolerates "not found": idempotent, also
      after a partial `up`, and the janitor runs the very same code from the tags.

Every resource carries the run's tags and is recorded in the run state before the call that
creates it, so `down`/`janitor` can release it after a crash. Waits use botocore's waiters (their
acceptors come from AWS's service model, so FAILED states end a wait at once) one attempt at a
time, which lets Ctrl-C through between polls; Delay and MaxAttempts follow the settings.

Modules: `settings` (EksSettings, names, errors), `stack` (the CloudFormation template), `token`
(the presigned-STS kubeconfig), `kube` (StorageClass and service account through the Kubernetes
API), `cluster` (`EksCluster`: the AWS calls, waits, teardown, sweep; no Juju), `provisioner`
(`EksProvisioner`: the `KubernetesProvisioner` hooks).

Endpoints: botocore's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` (how the tests point
it at moto on loopback); nothing here knows about them.
"""

from __future__ import annotations

from typing import Any

# Loaded on first use: `mlflow-matrix list` reads this kind's traits without importing boto3.
_EXPORTS = {
    "EksCluster": "cluster", "EksProvisioner": "provisioner", "stack_template": "stack",
    "kubeconfig_text": "token", "presigned_token": "token",
    **dict.fromkeys(("CLUSTER_ADMIN_POLICY", "EBS_CSI_ADDON", "POD_IDENTITY_ADDON",
                     "SERVICE_ACCOUNT", "TOKEN_PREFIX", "EksSettings", "Names"), "settings"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
