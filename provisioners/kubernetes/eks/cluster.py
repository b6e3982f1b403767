"""`EksCluster`: the AWS side of one run (create, delete, plan, collect, sweep); no Juju."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from harness.system.errors import ConfigError, InfrastructureError, Interrupted
from harness.system.redact import redact
from harness.system.waits import CANCEL, DeadlineExceeded
from provisioners.api import SweptResource
from provisioners.kubernetes.cloud import (
    TAG_CREATED,
    TAG_RUN,
    TaggedResource,
    run_tags,
    sweep_resources,
    utc_now,
)
from provisioners.kubernetes.eks.kube import prepare_cluster, write_private
from provisioners.kubernetes.eks.settings import (
    ADDONS,
    CLUSTER_ADMIN_POLICY,
    CNI_ENI_TAG_KEYS,
    CREDENTIAL_ERRORS,
    CREDENTIAL_VARIABLES,
    EBS_CSI_ADDON,
    EBS_CSI_SERVICE_ACCOUNT,
    ENI_DETACH_WAIT,
    POD_IDENTITY_ADDON,
    QUOTA_ERRORS,
    QUOTA_WORDS,
    SERVICE_ACCOUNT,
    EksSettings,
    Names,
    capacity_error,
    credentials_error,
    owner_tag,
)
from provisioners.kubernetes.eks.stack import _tag_list, stack_template
from provisioners.kubernetes.eks.token import kubeconfig_text, presigned_token


def _code(exc: BaseException) -> str:
    if isinstance(exc, bexc.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _not_found(exc: BaseException) -> bool:
    code = _code(exc)
    return code in ("ResourceNotFoundException", "NotFoundException", "NoSuchEntity",
                    "InvalidNetworkInterfaceID.NotFound", "InvalidGroup.NotFound",
                    "InvalidVolume.NotFound", "LoadBalancerNotFound") or (
        code == "ValidationError" and "does not exist" in str(exc))


class EksCluster:
    """The AWS side of one run: create, delete, plan, collect, sweep. Knows nothing of Juju.

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

    # -- clients and credentials

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            try:
                self._session = boto3.session.Session(region_name=self.settings.region or None)
            except bexc.ProfileNotFound as exc:
                raise credentials_error(str(exc)) from None
        return self._session

    @property
    def region(self) -> str:
        region = (self.settings.region or os.environ.get("AWS_REGION")
                  or self.session.region_name)
        if not region:
            raise credentials_error("no region: set AWS_REGION or `region:` in matrix.yaml")
        return region

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(connect_timeout=10, read_timeout=60,
                            retries={"mode": "standard", "max_attempts": 5},
                            user_agent_extra="mlflow-matrix")
            self._clients[service] = self.session.client(service, region_name=self.region,
                                                         config=config)
        return self._clients[service]

    def check_credentials(self) -> dict[str, Any]:
        """STS GetCallerIdentity with short timeouts: a missing or expired key fails in seconds."""
        try:
            credentials = self.session.get_credentials()
        except bexc.BotoCoreError as exc:  # unknown profile, partial keys, SSO/process errors
            raise credentials_error(redact(str(exc))) from None
        if credentials is None:
            raise credentials_error("none found (looked at " + ", ".join(CREDENTIAL_VARIABLES)
                                   + ", ~/.aws/credentials and ~/.aws/config)")
        _ = self.region
        sts = self.session.client("sts", region_name=self.region, config=Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))
        try:
            self.identity = sts.get_caller_identity()
        except (bexc.NoCredentialsError, bexc.CredentialRetrievalError, bexc.TokenRetrievalError,
                bexc.SSOError) as exc:  # also: expired SSO session, refresh failing
            raise credentials_error(redact(str(exc))) from None
        except bexc.ClientError as exc:
            if _code(exc) in CREDENTIAL_ERRORS:
                raise credentials_error(f"rejected by STS: {redact(str(exc))}") from None
            raise InfrastructureError(f"STS GetCallerIdentity failed: {redact(str(exc))}") from None
        except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError) as exc:
            raise ConfigError(f"cannot reach AWS STS: {exc}",
                              hint="check the network, or AWS_ENDPOINT_URL if you set one") \
                from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(f"STS GetCallerIdentity failed: {redact(str(exc))}") \
                from None
        return self.identity

    @property
    def partition(self) -> str:
        arn = str(self.identity.get("Arn") or "arn:aws:")
        return arn.split(":")[1] or "aws"

    def principal_arn(self) -> str:
        """The IAM principal an access entry takes: an assumed-role session maps to its role."""
        arn = str(self.identity["Arn"])
        match = re.match(r"^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/", arn)
        if match:
            return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"
        return arn

    # -- deadlines and waiters

    def attempts(self, timeout: float) -> int:
        return max(1, math.ceil(timeout / self.settings.waiter_delay))

    def wait(self, service: str, waiter_name: str, what: str, deadline: float, *,
             cancellable: bool = True, **params: Any) -> None:
        """One waiter attempt at a time until the waiter matches, fails, or `deadline` passes.

        Ctrl-C (CANCEL) ends a create wait at its next poll; deletions are not cancellable
        (they are the teardown), only bounded by their deadline."""
        waiter = self.client(service).get_waiter(waiter_name)
        started = time.monotonic()
        while True:
            if cancellable and CANCEL.is_set():
                raise Interrupted()
            try:
                waiter.wait(WaiterConfig={"Delay": 0, "MaxAttempts": 1}, **params)
                return
            except bexc.WaiterError as exc:
                if "Max attempts exceeded" not in str(exc.kwargs.get("reason", "")):
                    detail = self._failure_detail(service, params) or str(exc.last_response
                                                                          .get("Error", ""))
                    if QUOTA_WORDS.search(detail):
                        raise capacity_error(what, detail) from None
                    raise InfrastructureError(f"{what} failed: {exc.kwargs.get('reason')}"
                                              + (f": {detail}" if detail else "")) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"timed out after {time.monotonic() - started:.0f}s waiting for {what}",
                    hint="raise `up_timeout`/`down_timeout` for this platform in matrix.yaml")
            pause = min(self.settings.waiter_delay, remaining)
            if cancellable:
                CANCEL.wait(pause)
            else:
                time.sleep(pause)

    def _failure_detail(self, service: str, params: Mapping[str, Any]) -> str:
        """Why a resource reached a failed state (health issues, stack events)."""
        try:
            if service == "cloudformation":
                events = self.client(service).describe_stack_events(
                    StackName=params["StackName"])["StackEvents"]
                return "; ".join(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                                 for e in events if str(e.get("ResourceStatus", "")).endswith(
                                     "_FAILED") and e.get("ResourceStatusReason"))[:800]
            eks = self.client("eks")
            if "nodegroupName" in params:
                health = eks.describe_nodegroup(**params)["nodegroup"].get("health", {})
            elif "addonName" in params:
                health = eks.describe_addon(**params)["addon"].get("health", {})
            else:
                return ""
            return "; ".join(f"{i.get('code')}: {i.get('message')}"
                             for i in health.get("issues", []))
        except (bexc.BotoCoreError, bexc.ClientError, KeyError):
            return ""

    def _call(self, what: str, fn: Callable[..., Any], **params: Any) -> Any:
        """An AWS create call: quotas become CapacityError (exit 3), the rest InfrastructureError."""
        if CANCEL.is_set():
            raise Interrupted()
        try:
            return fn(**params)
        except bexc.ClientError as exc:
            if _code(exc) in QUOTA_ERRORS or QUOTA_WORDS.search(_code(exc)):
                raise capacity_error(what, redact(str(exc))) from None
            if _code(exc) in CREDENTIAL_ERRORS:
                raise credentials_error(f"rejected during {what}: {redact(str(exc))}") from None
            raise InfrastructureError(f"{what} failed: {redact(str(exc))}") from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(f"{what} failed: {redact(str(exc))}") from None

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

    def _describe(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except bexc.ClientError as exc:
            if _not_found(exc):
                return None
            raise InfrastructureError(redact(str(exc))) from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(redact(str(exc))) from None

    def _delete(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except bexc.ClientError as exc:
            if not _not_found(exc):
                raise InfrastructureError(redact(str(exc))) from None
        except bexc.BotoCoreError as exc:
            raise InfrastructureError(redact(str(exc))) from None

    def leak_filters(self) -> list[list[dict[str, Any]]]:
        """EC2 filters for what Kubernetes made for this cluster outside the stack."""
        name = self.names.cluster
        return [[{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{name}"]}],
                [{"Name": "tag:cluster.k8s.amazonaws.com/name", "Values": [name]}],
                [{"Name": f"tag:{TAG_RUN}", "Values": [self.run_id]}]]

    def delete_leaks(self, vpc_id: str | None, deadline: float) -> list[str]:
        """What Kubernetes made for the cluster outside the stack: load balancers, then ENIs
        (once they are detached), volumes and security groups. The stack's own resources carry
        the run tag too and are skipped by their CloudFormation tag."""
        done: list[str] = []
        key = f"kubernetes.io/cluster/{self.names.cluster}"
        elb, elbv2, ec2 = self.client("elb"), self.client("elbv2"), self.client("ec2")
        for lb in self._tagged_elbs(elb, key):
            self._delete(lambda n=lb: elb.delete_load_balancer(LoadBalancerName=n))
            done.append(f"load balancer {lb}")
        for arn in self._tagged_elbv2(elbv2, key):
            self._delete(lambda a=arn: elbv2.delete_load_balancer(LoadBalancerArn=a))
            done.append(f"load balancer {arn.rsplit('/', 2)[-2]}")
        filters = self.leak_filters()
        if vpc_id:  # ENIs the VPC CNI left in our VPC (it tags them with these keys)
            filters.append([{"Name": "vpc-id", "Values": [vpc_id]},
                            {"Name": "tag-key", "Values": list(CNI_ENI_TAG_KEYS)}])
        enis = self._leaked_enis(ec2, filters)
        until = min(deadline, time.monotonic() + ENI_DETACH_WAIT)
        while any(e.get("Status") != "available" for e in enis.values()) \
                and time.monotonic() < until:
            time.sleep(min(self.settings.waiter_delay, 5.0))  # detaching after node deletion
            enis = self._leaked_enis(ec2, filters)
        for eni_id, eni in sorted(enis.items()):
            if eni.get("Status") == "available":
                self._delete(lambda i=eni_id: ec2.delete_network_interface(NetworkInterfaceId=i))
                done.append(f"network interface {eni_id}")
        for volume_filters in filters[:3]:
            for vol in ec2.describe_volumes(Filters=volume_filters)["Volumes"]:
                if vol.get("State") == "available":
                    self._delete(lambda v=vol["VolumeId"]: ec2.delete_volume(VolumeId=v))
                    done.append(f"volume {vol['VolumeId']}")
        for group in ec2.describe_security_groups(Filters=filters[0])["SecurityGroups"]:
            if group.get("GroupName") != "default" and not _stack_owned(group.get("Tags")):
                self._delete(lambda g=group["GroupId"]: ec2.delete_security_group(GroupId=g))
                done.append(f"security group {group['GroupId']}")
        return done

    @staticmethod
    def _leaked_enis(ec2: Any, filters: list[list[dict[str, Any]]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for each in filters:
            for page in ec2.get_paginator("describe_network_interfaces").paginate(Filters=each):
                for eni in page["NetworkInterfaces"]:
                    if not _stack_owned(eni.get("TagSet")):
                        found[eni["NetworkInterfaceId"]] = eni
        return found

    @staticmethod
    def _tagged_elbs(elb: Any, key: str) -> Iterator[str]:
        names = [d["LoadBalancerName"] for page in elb.get_paginator(
            "describe_load_balancers").paginate() for d in page["LoadBalancerDescriptions"]]
        for i in range(0, len(names), 20):
            for desc in elb.describe_tags(LoadBalancerNames=names[i:i + 20])["TagDescriptions"]:
                if any(t["Key"] == key for t in desc.get("Tags", [])):
                    yield desc["LoadBalancerName"]

    @staticmethod
    def _tagged_elbv2(elbv2: Any, key: str) -> Iterator[str]:
        arns = [d["LoadBalancerArn"] for page in elbv2.get_paginator(
            "describe_load_balancers").paginate() for d in page["LoadBalancers"]]
        for i in range(0, len(arns), 20):
            for desc in elbv2.describe_tags(ResourceArns=arns[i:i + 20])["TagDescriptions"]:
                if any(t["Key"] == key for t in desc.get("Tags", [])):
                    yield desc["ResourceArn"]

    # -- plan

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


def _stack_owned(tags: list[dict[str, str]] | None) -> bool:
    return any(t.get("Key") == "aws:cloudformation:stack-name" for t in tags or [])
