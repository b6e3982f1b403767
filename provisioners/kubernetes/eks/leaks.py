"""What Kubernetes made for an EKS cluster outside the CloudFormation stack (load balancers,
ENIs, volumes, security groups), found by tag and deleted on `down`. A mixin of `EksCluster`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from provisioners.kubernetes.cloud import TAG_RUN
from provisioners.kubernetes.eks.aws import AwsAccess
from provisioners.kubernetes.eks.settings import CNI_ENI_TAG_KEYS, ENI_DETACH_WAIT, Names


class KubernetesLeaks(AwsAccess):
    """Load balancers, ENIs, volumes and security groups of the cluster, by its tags."""

    names: Names
    run_id: str

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

def _stack_owned(tags: list[dict[str, str]] | None) -> bool:
    return any(t.get("Key") == "aws:cloudformation:stack-name" for t in tags or [])
