"""provisioners.kubernetes.canonical_k8s with fake `snap`, `k8s` and `juju` on PATH."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import os
import subprocess

import pytest
from fakes.cluster import check_transcript
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    RUN_ID,
    cluster,
    context_for,
    fake_api,
    local_channel,
    stub_mlflow,
)

from harness.system.errors import ConfigError, InfrastructureError
from provisioners.kubernetes.canonical_k8s import CanonicalK8sProvisioner


def test_plan_is_the_exact_commands_and_runs_nothing(context_for, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    lines = CanonicalK8sProvisioner(context_for("canonical-k8s-1.32")).plan()
    assert [line for line in lines if line.startswith("preflight:")][2] == (
        "preflight: /run/containerd absent unless `sudo k8s status` says this node is "
        "bootstrapped already (another containerd: `k8s bootstrap` refuses, k8s-snap#1192; exit "
        "2 with Canonical CI's remedy)")
    lines = lines[3:]
    assert lines[1:7] == [
        "sudo snap install k8s --classic --channel=1.32-classic/stable   (only if absent; "
        "recorded in the run state first)",
        "sudo k8s status   → sudo k8s bootstrap only when it reports the node is not part of a "
        "Kubernetes cluster",
        "sudo k8s status --wait-ready --timeout 600s",
        "sudo k8s set load-balancer.cidrs=10.64.140.43/32 load-balancer.l2-mode=true",
        "sudo k8s enable network dns local-storage load-balancer",
        "sudo k8s kubectl wait --for=condition=Ready node --all --timeout=600s",
    ]
    assert lines[7].startswith("sudo k8s config > ")
    assert "down: sudo snap remove k8s --purge" in "\n".join(lines)


def test_up_bootstraps_and_down_removes_the_snap(cluster, context_for, tmp_path):
    fake = cluster({"values": {"SUBSTRATE": "k8s/default"}})
    ctx = context_for("canonical-k8s-1.32")
    provisioner = CanonicalK8sProvisioner(ctx)
    substrate = provisioner.up()
    assert fake.world()["k8s_bootstrapped"] is True
    assert "client-certificate-data" in substrate.kubeconfig.read_text()
    dep = provisioner.deployment(substrate, tmp_path / "reports" / "ck8s" / "2.22-stable")
    endpoint = dep.deploy(local_channel("2.22/stable"))
    assert endpoint.mlflow_version == "2.22.0"
    dep.teardown()
    provisioner.down()
    assert "k8s" not in fake.world()["snaps"] and ctx.state.resources() == []
    add_k8s = next(c for c in fake.calls("juju") if c.argv[0] == "add-k8s")
    assert add_k8s.argv == ["add-k8s", f"mm-{RUN_ID}-canonical-k8s-1-32", "--client",
                            "--storage", "csi-rawfile-default"]
    assert add_k8s.stdin["kubeconfig"] is True  # the kubeconfig went on stdin
    check_transcript("canonical-k8s-up-deploy-down", fake.transcript())


def test_a_bootstrapped_node_is_reused_and_only_new_features_are_disabled(cluster, context_for):
    fake = cluster({"preinstalled_snaps": {"k8s": "1.32-classic/stable"},
                    "k8s": {"bootstrapped": True, "enabled": ["load-balancer"]}})
    ctx = context_for("canonical-k8s-1.32", features=("network", "dns", "local-storage",
                                                      "load-balancer", "ingress"))
    provisioner = CanonicalK8sProvisioner(ctx)
    provisioner.up()
    assert not fake.ran("k8s bootstrap")
    assert [(r.type, r.data["name"]) for r in ctx.state.resources()] == \
        [("canonical-k8s-feature", "ingress")]
    provisioner.down()
    assert "k8s" in fake.world()["snaps"]
    assert fake.lines()[-1] == "k8s disable ingress"


def test_a_failing_status_that_is_not_about_bootstrap_is_an_error(cluster, context_for,
                                                                 monkeypatch):
    cluster({"preinstalled_snaps": {"k8s": "1.32-classic/stable"}})
    provisioner = CanonicalK8sProvisioner(context_for("canonical-k8s-1.32"))
    real = provisioner._run

    def broken(*args, **kwargs):
        if args == ("k8s", "status"):
            return subprocess.CompletedProcess(args, 1, "", "Error: failed to GET /k8sd/node: "
                                               "Database is not yet initialized\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(provisioner, "_run", broken)
    with pytest.raises(InfrastructureError, match="Database is not yet initialized"):
        provisioner.up()


# ---------------------------------------------------------------- the host (issue 20)


def test_a_foreign_containerd_fails_preflight_with_canonicals_remedy(cluster, context_for,
                                                                    tmp_path):
    """GitHub's runners ship Docker's containerd: `k8s bootstrap` refuses (the fake replays
    k8s-snap's message); preflight says so before anything is installed."""
    containerd = tmp_path / "run-containerd"
    containerd.mkdir()
    fake = cluster({"k8s": {"containerd_path": str(containerd)}})
    settings = context_for("canonical-k8s-1.32", containerd_path=str(containerd),
                           min_inotify_instances=0, min_inotify_watches=0).platform.settings
    with pytest.raises(ConfigError) as caught:
        CanonicalK8sProvisioner.preflight(settings, {})
    assert str(containerd) in caught.value.message and "k8s-snap#1192" in caught.value.message
    assert f"sudo rm -rf {containerd}" in caught.value.hint
    assert not fake.ran("snap install"), "nothing was installed"


def test_an_already_bootstrapped_node_keeps_its_own_containerd(cluster, context_for, tmp_path):
    containerd = tmp_path / "run-containerd"
    containerd.mkdir()
    cluster({"preinstalled_snaps": {"k8s": "1.32-classic/stable"}, "k8s": {"bootstrapped": True}})
    settings = context_for("canonical-k8s-1.32", containerd_path=str(containerd),
                           min_inotify_instances=0, min_inotify_watches=0).platform.settings
    CanonicalK8sProvisioner.preflight(settings, {})


def test_low_inotify_limits_fail_preflight_with_the_sysctl_remedy(context_for, tmp_path):
    from provisioners.kubernetes.host import HostLimits, check_inotify

    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_instances").write_text("128\n")      # Ubuntu's default
    (proc / "max_user_watches").write_text("655360\n")
    with pytest.raises(ConfigError) as caught:
        check_inotify(HostLimits(inotify_dir=str(proc)))
    assert "fs.inotify.max_user_instances is 128 (needs 1280)" in caught.value.message
    assert "max_user_watches" not in caught.value.message
    assert "sudo sysctl fs.inotify.max_user_instances=1280" in caught.value.hint
