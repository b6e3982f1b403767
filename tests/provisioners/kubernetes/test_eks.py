"""EKS: the real boto3 code against moto's server on loopback (CloudFormation, EC2, IAM, STS,
ELB, EKS clusters/nodegroups), the loopback EKS extras for what moto lacks (addons, access
entries, slow and failed states), and botocore's Stubber where a response must be exact.
Leftovers are counted through the emulators' own list APIs."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from fakes.aws import aws_on_loopback
from fakes.fixtures import RUN_ID, cluster, context_for, fake_api, stub_mlflow  # noqa: F401

from harness.system.errors import ConfigError, InfrastructureError
from harness.system.state import RunState
from harness.system.waits import DeadlineExceeded
from provisioners.kubernetes.cloud import (
    TAG_CREATED,
    TAG_EXPIRES,
    TAG_OWNER,
    TAG_RUN,
    CapacityError,
    CredentialsError,
)
from provisioners.kubernetes.eks import (
    CLUSTER_ADMIN_POLICY,
    EBS_CSI_ADDON,
    POD_IDENTITY_ADDON,
    TOKEN_PREFIX,
    EksCluster,
    EksProvisioner,
    EksSettings,
    Names,
    presigned_token,
    stack_template,
)

ROOT = Path(__file__).resolve().parents[3]
FAST = dict(region="us-east-1", waiter_delay=0.05, up_timeout=60, down_timeout=60)


@pytest.fixture(scope="module")
def aws():
    with aws_on_loopback() as servers:
        yield servers


@pytest.fixture
def env(aws, monkeypatch):
    _, extras, _, values = aws
    extras.nodegroup_failure = None
    extras.addon_failure = {}
    extras.hold_cluster_creating = False
    extras.cluster_creating_polls = 0
    extras.polls_to_active = extras.polls_to_gone = 1
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return values


_SESSIONS: dict[str, boto3.session.Session] = {}


def session() -> boto3.session.Session:
    """One session for the file: botocore then loads each service model once (faster)."""
    key = os.environ.get("AWS_ENDPOINT_URL", "")
    if key not in _SESSIONS:
        _SESSIONS[key] = boto3.session.Session(region_name="us-east-1")
    return _SESSIONS[key]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def cluster_for(tmp_path: Path, run_id: str | None = None, **settings: Any) -> EksCluster:
    run_id = run_id or new_run_id()
    state = RunState(tmp_path / "state" / f"{run_id}.json", run_id)
    return EksCluster(EksSettings(**{**FAST, **settings}), run_id, state=state,
                      work_dir=tmp_path / "work", log=lambda _: None,
                      session=session() if os.environ.get("AWS_ENDPOINT_URL") else None)


_CLIENTS: dict[tuple[str, str], Any] = {}


def client(service: str) -> Any:
    key = (service, os.environ.get("AWS_ENDPOINT_URL", ""))
    if key not in _CLIENTS:
        _CLIENTS[key] = session().client(service, region_name="us-east-1")
    return _CLIENTS[key]


def leftovers(aws, run_id: str) -> dict[str, int]:
    """Everything of one run that still exists, counted through moto's/the fake's list APIs."""
    _, extras, _, _ = aws
    names = Names(run_id)
    eks, cfn, ec2, iam = client("eks"), client("cloudformation"), client("ec2"), client("iam")
    run_filter = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    cluster_filter = [{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{names.cluster}"]}]
    clusters = [c for c in eks.list_clusters()["clusters"]
                if eks.describe_cluster(name=c)["cluster"].get("tags", {}).get(TAG_RUN) == run_id]
    stacks = [s for s in cfn.describe_stacks()["Stacks"]
              if {t["Key"]: t["Value"] for t in s.get("Tags", [])}.get(TAG_RUN) == run_id
              and s["StackStatus"] != "DELETE_COMPLETE"]
    elb_names = [d["LoadBalancerName"] for d in
                 client("elb").describe_load_balancers()["LoadBalancerDescriptions"]]
    elbv2_arns = [d["LoadBalancerArn"] for d in
                  client("elbv2").describe_load_balancers()["LoadBalancers"]]
    tagged_elbs = [d for d in (client("elb").describe_tags(LoadBalancerNames=elb_names)
                               ["TagDescriptions"] if elb_names else [])
                   if any(t["Key"] == f"kubernetes.io/cluster/{names.cluster}" for t in d["Tags"])]
    tagged_elbv2 = [d for d in (client("elbv2").describe_tags(ResourceArns=elbv2_arns)
                                ["TagDescriptions"] if elbv2_arns else [])
                    if any(t["Key"] == f"kubernetes.io/cluster/{names.cluster}"
                           for t in d["Tags"])]
    return {
        "clusters": len(clusters),
        "nodegroups": sum(len(eks.list_nodegroups(clusterName=c)["nodegroups"]) for c in clusters),
        "addons": sum(1 for c, _ in extras.addons if c == names.cluster),
        "access_entries": sum(1 for c, _ in extras.access if c == names.cluster),
        "stacks": len(stacks),
        "vpcs": len(ec2.describe_vpcs(Filters=run_filter)["Vpcs"]),
        "subnets": len(ec2.describe_subnets(Filters=run_filter)["Subnets"]),
        "route_tables": len(ec2.describe_route_tables(Filters=run_filter)["RouteTables"]),
        "roles": sum(1 for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(names.base)),
        "enis": len(ec2.describe_network_interfaces(Filters=cluster_filter)["NetworkInterfaces"]),
        "security_groups": len(ec2.describe_security_groups(Filters=cluster_filter)
                               ["SecurityGroups"]),
        "volumes": len(ec2.describe_volumes(Filters=run_filter)["Volumes"]),
        "load_balancers": len(tagged_elbs) + len(tagged_elbv2),
    }


def nothing_left(aws, run_id: str) -> bool:
    counts = leftovers(aws, run_id)
    assert all(v == 0 for v in counts.values()), counts
    return True


# ---------------------------------------------------------------- up and down


def test_up_creates_tagged_stack_cluster_nodegroup_addons_and_storage_class(aws, env, tmp_path):
    _, extras, kube, _ = aws
    eks_cluster = cluster_for(tmp_path, node_count=2, node_type="m6i.xlarge")
    run_id, names = eks_cluster.run_id, eks_cluster.names
    kubeconfig = eks_cluster.create()

    counts = leftovers(aws, run_id)
    assert {k: counts[k] for k in ("clusters", "nodegroups", "addons", "access_entries", "stacks",
                                   "vpcs")} == {"clusters": 1, "nodegroups": 1, "addons": 2,
                                                "access_entries": 1, "stacks": 1, "vpcs": 1}
    assert counts["subnets"] == 2 and counts["roles"] == 3

    eks, ec2, iam = client("eks"), client("ec2"), client("iam")
    expected_tags = {TAG_RUN, TAG_OWNER, TAG_CREATED, TAG_EXPIRES}
    cluster = eks.describe_cluster(name=names.cluster)["cluster"]
    assert expected_tags <= set(cluster["tags"]) and cluster["tags"][TAG_RUN] == run_id
    created = dt.datetime.strptime(cluster["tags"][TAG_CREATED], "%Y-%m-%dT%H:%M:%SZ")
    expires = dt.datetime.strptime(cluster["tags"][TAG_EXPIRES], "%Y-%m-%dT%H:%M:%SZ")
    assert expires - created == dt.timedelta(seconds=EksSettings().expires_after)
    assert cluster["version"] == "1.32"
    nodegroup = eks.describe_nodegroup(clusterName=names.cluster,
                                       nodegroupName=names.nodegroup)["nodegroup"]
    assert nodegroup["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert nodegroup["instanceTypes"] == ["m6i.xlarge"]
    assert nodegroup["tags"][TAG_RUN] == run_id
    stack = client("cloudformation").describe_stacks(StackName=names.stack)["Stacks"][0]
    assert {t["Key"]: t["Value"] for t in stack["Tags"]}[TAG_RUN] == run_id
    subnets = ec2.describe_subnets(Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}])
    assert len({s["AvailabilityZone"] for s in subnets["Subnets"]}) == 2
    assert cluster["resourcesVpcConfig"]["subnetIds"] == sorted(
        cluster["resourcesVpcConfig"]["subnetIds"], key=[s["SubnetId"] for s in
                                                        subnets["Subnets"]].index)
    for purpose in ("cluster", "node", "ebs-csi"):
        tags = {t["Key"]: t["Value"] for t in
                iam.list_role_tags(RoleName=names.role(purpose))["Tags"]}
        assert tags[TAG_RUN] == run_id

    # what moto does not keep: the request bodies the EKS extras saw
    (_, create), = [c for c in extras.calls("POST", "/clusters") if c[0] == "/clusters"
                    and c[1]["name"] == names.cluster]
    assert create["accessConfig"] == {"authenticationMode": "API",
                                      "bootstrapClusterCreatorAdminPermissions": False}
    caller = client("sts").get_caller_identity()["Arn"]
    assert extras.access[(names.cluster, caller)]["tags"][TAG_RUN] == run_id
    (_, association), = extras.calls("POST", f"/clusters/{names.cluster}/access-entries/")
    assert association == {"policyArn": CLUSTER_ADMIN_POLICY.format(partition="aws"),
                           "accessScope": {"type": "cluster"}}
    ebs = extras.addons[(names.cluster, EBS_CSI_ADDON)]
    assert ebs["status"] == "ACTIVE" and ebs["tags"][TAG_RUN] == run_id
    addon_posts = [b for _, b in extras.calls("POST", f"/clusters/{names.cluster}/addons")]
    assert [b["addonName"] for b in addon_posts] == [POD_IDENTITY_ADDON, EBS_CSI_ADDON]
    role_arn = iam.get_role(RoleName=names.role("ebs-csi"))["Role"]["Arn"]
    assert addon_posts[1]["podIdentityAssociations"] == [
        {"serviceAccount": "ebs-csi-controller-sa", "roleArn": role_arn}]
    volume_tags = json.loads(addon_posts[1]["configurationValues"])["controller"]
    assert volume_tags["extraVolumeTags"][TAG_RUN] == run_id

    # bootstrapped with the STS token (checked against STS by the API server), then a static
    # service-account token for the run; no exec plugin, mode 600, the STS kubeconfig removed
    config = yaml.safe_load(kubeconfig.read_text())
    user = config["users"][0]["user"]
    assert set(user) == {"token"}
    assert kube.sa_tokens[user["token"]] == "system:serviceaccount:kube-system:mlflow-matrix"
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert not eks_cluster.bootstrap_kubeconfig_path.exists()
    binding = kube.object("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                          "mlflow-matrix")
    assert binding["roleRef"]["name"] == "cluster-admin"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlflow-matrix",
                                    "namespace": "kube-system"}]
    from lightkube import Client, KubeConfig
    from lightkube.resources.storage_v1 import StorageClass

    with Client(KubeConfig.from_file(kubeconfig), trust_env=False) as api:
        assert api.get(StorageClass, "gp3").provisioner == "ebs.csi.aws.com"
    storage_class = kube.object("/apis/storage.k8s.io/v1/storageclasses", "gp3")
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"]["type"] == "gp3"
    assert storage_class["metadata"]["annotations"][
        "storageclass.kubernetes.io/is-default-class"] == "true"
    assert caller in kube.identities  # the STS token made the first calls

    # recorded in the run state, every step before its call
    body = json.loads(eks_cluster.state.path.read_text())
    (record,) = body["resources"]
    assert record["type"] == "eks-cluster" and record["run_id"] == run_id
    assert record["steps"] == ["stack", "cluster", "access-entry", "nodegroup",
                               f"addon:{POD_IDENTITY_ADDON}", f"addon:{EBS_CSI_ADDON}"]

    done = eks_cluster.delete()
    assert done == [f"nodegroup {names.nodegroup}", f"addon {EBS_CSI_ADDON}",
                    f"addon {POD_IDENTITY_ADDON}", f"cluster {names.cluster}",
                    f"stack {names.stack}"]
    deletes = [p for m, p, _ in extras.requests if m == "DELETE" and names.cluster in p]
    assert deletes == [f"/clusters/{names.cluster}/node-groups/{names.nodegroup}",
                       f"/clusters/{names.cluster}/addons/{EBS_CSI_ADDON}",
                       f"/clusters/{names.cluster}/addons/{POD_IDENTITY_ADDON}",
                       f"/clusters/{names.cluster}"]
    assert nothing_left(aws, run_id)
    assert json.loads(eks_cluster.state.path.read_text())["resources"] == []
    assert not kubeconfig.exists()
    assert eks_cluster.delete() == []  # idempotent


def test_leaked_load_balancers_enis_volumes_go_and_untagged_resources_stay(aws, env, tmp_path):
    eks_cluster = cluster_for(tmp_path)
    names = eks_cluster.names
    eks_cluster.create()
    ec2, elb, elbv2 = client("ec2"), client("elb"), client("elbv2")
    key = f"kubernetes.io/cluster/{names.cluster}"
    subnet = ec2.describe_subnets(Filters=[{"Name": f"tag:{TAG_RUN}",
                                            "Values": [eks_cluster.run_id]}])["Subnets"][0]
    vpc = subnet["VpcId"]

    def tag(tags: dict[str, str], kind: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]

    # what Kubernetes would leave in the cluster's VPC: a CNI ENI, an ELB's security group,
    # an EBS CSI volume, a classic ELB and an NLB
    ec2.create_network_interface(SubnetId=subnet["SubnetId"], TagSpecifications=tag(
        {"cluster.k8s.amazonaws.com/name": names.cluster, key: "owned"}, "network-interface"))
    cni_eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"], TagSpecifications=tag(
        {"node.k8s.amazonaws.com/createdAt": "2026-01-01T00:00:00Z"}, "network-interface"))[
        "NetworkInterface"]["NetworkInterfaceId"]  # VPC CNI style: only in our VPC
    ec2.create_security_group(GroupName="k8s-elb-leak", Description="leaked", VpcId=vpc,
                              TagSpecifications=tag({key: "owned"}, "security-group"))
    ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=1,
                      TagSpecifications=tag({TAG_RUN: eks_cluster.run_id, key: "owned"},
                                            "volume"))
    elb.create_load_balancer(LoadBalancerName="leaked-classic", Subnets=[subnet["SubnetId"]],
                             Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80,
                                         "InstancePort": 30080}],
                             Tags=[{"Key": key, "Value": "owned"}])
    elbv2.create_load_balancer(Name="leaked-nlb", Type="network", Subnets=[subnet["SubnetId"]],
                               Tags=[{"Key": key, "Value": "owned"}])
    # someone else's, without our tags, in the default VPC and in EKS
    default_subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az",
                                                    "Values": ["true"]}])["Subnets"][0]
    foreign_eni = ec2.create_network_interface(SubnetId=default_subnet["SubnetId"])[
        "NetworkInterface"]["NetworkInterfaceId"]
    foreign_volume = ec2.create_volume(AvailabilityZone=default_subnet["AvailabilityZone"],
                                       Size=1)["VolumeId"]
    foreign_lb = "someone-elses"
    elb.create_load_balancer(LoadBalancerName=foreign_lb, Subnets=[default_subnet["SubnetId"]],
                             Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80,
                                         "InstancePort": 80}])
    assert leftovers(aws, eks_cluster.run_id)["load_balancers"] == 2

    done = eks_cluster.delete()
    assert sum(d.startswith("load balancer") for d in done) == 2
    assert sum(d.startswith("network interface") for d in done) == 2
    assert f"network interface {cni_eni}" in done
    assert any(d.startswith("security group") for d in done)
    assert any(d.startswith("volume") for d in done)
    assert nothing_left(aws, eks_cluster.run_id)
    assert ec2.describe_network_interfaces(NetworkInterfaceIds=[foreign_eni])[
        "NetworkInterfaces"]
    assert ec2.describe_volumes(VolumeIds=[foreign_volume])["Volumes"]
    assert foreign_lb in [d["LoadBalancerName"] for d in
                          elb.describe_load_balancers()["LoadBalancerDescriptions"]]


def test_stack_roles_carry_the_managed_policies_eks_needs():
    """moto's CloudFormation does not attach ManagedPolicyArns, so the template says it."""
    template = stack_template(Names("r1"), EksSettings(), {TAG_RUN: "r1"})
    policies = {name: [p["Fn::Sub"].rsplit("/", 1)[-1] for p in
                       res["Properties"]["ManagedPolicyArns"]]
                for name, res in template["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
    assert policies == {
        "ClusterRole": ["AmazonEKSClusterPolicy"],
        "NodeRole": ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                     "AmazonEC2ContainerRegistryReadOnly"],
        "EbsCsiRole": ["AmazonEBSCSIDriverPolicy"]}
    trust = template["Resources"]["EbsCsiRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Statement"][0]["Action"]) == {"sts:AssumeRole", "sts:TagSession"}


