"""The per-run CloudFormation template: VPC, two public subnets, gateway, routes, IAM roles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioners.kubernetes.eks.settings import EksSettings, Names


def _tag_list(tags: Mapping[str, str], **extra: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in {**tags, **extra}.items()]


def _role(name: str, principal: dict[str, Any], policies: list[str], tags: Mapping[str, str],
          actions: list[str] | None = None) -> dict[str, Any]:
    return {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": name,
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": principal,
            "Action": actions or ["sts:AssumeRole"]}]},
        "ManagedPolicyArns": [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::aws:policy/{p}"}
                              for p in policies],
        "Tags": _tag_list(tags)}}


def stack_template(names: Names, settings: EksSettings, tags: Mapping[str, str]) -> dict[str, Any]:
    """VPC with two public subnets in two zones (EKS needs two; no NAT gateway to pay for) and
    the three IAM roles. Every resource carries the run's tags itself, so they show up under a
    tag filter whether or not stack-tag propagation reaches them."""
    cluster_tag = {f"kubernetes.io/cluster/{names.cluster}": "shared"}
    cidr = settings.vpc_cidr
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {
            "CidrBlock": cidr, "EnableDnsSupport": True, "EnableDnsHostnames": True,
            "Tags": _tag_list(tags, Name=names.base)}},
        "Gateway": {"Type": "AWS::EC2::InternetGateway",
                    "Properties": {"Tags": _tag_list(tags, Name=names.base)}},
        "GatewayAttachment": {"Type": "AWS::EC2::VPCGatewayAttachment", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "InternetGatewayId": {"Ref": "Gateway"}}},
        "RouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "Tags": _tag_list(tags, Name=names.base)}},
        "DefaultRoute": {"Type": "AWS::EC2::Route", "DependsOn": "GatewayAttachment",
                         "Properties": {"RouteTableId": {"Ref": "RouteTable"},
                                        "DestinationCidrBlock": "0.0.0.0/0",
                                        "GatewayId": {"Ref": "Gateway"}}},
        "ClusterRole": _role(names.role("cluster"), {"Service": "eks.amazonaws.com"},
                             ["AmazonEKSClusterPolicy"], tags),
        "NodeRole": _role(names.role("node"), {"Service": "ec2.amazonaws.com"},
                          ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                           "AmazonEC2ContainerRegistryReadOnly"], tags),
        "EbsCsiRole": _role(names.role("ebs-csi"), {"Service": "pods.eks.amazonaws.com"},
                            ["service-role/AmazonEBSCSIDriverPolicy"], tags,
                            actions=["sts:AssumeRole", "sts:TagSession"]),
    }
    for index, zone in enumerate(("A", "B")):
        resources[f"Subnet{zone}"] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"},
            "CidrBlock": _subnet_cidr(cidr, index),
            "AvailabilityZone": {"Fn::Select": [index, {"Fn::GetAZs": ""}]},
            "MapPublicIpOnLaunch": True,
            "Tags": _tag_list(tags, Name=f"{names.base}-{zone.lower()}",
                              **{"kubernetes.io/role/elb": "1"}, **cluster_tag)}}
        resources[f"Subnet{zone}Routes"] = {"Type": "AWS::EC2::SubnetRouteTableAssociation",
                                            "Properties": {"SubnetId": {"Ref": f"Subnet{zone}"},
                                                           "RouteTableId": {"Ref": "RouteTable"}}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"mlflow-matrix run {names.run_id}: network and IAM roles of EKS "
                       f"cluster {names.cluster}",
        "Resources": resources,
        "Outputs": {
            "VpcId": {"Value": {"Ref": "Vpc"}},
            "SubnetIds": {"Value": {"Fn::Join": [",", [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]]}},
            "ClusterRoleArn": {"Value": {"Fn::GetAtt": ["ClusterRole", "Arn"]}},
            "NodeRoleArn": {"Value": {"Fn::GetAtt": ["NodeRole", "Arn"]}},
            "EbsCsiRoleArn": {"Value": {"Fn::GetAtt": ["EbsCsiRole", "Arn"]}},
        },
    }


def _subnet_cidr(vpc_cidr: str, index: int) -> str:
    """The index-th half of the VPC range (two subnets, one per zone)."""
    import ipaddress

    net = ipaddress.ip_network(vpc_cidr)
    return str(list(net.subnets(prefixlen_diff=1))[index])
