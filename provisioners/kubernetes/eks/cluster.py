"""`EksCluster`: the AWS side of one run (create, delete, plan, collect, sweep); no Juju."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import boto3

from harness.system.errors import InfrastructureError
from provisioners.api import SweptResource
from provisioners.kubernetes.cloud import (
    TAG_CREATED,
    TAG_RUN,
    TaggedResource,
    run_tags,
    sweep_resources,
    utc_now,
)
from provisioners.kubernetes.eks.describe import ClusterDescription
from provisioners.kubernetes.eks.kube import prepare_cluster, write_private
from provisioners.kubernetes.eks.leaks import KubernetesLeaks
from provisioners.kubernetes.eks.settings import (
    ADDONS,
    CLUSTER_ADMIN_POLICY,
    EBS_CSI_ADDON,
    EBS_CSI_SERVICE_ACCOUNT,
    SERVICE_ACCOUNT,
    EksSettings,
    Names,
    owner_tag,
)
from provisioners.kubernetes.eks.stack import _tag_list, stack_template
from provisioners.kubernetes.eks.token import kubeconfig_text, presigned_token


class EksCluster(KubernetesLeaks, ClusterDescription):
    """The AWS side of one run: create, delete, plan, collect, sweep. Knows nothing of Juju.

    Split by resource family: AWS access (aws.py), leaked Kubernetes resources (leaks.py),
    plan/collect text (describe.py); the stack, cluster, nodegroup and addons are here.

    `record(kind, **data)` / `update(rid, **data)` / `release(rid)` are the run state's; the
    janitor passes a throwaway state (deletion by names needs no record).
    """

    kind: ClassVar[str] = "eks"

    def __init__(self, settings: EksSettings, run_id: str, *, state: Any = None,
                 work_dir: Path | None = None, created: datetime | None = None,
                 session: boto3.session.Session | None = None, log: Callable[[str], None] = print,
                 ) -> None:
        self.settings = settings
        self.names = Names(run_id)
        self.run_id = run_id
        self.state = state
        self.work_dir = work_dir or Path.cwd()
        self.created = created or utc_now()
        self.tags = run_tags(run_id, owner=owner_tag(settings), now=self.created,
                             ttl=timedelta(seconds=settings.expires_after))
        self._session = session
        self._clients: dict[str, Any] = {}
        self._rid: str | None = None
        self.log = log
        self.identity: dict[str, Any] = {}

    # -- recording

    @property
    def recorded(self) -> bool:
        """Whether this object asked AWS to create anything (else `down` has nothing to do)."""
        return self._rid is not None

    def _record(self, step: str) -> None:
        """Note in the run state what is about to exist, before the call that creates it."""
        if self.state is None:
            return
        if self._rid is None:
            self._rid = self.state.add("eks-cluster", kind=self.kind, name=self.names.cluster,
                                       run_id=self.run_id, region=self.region,
                                       stack=self.names.stack, nodegroup=self.names.nodegroup,
                                       created=self.tags[TAG_CREATED], steps=[step])
        else:
            steps = next(r.data for r in self.state.resources() if r.id == self._rid)["steps"]
            self.state.update(self._rid, steps=[*steps, step])

    # -- up

    def create(self) -> Path:
        """Stack → cluster → access → nodegroup → addons → kubeconfig → StorageClass."""
        s = self.settings
        deadline = time.monotonic() + s.up_timeout
        if not self.identity:
            self.check_credentials()
        names = self.names
        cfn, eks = self.client("cloudformation"), self.client("eks")

        self.log(f"eks: stack {names.stack} (VPC, subnets, IAM roles) in {self.region}")
        self._record("stack")
        self._call("create the CloudFormation stack", cfn.create_stack,
                   StackName=names.stack,
                   TemplateBody=json.dumps(stack_template(names, s, self.tags)),
                   Capabilities=["CAPABILITY_NAMED_IAM"], OnFailure="DELETE",
                   Tags=_tag_list(self.tags))
        self.wait("cloudformation", "stack_create_complete", f"stack {names.stack}", deadline,
                  StackName=names.stack)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in
                   cfn.describe_stacks(StackName=names.stack)["Stacks"][0].get("Outputs", [])}

        self.log(f"eks: cluster {names.cluster} (Kubernetes {s.kubernetes_version})")
        self._record("cluster")
        self._call("create the EKS cluster", eks.create_cluster, **self.cluster_request(outputs))
        self.wait("eks", "cluster_active", f"cluster {names.cluster}", deadline,
                  name=names.cluster)

        principal = self.principal_arn()
        self._record("access-entry")
        self._call("create the access entry", eks.create_access_entry,
                   clusterName=names.cluster, principalArn=principal, type="STANDARD",
                   tags=self.tags)
        self._call("associate the cluster-admin access policy", eks.associate_access_policy,
                   clusterName=names.cluster, principalArn=principal,
                   policyArn=CLUSTER_ADMIN_POLICY.format(partition=self.partition),
                   accessScope={"type": "cluster"})

        self.log(f"eks: nodegroup {names.nodegroup} ({s.node_count} × {s.node_type})")
        self._record("nodegroup")
        self._call("create the managed nodegroup", eks.create_nodegroup,
                   **self.nodegroup_request(outputs))
        self.wait("eks", "nodegroup_active", f"nodegroup {names.nodegroup}", deadline,
                  clusterName=names.cluster, nodegroupName=names.nodegroup)

        for addon in ADDONS:
            self.log(f"eks: addon {addon}")
            self._record(f"addon:{addon}")
            self._call(f"create the {addon} addon", eks.create_addon,
                       **self.addon_request(addon, outputs))
            self.wait("eks", "addon_active", f"addon {addon}", deadline,
                      clusterName=names.cluster, addonName=addon)

        bootstrap = self.write_kubeconfig()
        self.log(f"eks: default StorageClass {s.storage_class} (gp3, EBS CSI), service account "
                 f"{SERVICE_ACCOUNT}")
        try:
            return prepare_cluster(bootstrap, self.kubeconfig_path, self.settings, deadline)
        finally:
            bootstrap.unlink(missing_ok=True)

    def cluster_request(self, outputs: Mapping[str, str]) -> dict[str, Any]:
        return {
            "name": self.names.cluster, "version": self.settings.kubernetes_version,
            "roleArn": outputs.get("ClusterRoleArn", "<stack output ClusterRoleArn>"),
            "resourcesVpcConfig": {
                "subnetIds": outputs.get("SubnetIds", "<stack output SubnetIds>").split(","),
                "endpointPublicAccess": True, "endpointPrivateAccess": True},
            "accessConfig": {"authenticationMode": "API",
                             "bootstrapClusterCreatorAdminPermissions": False},
            "tags": self.tags,
        }

    def nodegroup_request(self, outputs: Mapping[str, str]) -> dict[str, Any]:
        s = self.settings
        return {
            "clusterName": self.names.cluster, "nodegroupName": self.names.nodegroup,
            "scalingConfig": {"minSize": s.node_count, "maxSize": s.node_count,
                              "desiredSize": s.node_count},
            "subnets": outputs.get("SubnetIds", "<stack output SubnetIds>").split(","),
            "instanceTypes": [s.node_type], "amiType": "AL2023_x86_64_STANDARD",
            "capacityType": "ON_DEMAND", "diskSize": s.node_disk_gib,
            "nodeRole": outputs.get("NodeRoleArn", "<stack output NodeRoleArn>"),
            "labels": {TAG_RUN: re.sub(r"[^A-Za-z0-9._-]", "-", self.run_id)[:63]},
            "tags": self.tags,
        }

    def addon_request(self, addon: str, outputs: Mapping[str, str]) -> dict[str, Any]:
        request: dict[str, Any] = {"clusterName": self.names.cluster, "addonName": addon,
                                   "resolveConflicts": "OVERWRITE", "tags": self.tags}
        if addon == EBS_CSI_ADDON:
            request["podIdentityAssociations"] = [{
                "serviceAccount": EBS_CSI_SERVICE_ACCOUNT,
                "roleArn": outputs.get("EbsCsiRoleArn", "<stack output EbsCsiRoleArn>")}]
            # volumes the driver creates carry the run's tags, so a sweep finds leaked ones
            request["configurationValues"] = json.dumps({"controller": {
                "extraVolumeTags": self.tags, "k8sTagClusterId": self.names.cluster}})
        return request

    # -- kubeconfig and the StorageClass

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    @property
    def bootstrap_kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig-sts"

    def write_kubeconfig(self) -> Path:
        """A fresh static-token kubeconfig (no exec plugin: the juju snap cannot run one)."""
        cluster = self.client("eks").describe_cluster(name=self.names.cluster)["cluster"]
        token = presigned_token(self.client("sts"), self.names.cluster)  # registered as secret
        return write_private(self.bootstrap_kubeconfig_path, kubeconfig_text(cluster, token))

    # -- down

    def delete(self, *, timeout: float | None = None) -> list[str]:
        """Release everything of this run that still exists; returns what was deleted."""
        deadline = time.monotonic() + (timeout or self.settings.down_timeout)
        names, eks, cfn = self.names, self.client("eks"), self.client("cloudformation")
        done: list[str] = []
        cluster = self._describe(lambda: eks.describe_cluster(name=names.cluster)["cluster"])
        if cluster is not None and not self._ours(cluster.get("tags")):
            raise InfrastructureError(f"cluster {names.cluster} does not carry "
                                      f"{TAG_RUN}={self.run_id}; left alone")
        if cluster is not None:
            ng = self._describe(lambda: eks.describe_nodegroup(
                clusterName=names.cluster, nodegroupName=names.nodegroup)["nodegroup"])
            if ng is not None:
                if ng.get("status") != "DELETING":
                    self._delete(lambda: eks.delete_nodegroup(clusterName=names.cluster,
                                                              nodegroupName=names.nodegroup))
                self.wait("eks", "nodegroup_deleted", f"deletion of nodegroup {names.nodegroup}",
                          deadline, cancellable=False, clusterName=names.cluster,
                          nodegroupName=names.nodegroup)
                done.append(f"nodegroup {names.nodegroup}")
            for addon in reversed(ADDONS):
                if self._describe(lambda a=addon: eks.describe_addon(
                        clusterName=names.cluster, addonName=a)["addon"]) is None:
                    continue
                self._delete(lambda a=addon: eks.delete_addon(clusterName=names.cluster,
                                                              addonName=a))
                self.wait("eks", "addon_deleted", f"deletion of addon {addon}", deadline,
                          cancellable=False,
                          clusterName=names.cluster, addonName=addon)
                done.append(f"addon {addon}")
            if cluster.get("status") != "DELETING":
                self._delete(lambda: eks.delete_cluster(name=names.cluster))
            self.wait("eks", "cluster_deleted", f"deletion of cluster {names.cluster}", deadline,
                      cancellable=False, name=names.cluster)
            done.append(f"cluster {names.cluster}")
        stack = self._describe(lambda: cfn.describe_stacks(StackName=names.stack)["Stacks"][0])
        vpc_id = next((o["OutputValue"] for o in (stack or {}).get("Outputs", [])
                       if o["OutputKey"] == "VpcId"), None)
        done += self.delete_leaks(vpc_id, deadline)
        if stack is not None and stack.get("StackStatus") != "DELETE_COMPLETE":
            if not self._ours({t["Key"]: t["Value"] for t in stack.get("Tags", [])}):
                raise InfrastructureError(f"stack {names.stack} does not carry "
                                          f"{TAG_RUN}={self.run_id}; left alone")
            self._delete(lambda: cfn.delete_stack(StackName=names.stack))
            self.wait("cloudformation", "stack_delete_complete",
                      f"deletion of stack {names.stack}", deadline, cancellable=False,
                      StackName=names.stack)
            done.append(f"stack {names.stack}")
        self.kubeconfig_path.unlink(missing_ok=True)
        self.bootstrap_kubeconfig_path.unlink(missing_ok=True)
        if self.state is not None:
            for record in self.state.resources():
                if record.id == self._rid or (record.type == "eks-cluster"
                                              and record.data.get("run_id") == self.run_id):
                    self.state.release(record.id)
            self._rid = None
        return done

    def _ours(self, tags: Mapping[str, str] | None) -> bool:
        return (tags or {}).get(TAG_RUN) == self.run_id

    # -- janitor

    @classmethod
    def sweep(cls, settings: EksSettings, *, older_than: timedelta | None, dry_run: bool,
              progress: Callable[[str], None], now: datetime | None = None,
              session: boto3.session.Session | None = None) -> list[SweptResource]:
        """Runs whose cluster or stack carries `mlflow-matrix-run` and is due (expired, or older
        than `older_than`), each deleted with `delete` — the code `down` runs. A cluster is
        listed for its run; a stack only when its run has no cluster left (a half-made or
        half-deleted run). Nothing without our tag is ever listed."""
        probe = cls(settings, "janitor", session=session, log=progress)
        probe.check_credentials()
        found: dict[str, TaggedResource] = {}
        eks, cfn = probe.client("eks"), probe.client("cloudformation")
        for page in eks.get_paginator("list_clusters").paginate():
            for name in page["clusters"]:
                tags = probe._describe(lambda n=name: eks.describe_cluster(name=n)["cluster"]
                                       .get("tags") or {}) or {}
                resource = TaggedResource("eks-cluster", name, tags)
                if resource.ours:
                    found.setdefault(resource.run_id, resource)
        for page in cfn.get_paginator("describe_stacks").paginate():
            for stack in page["Stacks"]:
                resource = TaggedResource("cloudformation-stack", stack["StackName"],
                                          {t["Key"]: t["Value"] for t in stack.get("Tags", [])})
                if resource.ours and stack.get("StackStatus") != "DELETE_COMPLETE":
                    found.setdefault(resource.run_id, resource)

        def delete(resource: TaggedResource) -> None:
            run = cls(settings, resource.run_id, session=probe.session, log=progress)
            run.identity = probe.identity
            for what in run.delete():
                progress(f"  {what} gone")

        ordered = sorted(found.values(), key=lambda r: (r.kind != "eks-cluster", r.run_id))
        return sweep_resources(ordered, delete, older_than=older_than, dry_run=dry_run,
                               progress=progress, now=now)

    @classmethod
    def release_recorded(cls, resource: Mapping[str, Any], settings: EksSettings | None = None
                         ) -> None:
        """A crashed run's `eks-cluster` record: delete by its names (tag-checked)."""
        base = settings or EksSettings()
        settings = EksSettings(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                                  "region": str(resource.get("region") or base.region)})
        cls(settings, str(resource["run_id"])).delete()