def test_plan_prints_every_call_and_touches_nothing(tmp_path):
    env = no_aws_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "harness", "plan", "--platform", "eks-1.32",
                           "--channel", "2.22/stable"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for call in ("sts get_caller_identity", "cloudformation create_stack", "eks create_cluster",
                 "authenticationMode=API", "eks create_access_entry",
                 "eks associate_access_policy", "eks create_nodegroup",
                 f"eks create_addon addonName={POD_IDENTITY_ADDON}",
                 f"eks create_addon addonName={EBS_CSI_ADDON}",
                 "storageclasses gp3", "juju add-k8s", "--storage gp3",
                 "eks delete_nodegroup", "eks delete_addon", "eks delete_cluster",
                 "delete_load_balancer", "delete_network_interface",
                 "cloudformation delete_stack", "MaxAttempts=80"):
        assert call in out, call
    order = [out.index(c) for c in ("delete_nodegroup", "delete_addon aws-ebs", "delete_cluster",
                                    "delete_network_interface", "delete_stack")]
    assert order == sorted(order)


def test_presigned_token_is_what_aws_eks_get_token_makes(aws, env):
    _, _, kube, _ = aws
    token = presigned_token(client("sts"), "some-cluster")
    assert token.startswith(TOKEN_PREFIX) and not token.endswith("=")
    b64 = token.removeprefix(TOKEN_PREFIX)
    url = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["60"]
    assert kube.authenticate(f"Bearer {token}") == client("sts").get_caller_identity()["Arn"]
    unsigned = client("sts").generate_presigned_url("get_caller_identity", Params={})
    forged = TOKEN_PREFIX + base64.urlsafe_b64encode(unsigned.encode()).decode().rstrip("=")
    assert kube.authenticate(f"Bearer {forged}") is None  # header not signed: refused


