"""EKS settings, names, constants and the errors it raises (exit 2 / exit 3)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployments.juju.settings import JujuSettings
from provisioners.kubernetes.cloud import (
    CapacityError,
    CredentialsError,
    default_owner,
    resource_name,
)

CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
POD_IDENTITY_ADDON = "eks-pod-identity-agent"
EBS_CSI_ADDON = "aws-ebs-csi-driver"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
ADDONS = (POD_IDENTITY_ADDON, EBS_CSI_ADDON)
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_PROFILE", "AWS_REGION")
CREDENTIAL_ERRORS = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                     "SignatureDoesNotMatch", "UnrecognizedClientException", "AccessDenied",
                     "InvalidAccessKeyId", "AuthFailure", "RequestExpired"}
QUOTA_ERRORS = {"LimitExceededException", "LimitExceeded", "ResourceLimitExceededException",
                "ServiceQuotaExceededException", "VpcLimitExceeded", "AddressLimitExceeded",
                "InsufficientInstanceCapacity", "UnsupportedAvailabilityZoneException"}
QUOTA_WORDS = re.compile(r"LimitExceeded|InsufficientInstanceCapacity|InsufficientFreeAddresses|"
                         r"quota|capacity", re.IGNORECASE)
TOKEN_PREFIX = "k8s-aws-v1."
CNI_ENI_TAG_KEYS = ("node.k8s.amazonaws.com/createdAt", "eks:kubernetes-cni-node-name")
ENI_DETACH_WAIT = 300  # seconds an ENI may take to detach after its node is gone
SERVICE_ACCOUNT = "mlflow-matrix"  # kube-system, cluster-admin: the run's long-lived kubeconfig


@dataclass(frozen=True)
class EksSettings(JujuSettings):
    """matrix.yaml keys of an `eks` platform (plus the Juju keys every Kubernetes platform has)."""

    region: str = ""                    # empty: AWS_REGION / the profile's region
    kubernetes_version: str = "1.32"
    node_type: str = "m6i.xlarge"       # 4 vCPU / 16 GiB
    node_count: int = 2
    node_disk_gib: int = 50
    vpc_cidr: str = "10.42.0.0/16"
    storage_class: str = "gp3"          # created by `up`; `juju add-k8s --storage gp3`
    up_timeout: int = 2400              # the whole `up` (EKS: 40 min)
    down_timeout: int = 2700            # the whole `down` (EKS: 45 min)
    waiter_delay: float = 30.0          # botocore waiter Delay; MaxAttempts = timeout / Delay
    expires_after: int = 21600          # seconds until the expires tag (janitor may then sweep)
    owner: str = ""                     # owner tag; empty: MLFLOW_MATRIX_OWNER or the user name


CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for "
                    "temporary keys), or AWS_PROFILE naming a profile in ~/.aws; and AWS_REGION "
                    "(or `region:` in matrix.yaml)")
CAPACITY_HINT = ("raise the quota (Service Quotas console), pick another region or `node_type:` "
                 "in matrix.yaml, or retry later")


def credentials_error(detail: str) -> CredentialsError:
    """Exit 2, naming every variable botocore reads for credentials and region."""
    return CredentialsError("AWS", CREDENTIAL_VARIABLES, detail, hint=CREDENTIALS_HINT)


def capacity_error(what: str, detail: str) -> CapacityError:
    """Exit 3: a quota, a stockout or a capacity limit."""
    return CapacityError("AWS", what, detail, hint=CAPACITY_HINT)


def owner_tag(settings: EksSettings) -> str:
    """An AWS tag value: letters, digits, spaces and `_.:/=+-@`, at most 256 characters."""
    return re.sub(r"[^\w.:/=+@ -]", "-", settings.owner or default_owner())[:256]


@dataclass(frozen=True)
class Names:
    """Every name derives from the run id, so the janitor can rebuild them from a tag."""

    run_id: str

    @property
    def base(self) -> str:
        if self.run_id.startswith("<"):  # the plan's placeholder
            return f"mlflow-matrix-{self.run_id}"
        return resource_name(self.run_id, prefix="mlflow-matrix", limit=48)

    @property
    def stack(self) -> str:
        return self.base

    @property
    def cluster(self) -> str:
        return self.base

    @property
    def nodegroup(self) -> str:
        return f"{self.base}-ng"

    def role(self, purpose: str) -> str:
        return f"{self.base}-{purpose}"  # ≤ 48 + 8 characters: IAM allows 64
