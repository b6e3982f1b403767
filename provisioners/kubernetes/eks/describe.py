"""What `plan` prints for an EKS run and what `collect` writes: the exact AWS calls, waiters
and budgets, and the describe calls for diagnostics. A mixin of `EksCluster`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions as bexc

from harness.system.redact import redact
from provisioners.kubernetes.cloud import TAG_RUN
from provisioners.kubernetes.eks.aws import AwsAccess
from provisioners.kubernetes.eks.settings import (
    ADDONS,
    CLUSTER_ADMIN_POLICY,
    CNI_ENI_TAG_KEYS,
    EBS_CSI_ADDON,
    EBS_CSI_SERVICE_ACCOUNT,
    ENI_DETACH_WAIT,
    POD_IDENTITY_ADDON,
    SERVICE_ACCOUNT,
    Names,
)


class ClusterDescription(AwsAccess):
    """`plan_lines`, `down_plan_lines`, `collect_lines` and `collect`."""

    names: Names
    run_id: str
    tags: dict[str, str]
    kubeconfig_path: Path
    bootstrap_kubeconfig_path: Path

    def plan_lines(self) -> list[str]:
        s, n = self.settings, self.names
        up = s.up_timeout
        delay = s.waiter_delay

        def waiter(service: str, waiter_name: str, budget: int, **params: str) -> str:
            args = ", ".join(f"{k}={v}" for k, v in params.items())
            return (f"  wait: {service} waiter {waiter_name}({args}) Delay={delay:g} "
                    f"MaxAttempts={self.attempts(budget)} (within the {budget}s budget; a "
                    "failure state ends it at once)")

        tags = ", ".join(f"{k}={v}" for k, v in self.tags.items())
        region = self.settings.region or "$AWS_REGION"
        lines = [
            f"sts get_caller_identity   (credentials checked first; region {region})",
            f"tags on every resource: {tags}",
            f"cloudformation create_stack StackName={n.stack} Capabilities=[CAPABILITY_NAMED_IAM] "
            f"OnFailure=DELETE   (VPC {s.vpc_cidr}, 2 public subnets in 2 zones, internet gateway, "
            f"routes, roles {n.role('cluster')}, {n.role('node')}, {n.role('ebs-csi')}; "
            "recorded in the run state first)",
            waiter("cloudformation", "stack_create_complete", up, StackName=n.stack),
            f"eks create_cluster name={n.cluster} version={s.kubernetes_version} "
            "accessConfig.authenticationMode=API bootstrapClusterCreatorAdminPermissions=false "
            "endpointPublicAccess=true",
            waiter("eks", "cluster_active", up, name=n.cluster),
            f"eks create_access_entry clusterName={n.cluster} principalArn=<caller's IAM "
            "principal> type=STANDARD",
            f"eks associate_access_policy policyArn={CLUSTER_ADMIN_POLICY.format(partition='aws')}"
            " accessScope=cluster",
            f"eks create_nodegroup nodegroupName={n.nodegroup} instanceTypes=[{s.node_type}] "
            f"scaling={s.node_count}/{s.node_count}/{s.node_count} diskSize={s.node_disk_gib} "
            "amiType=AL2023_x86_64_STANDARD capacityType=ON_DEMAND",
            waiter("eks", "nodegroup_active", up, clusterName=n.cluster,
                   nodegroupName=n.nodegroup),
            f"eks create_addon addonName={POD_IDENTITY_ADDON}",
            waiter("eks", "addon_active", up, addonName=POD_IDENTITY_ADDON),
            f"eks create_addon addonName={EBS_CSI_ADDON} podIdentityAssociations="
            f"[{EBS_CSI_SERVICE_ACCOUNT} → {n.role('ebs-csi')}] configurationValues="
            "{controller: {extraVolumeTags: <run tags>}}",
            waiter("eks", "addon_active", up, addonName=EBS_CSI_ADDON),
            f"eks describe_cluster → {self.bootstrap_kubeconfig_path} (mode 600, removed after "
            "use): static token = k8s-aws-v1.<presigned STS GetCallerIdentity, header "
            "x-k8s-aws-id> (no exec plugin: the juju snap cannot run one)",
            f"kubernetes POST /apis/storage.k8s.io/v1/storageclasses {s.storage_class} "
            "(ebs.csi.aws.com, type gp3, default class, WaitForFirstConsumer)",
            f"kubernetes POST ServiceAccount kube-system/{SERVICE_ACCOUNT}, ClusterRoleBinding "
            f"{SERVICE_ACCOUNT} → cluster-admin, Secret kube-system/{SERVICE_ACCOUNT} "
            "(kubernetes.io/service-account-token); wait for its token",
            f"→ {self.kubeconfig_path} (mode 600) with that token: the run's kubeconfig, for "
            "Juju and the harness (does not expire like the STS token; goes with the cluster)",
        ]
        return lines

    def down_plan_lines(self) -> list[str]:
        n, budget = self.names, self.settings.down_timeout
        key = f"kubernetes.io/cluster/{n.cluster}"
        return [
            f"down: eks delete_nodegroup {n.nodegroup}; waiter nodegroup_deleted "
            f"Delay={self.settings.waiter_delay:g} MaxAttempts={self.attempts(budget)}",
            *(f"down: eks delete_addon {a}; waiter addon_deleted" for a in reversed(ADDONS)),
            f"down: eks delete_cluster {n.cluster}; waiter cluster_deleted",
            f"down: elb/elbv2 delete_load_balancer for every load balancer tagged {key}",
            f"down: ec2 delete_network_interface (once detached, up to {ENI_DETACH_WAIT}s) / "
            f"delete_volume (available) tagged {key}, cluster.k8s.amazonaws.com/name={n.cluster}"
            f" or {TAG_RUN}={self.run_id}; ENIs in the stack's VPC with the VPC CNI's tag keys "
            f"{', '.join(CNI_ENI_TAG_KEYS)}",
            f"down: ec2 delete_security_group tagged {key}",
            f"down: cloudformation delete_stack {n.stack}; waiter stack_delete_complete "
            f"(all within down_timeout {budget}s; each step skips what is already gone)",
        ]

    def collect_lines(self) -> list[str]:
        n = self.names
        return [f"collect: eks describe_cluster {n.cluster}, describe_nodegroup {n.nodegroup}, "
                f"describe_addon {', '.join(ADDONS)}; cloudformation describe_stack_events "
                f"{n.stack} → eks-*.json"]

    # -- collect

    def collect(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        eks, n = self.client("eks"), self.names
        calls: dict[str, Callable[[], Any]] = {
            "eks-cluster.json": lambda: eks.describe_cluster(name=n.cluster)["cluster"],
            "eks-nodegroup.json": lambda: eks.describe_nodegroup(
                clusterName=n.cluster, nodegroupName=n.nodegroup)["nodegroup"],
            "eks-stack-events.json": lambda: self.client("cloudformation").describe_stack_events(
                StackName=n.stack)["StackEvents"][:100],
        }
        for addon in ADDONS:
            calls[f"eks-addon-{addon}.json"] = lambda a=addon: eks.describe_addon(
                clusterName=n.cluster, addonName=a)["addon"]
        for name, fn in calls.items():
            try:
                body: Any = fn()
            except (bexc.BotoCoreError, bexc.ClientError) as exc:
                body = {"error": str(exc)}
            (dest / name).write_text(redact(json.dumps(body, indent=2, default=str)),
                                     encoding="utf-8")