def test_juju_gets_storage_gp3_and_is_released_before_the_cluster_goes(
        aws, env, cluster, context_for):
    """The base's contract on EKS: add-k8s with --storage gp3; on down, the Juju controller and
    cloud go (fake juju) before the first EKS delete reaches AWS; then nothing is left."""
    from deployments.juju import cli as jcli
    from deployments.juju import settings as jsettings

    _, extras, _, _ = aws
    fake = cluster({"juju": {"storage_required": True}})
    ctx = context_for("eks-1.32", **FAST)
    provisioner = EksProvisioner(ctx)
    substrate = provisioner.up()
    assert substrate.cluster_goes_away and substrate.kubeconfig == provisioner.cluster \
        .kubeconfig_path
    juju = jcli._Juju(command_timeout=30)
    provisioner.juju_controller.ensure(substrate, juju,
                                       jsettings.juju_settings(ctx.platform.settings))
    provisioner.down()
    lines = fake.lines("juju")
    add_k8s = next(line for line in lines if line.startswith("juju add-k8s"))
    assert "--storage gp3" in add_k8s
    bootstrap = next(line for line in lines if line.startswith("juju bootstrap"))
    assert "--config controller-service-type=cluster" in bootstrap  # no cloud load balancer
    assert any(line.startswith("juju destroy-controller") for line in lines)
    assert any(line.startswith("juju remove-k8s") for line in lines)
    juju_done = max(json.loads(line)["t"] for line in
                    (fake.state / "calls.jsonl").read_text().splitlines())
    first_delete = min(t for (method, path, _), t in zip(extras.requests, extras.request_times,
                                                             strict=True)
                       if method == "DELETE" and Names(RUN_ID).cluster in path)
    assert juju_done < first_delete
    assert nothing_left(aws, RUN_ID)
    assert ctx.state.resources() == []


# ---------------------------------------------------------------- faults


def test_nodegroup_stockout_is_exit_3_and_down_removes_everything(aws, env, tmp_path):
    _, extras, _, _ = aws
    extras.nodegroup_failure = ("AsgInstanceLaunchFailures",
                                "Could not launch On-Demand Instances. "
                                "InsufficientInstanceCapacity - We currently do not have "
                                "sufficient m6i.xlarge capacity in the Availability Zone")
    eks_cluster = cluster_for(tmp_path)
    with pytest.raises(CapacityError) as caught:
        eks_cluster.create()
    assert caught.value.exit_code == 3
    assert "InsufficientInstanceCapacity" in caught.value.message
    assert "quota" in caught.value.render().lower() and "AWS" in caught.value.message
    assert leftovers(aws, eks_cluster.run_id)["nodegroups"] == 1  # failed, but it exists
    extras.nodegroup_failure = None
    eks_cluster.delete()
    assert nothing_left(aws, eks_cluster.run_id)


def test_addon_fails_half_way_then_down_removes_everything(aws, env, tmp_path):
    _, extras, _, _ = aws
    extras.addon_failure = {EBS_CSI_ADDON: ("ConfigurationConflict",
                                            "Conflicts found when trying to apply.")}
    extras.polls_to_active = 3
    eks_cluster = cluster_for(tmp_path)
    with pytest.raises(InfrastructureError) as caught:
        eks_cluster.create()
    assert not isinstance(caught.value, CapacityError)
    assert "addon aws-ebs-csi-driver failed" in caught.value.message
    assert "ConfigurationConflict" in caught.value.message
    assert leftovers(aws, eks_cluster.run_id)["addons"] == 2
    eks_cluster.delete()
    assert nothing_left(aws, eks_cluster.run_id)


def test_cluster_wait_has_a_deadline(aws, env, tmp_path):
    _, extras, _, _ = aws
    extras.hold_cluster_creating = True
    eks_cluster = cluster_for(tmp_path, up_timeout=2)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        eks_cluster.create()
    assert time.monotonic() - started < 10
    assert "cluster " + eks_cluster.names.cluster in caught.value.message
    extras.hold_cluster_creating = False
    eks_cluster.delete()
    assert nothing_left(aws, eks_cluster.run_id)


def test_someone_elses_cluster_of_the_same_name_is_never_deleted(aws, env, tmp_path):
    run_id = new_run_id()
    names = Names(run_id)
    eks = client("eks")
    eks.create_cluster(name=names.cluster, roleArn="arn:aws:iam::123456789012:role/theirs",
                       resourcesVpcConfig={"subnetIds": []}, tags={"team": "theirs"})
    eks_cluster = cluster_for(tmp_path, run_id)
    with pytest.raises(InfrastructureError, match="does not carry"):
        eks_cluster.delete()
    assert eks.describe_cluster(name=names.cluster)["cluster"]["status"] == "ACTIVE"
    swept = EksCluster.sweep(EksSettings(**FAST), older_than=dt.timedelta(0), dry_run=False,
                             progress=lambda _: None, session=session())
    assert run_id not in {item.run_id for item in swept}
    assert names.cluster in eks.list_clusters()["clusters"]
    eks.delete_cluster(name=names.cluster)


# ---------------------------------------------------------------- Stubber: exact responses


def stubbed(eks_cluster: EksCluster, service: str) -> Stubber:
    real = boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    eks_cluster._clients[service] = real
    return Stubber(real)


def test_addon_wait_polls_through_creating_and_stops_at_create_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    eks_cluster = cluster_for(tmp_path)
    n = eks_cluster.names
    params = {"clusterName": n.cluster, "addonName": EBS_CSI_ADDON}

    def addon(status: str, issues: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"addon": {"addonName": EBS_CSI_ADDON, "clusterName": n.cluster,
                          "status": status, "health": {"issues": issues or []}}}

    with stubbed(eks_cluster, "eks") as stub:
        for status in ("CREATING", "CREATING", "ACTIVE"):
            stub.add_response("describe_addon", addon(status), params)
        eks_cluster.wait("eks", "addon_active", "addon", time.monotonic() + 5, **params)
        stub.assert_no_pending_responses()

    issue = {"code": "InsufficientNumberOfReplicas",
             "message": "The add-on is unhealthy because it doesn't have the desired number of "
                        "replicas.", "resourceIds": []}
    with stubbed(eks_cluster, "eks") as stub:
        stub.add_response("describe_addon", addon("CREATING"), params)
        stub.add_response("describe_addon", addon("CREATE_FAILED", [issue]), params)
        stub.add_response("describe_addon", addon("CREATE_FAILED", [issue]), params)
        started = time.monotonic()
        with pytest.raises(InfrastructureError, match="InsufficientNumberOfReplicas"):
            eks_cluster.wait("eks", "addon_active", "addon", time.monotonic() + 30, **params)
        assert time.monotonic() - started < 5


def test_cluster_failed_ends_the_wait_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    eks_cluster = cluster_for(tmp_path)
    with stubbed(eks_cluster, "eks") as stub:
        stub.add_response("describe_cluster", {"cluster": {"name": eks_cluster.names.cluster,
                                                           "status": "FAILED"}},
                          {"name": eks_cluster.names.cluster})
        with pytest.raises(InfrastructureError, match="terminal failure"):
            eks_cluster.wait("eks", "cluster_active", "cluster", time.monotonic() + 30,
                             name=eks_cluster.names.cluster)


def test_requests_for_what_moto_lacks_match_the_eks_service_model(tmp_path, monkeypatch):
    """Stubber checks the exact parameters; botocore validates them against AWS's model."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    eks_cluster = cluster_for(tmp_path)
    eks_cluster.identity = {"Arn": "arn:aws:sts::123456789012:assumed-role/ci-runner/session-1"}
    outputs = {"EbsCsiRoleArn": "arn:aws:iam::123456789012:role/x-ebs-csi",
               "SubnetIds": "subnet-1,subnet-2", "ClusterRoleArn": "arn:aws:iam::1:role/c",
               "NodeRoleArn": "arn:aws:iam::1:role/n"}
    real = boto3.client("eks", region_name="us-east-1")
    with Stubber(real) as stub:
        principal = eks_cluster.principal_arn()
        assert principal == "arn:aws:iam::123456789012:role/ci-runner"
        request = eks_cluster.addon_request(EBS_CSI_ADDON, outputs)
        stub.add_response("create_addon", {"addon": {"addonName": EBS_CSI_ADDON}}, request)
        stub.add_response("create_access_entry", {"accessEntry": {"principalArn": principal}},
                          {"clusterName": eks_cluster.names.cluster, "principalArn": principal,
                           "type": "STANDARD", "tags": eks_cluster.tags})
        stub.add_response("create_cluster", {"cluster": {"name": eks_cluster.names.cluster}},
                          eks_cluster.cluster_request(outputs))
        stub.add_response("create_nodegroup", {"nodegroup": {}},
                          eks_cluster.nodegroup_request(outputs))
        real.create_addon(**request)
        real.create_access_entry(clusterName=eks_cluster.names.cluster, principalArn=principal,
                                 type="STANDARD", tags=eks_cluster.tags)
        real.create_cluster(**eks_cluster.cluster_request(outputs))
        real.create_nodegroup(**eks_cluster.nodegroup_request(outputs))
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- credentials


def test_expired_credentials_are_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    eks_cluster = cluster_for(tmp_path)
    sts = boto3.client("sts", region_name="us-east-1")
    original = eks_cluster.session.client
    monkeypatch.setattr(eks_cluster.session, "client",
                        lambda service, **kw: sts if service == "sts" else original(service, **kw))
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "ExpiredToken",
                              "The security token included in the request is expired", 403)
        with pytest.raises(CredentialsError) as caught:
            eks_cluster.check_credentials()
    assert caught.value.exit_code == 2
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN", "AWS_REGION"):
        assert name in caught.value.render()


def test_unreachable_endpoint_is_bad_input_in_seconds(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    eks_cluster = EksCluster(EksSettings(region="us-east-1"), "r1", log=lambda _: None)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach AWS STS") as caught:
        eks_cluster.check_credentials()
    assert caught.value.exit_code == 2 and time.monotonic() - started < 15


def no_aws_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def test_no_credentials_exit_2_fast_before_anything_is_created(tmp_path):
    reports = tmp_path / "reports"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--platform", "eks-1.32",
                           "--channel", "2.22/stable", "--reports-dir", str(reports)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=no_aws_env(tmp_path))
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert elapsed < 30
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        assert name in output
    assert "Traceback" not in output
    for path in (reports / "state").glob("*.json"):
        assert json.loads(path.read_text())["resources"] == []


def test_no_region_is_a_credentials_error(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    eks_cluster = EksCluster(EksSettings(), "r1", log=lambda _: None)
    with pytest.raises(ConfigError, match="AWS_REGION"):
        eks_cluster.check_credentials()


# ---------------------------------------------------------------- whole runs in a subprocess


def test_matrix(tmp_path: Path) -> Path:
    body = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    body["platforms"]["eks-fast"] = {
        "kind": "eks", "region": "us-east-1", "waiter_delay": 0.1, "up_timeout": 120,
        "down_timeout": 120}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


test_matrix.__test__ = False  # type: ignore[attr-defined]


def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def run_ids_in(reports: Path) -> list[str]:
    return [p.stem for p in (reports / "state").glob("*.json")]


def test_sigint_while_the_cluster_is_creating_tears_everything_down(aws, env, tmp_path):
    _, extras, _, _ = aws
    extras.hold_cluster_creating = True
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--platform", "eks-fast", "--channel",
         "2.22/stable", "--scenario", "tracking", "--matrix", str(test_matrix(tmp_path)),
         "--reports-dir", str(reports)], cwd=ROOT, env={**os.environ},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def cluster_exists() -> bool:
            ids = run_ids_in(reports)
            return bool(ids) and leftovers(aws, ids[0])["clusters"] == 1

        wait_until(cluster_exists)
        run_id = run_ids_in(reports)[0]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert nothing_left(aws, run_id)
    assert json.loads((reports / "state" / f"{run_id}.json").read_text())["resources"] == []


def test_kill_9_after_up_then_janitor_sweeps_by_tag(aws, env, tmp_path):
    _, extras, _, _ = aws
    extras.polls_to_active = 10 ** 9  # the EBS CSI addon never becomes ACTIVE: up keeps waiting
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "up", "--platform", "eks-fast", "--matrix",
         str(test_matrix(tmp_path)), "--reports-dir", str(reports)], cwd=ROOT,
        env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def everything_exists() -> bool:
            ids = run_ids_in(reports)
            return bool(ids) and leftovers(aws, ids[0])["addons"] == 1

        wait_until(everything_exists)
        run_id = run_ids_in(reports)[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    extras.polls_to_active = 1
    before = leftovers(aws, run_id)
    assert before["clusters"] == before["nodegroups"] == before["stacks"] == 1

    settings = EksSettings(**FAST)
    lines: list[str] = []

    def sweep(**kw: Any) -> list[str]:
        return [f"{i.kind} {i.name} {i.run_id} deleted={i.deleted}" for i in EksCluster.sweep(
            settings, progress=lines.append, session=session(), **kw)]

    assert not [s for s in sweep(older_than=None, dry_run=False) if run_id in s]  # not expired
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=settings.expires_after + 60)
    assert f"eks-cluster {Names(run_id).cluster} {run_id} deleted=False" in sweep(
        older_than=None, dry_run=True, now=later)
    assert leftovers(aws, run_id) == before  # dry run: listed, nothing deleted
    assert any("would delete" in line and run_id in line for line in lines)
    # the real deletion through the CLI the nightly job runs (same code, by tag and age)
    time.sleep(1.1)
    janitor = [sys.executable, "-m", "harness", "janitor", "--cloud", "eks", "--matrix",
               str(test_matrix(tmp_path)), "--platform", "eks-fast", "--older-than", "1s"]
    proc = subprocess.run(janitor, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"deleted eks-cluster {Names(run_id).cluster} (run {run_id}" in proc.stdout
    assert nothing_left(aws, run_id)
