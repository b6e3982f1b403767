"""deployments.juju: the bundle through jubilant, faked at the subprocess boundary (exact argv) and
with the fake `juju` CLI on PATH (transcripts of each code path)."""
# ruff: noqa: F811  (pytest fixtures imported from fakes.fixtures are parameters here)

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from pathlib import Path

import jubilant
import pytest
from fakes.cluster import FakeCluster, check_transcript
from fakes.fixtures import (  # noqa: F401  (pytest fixtures)
    RUN_ID,
    cluster,
    context_for,
    deploy_all,
    fake_api,
    local_channel,
    stub_mlflow,
)
from fakes.recording import recording
from fakes.subproc import FakeRun, Reply

from deployments.juju import bundle as jbundle
from deployments.juju import cli as jcli
from deployments.juju import controller as jcontroller
from deployments.juju import deployment as jdeployment
from deployments.juju import names as jnames
from deployments.juju import settings as jsettings
from deployments.juju import watch as jwatch
from harness.system.errors import InfrastructureError, Interrupted
from harness.system.redact import redact
from harness.system.waits import CANCEL, DeadlineExceeded, Terminal
from provisioners.api import Substrate

CLOUD = f"mm-{RUN_ID}-microk8s-1-32"
MODEL = f"mm-{RUN_ID}-2-22-stable"
REF = f"{CLOUD}:{MODEL}"
STATUS = ["juju", "status", "--model", REF, "--format", "json"]
VALUES = {"MODEL": MODEL, "CONTROLLER": CLOUD, "CLOUD": CLOUD, "SERVER_CHANNEL": "2.22/stable",
          "MINIO_CHANNEL": "ckf-1.10/stable", "TARGET_SERVER_CHANNEL": "2.22/stable",
          "TARGET_MINIO_CHANNEL": "ckf-1.10/stable"}


def status(name: str, **values: str) -> str:
    return recording(f"juju/{name}.json", **{**VALUES, **values})


@pytest.fixture(autouse=True)
def _no_cancel():
    CANCEL.clear()
    yield
    CANCEL.clear()


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    """subprocess.run faked; `juju bootstrap` (a polled process, not subprocess.run) recorded."""
    fake = FakeRun()
    fake.bootstraps = []
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.setattr(jcontroller, "bootstrap",
                        lambda ctx, juju, cloud, controller, timeout, config=():
                        fake.bootstraps.append((cloud, controller, timeout)))
    return fake


@pytest.fixture
def substrate(tmp_path: Path) -> Substrate:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nclusters: []\nusers:\n- name: admin\n  user:\n"
                          "    token: kube-token-0123456789\n")
    return Substrate(name="microk8s-1.32", kubeconfig=kubeconfig)


@pytest.fixture
def bundle_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pin the directory the bundle is copied to, so argv is exact."""
    where = tmp_path / "juju-data" / "bundle"

    def mkdtemp(prefix: str = "", dir: str | None = None) -> str:
        where.mkdir(parents=True, exist_ok=True)
        return str(where)

    monkeypatch.setattr(jdeployment.tempfile, "mkdtemp", mkdtemp)
    return where


def deployment(context_for, substrate: Substrate, tmp_path: Path,
               juju_controller: jcontroller.JujuController | None = None,
               **settings) -> jdeployment.JujuDeployment:
    """The exact-argv tests cover the bundle steps; the COS steps run with the fake CLI below.
    Cells of one platform share the `juju_controller` their provisioner owns."""
    options = settings.pop("options", {})
    settings.setdefault("cos_check", False)
    ctx = context_for("microk8s-1.32", options=options, **settings)
    owner = juju_controller or jcontroller.JujuController(ctx)
    return jdeployment.JujuDeployment(ctx, substrate,
                                      tmp_path / "reports" / "microk8s-1.32" / "2.22-stable", owner)


def expect_controller(fake_run: FakeRun) -> None:
    fake_run.handle(["juju", "add-k8s", CLOUD, "--client"],
                    recording("juju/add-k8s.stdout", CLOUD=CLOUD, SUBSTRATE="microk8s/localhost"))


def expect_model(fake_run: FakeRun, bundle_dir: Path, check=None) -> None:
    fake_run.handle(["juju", "add-model", "--no-switch", MODEL, CLOUD, "--controller", CLOUD],
                    Reply(stderr="Added model\n", check=check))
    fake_run.handle(DEPLOY(bundle_dir), Reply(stderr=recording("juju/deploy-bundle.stderr",
                                                               SERVER_CHANNEL="2.22/stable")))


def DEPLOY(bundle_dir: Path) -> list[str]:
    return ["juju", "deploy", "--model", REF, str(bundle_dir / "bundle.yaml"), "--trust",
            "--overlay", str(bundle_dir / "overlay.yaml")]


# ---------------------------------------------------------------- controller


def test_cloud_and_controller_are_created_once_per_platform(fake_run, context_for, substrate,
                                                            tmp_path):
    expect_controller(fake_run)
    first = deployment(context_for, substrate, tmp_path)
    second = deployment(context_for, substrate, tmp_path, juju_controller=first.juju_controller)
    assert first.juju_controller.ensure(substrate, first.juju, first.settings) == (CLOUD, CLOUD)
    assert second.juju_controller.ensure(substrate, second.juju, second.settings) == \
        (CLOUD, CLOUD)
    assert fake_run.argvs() == [["juju", "add-k8s", CLOUD, "--client"]]
    assert fake_run.calls[0].input == substrate.kubeconfig.read_text()  # kubeconfig on stdin
    assert fake_run.bootstraps == [(CLOUD, CLOUD, first.settings.bootstrap_timeout)]
    resources = {r.type: r.data for r in first.context.state.resources()}
    assert resources["juju-cloud"]["name"] == CLOUD
    assert resources["juju-controller"] == {"kind": "microk8s", "name": CLOUD, "cloud": CLOUD,
                                            "cluster_goes_away": False}
    assert "kube-token-0123456789" not in redact("token kube-token-0123456789")


def test_a_given_controller_is_reused_not_bootstrapped(fake_run, context_for, substrate, tmp_path):
    fake_run.handle(["juju", "add-k8s", CLOUD, "--controller", "prod", "--storage", "fast"],
                    "added\n")
    dep = deployment(context_for, substrate, tmp_path, storage_class="fast",
                     options={"controller": "prod"})
    assert dep.juju_controller.ensure(substrate, dep.juju, dep.settings) == (CLOUD, "prod")
    assert [r.type for r in dep.context.state.resources()] == ["juju-cloud"]


def test_bootstrap_failure_is_reported_with_jujus_error_and_remembered(cluster, context_for,
                                                                       tmp_path):
    fake = cluster({"juju": {"bootstrap": "fail"}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake.api.kubeconfig())
    substrate = Substrate(name="microk8s-1.32", kubeconfig=kubeconfig)
    dep = deployment(context_for, substrate, tmp_path)
    with pytest.raises(InfrastructureError) as caught:
        dep.juju_controller.ensure(substrate, dep.juju, dep.settings)
    assert "juju bootstrap of controller" in caught.value.message
    assert "failed to bootstrap model: creating controller stack" in caught.value.message
    assert "storage class" in caught.value.hint
    calls = len(fake.calls())
    with pytest.raises(InfrastructureError):   # the second cell gets the same error, no retry
        dep.juju_controller.ensure(substrate, dep.juju, dep.settings)
    assert len(fake.calls()) == calls
    assert "process" not in {r.type for r in dep.context.state.resources()}


def test_ctrl_c_stops_a_running_bootstrap(cluster, context_for, tmp_path):
    fake = cluster({"juju": {"bootstrap": "hang"}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake.api.kubeconfig())
    substrate = Substrate(name="microk8s-1.32", kubeconfig=kubeconfig)
    dep = deployment(context_for, substrate, tmp_path)
    threading.Timer(0.5, CANCEL.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        dep.juju_controller.ensure(substrate, dep.juju, dep.settings)
    assert time.monotonic() - started < 5
    types = [r.type for r in dep.context.state.resources()]
    assert "process" not in types, "the bootstrap process group was stopped and released"
    assert "juju-controller" in types, "the half-made controller stays recorded for down"


# ---------------------------------------------------------------- deploy + wait


def test_model_is_recorded_before_it_is_created_then_bundle_deployed_with_trust(
        fake_run, context_for, substrate, tmp_path, bundle_dir, monkeypatch):
    dep = deployment(context_for, substrate, tmp_path)
    seen_state = {}

    def check(kwargs):
        seen_state.update({r.type: r.data for r in dep.context.state.resources()})

    expect_controller(fake_run)
    expect_model(fake_run, bundle_dir, check=check)
    fake_run.handle(STATUS, status("status-deploying"), status("status-healthy"))
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    assert dep.deploy(local_channel("2.22/stable")) == "endpoint"
    assert seen_state["juju-model"] == {"kind": "microk8s", "name": MODEL, "controller": CLOUD}
    argvs = fake_run.argvs()
    assert argvs[1:3] == [
        ["juju", "add-model", "--no-switch", MODEL, CLOUD, "--controller", CLOUD],
        DEPLOY(bundle_dir)]
    assert argvs[3:] == [STATUS] * 3   # deploying, healthy, healthy (2 successes in a row)
    assert not bundle_dir.exists(), "the bundle copy is removed once Juju has read it"


def test_a_channel_without_bundle_deploys_the_three_charms(fake_run, context_for, substrate,
                                                           tmp_path, monkeypatch):
    expect_controller(fake_run)
    fake_run.handle(["juju", "add-model", "--no-switch", MODEL, CLOUD, "--controller", CLOUD], "")
    expected = [
        ["juju", "deploy", "--model", REF, "minio", "mlflow-minio", "--channel", "ckf-1.10/stable",
         "--trust"],
        ["juju", "deploy", "--model", REF, "mysql-k8s", "mlflow-mysql", "--channel", "8.0/stable",
         "--trust", "--constraints", "mem=2G"],
        ["juju", "deploy", "--model", REF, "mlflow-server", "mlflow-server", "--channel",
         "2.22/stable", "--trust", "--config", "enable_mlflow_nodeport=false"],
        ["juju", "integrate", "--model", REF, "mlflow-server", "mlflow-minio"],
        ["juju", "integrate", "--model", REF, "mlflow-server", "mlflow-mysql"],
    ]
    for argv in expected:
        fake_run.handle(argv, "")
    fake_run.handle(STATUS, status("status-healthy"))
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    channel = dataclasses.replace(local_channel("2.22/stable"), bundle=None)
    deployment(context_for, substrate, tmp_path).deploy(channel)
    assert fake_run.argvs()[2:7] == expected


def _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir, statuses, **settings):
    expect_controller(fake_run)
    expect_model(fake_run, bundle_dir)
    fake_run.handle(STATUS, *statuses)
    return deployment(context_for, substrate, tmp_path, **settings)


def test_a_unit_in_error_past_its_grace_ends_the_wait_within_one_poll(fake_run, context_for,
                                                                     substrate, tmp_path,
                                                                     bundle_dir):
    seen = {}
    error = Reply(stdout=status("status-error"),
                  check=lambda kwargs: seen.setdefault("error_at", time.monotonic()))
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-deploying"), error], poll_interval=1.0, error_grace=0)
    fake_run.handle(["juju", "show-status-log", "--model", REF, "mlflow-server/0", "-n", "25"],
                    recording("juju/show-status-log-error.txt"))
    with pytest.raises(Terminal) as caught:
        dep.deploy(local_channel("2.22/stable"))
    elapsed = time.monotonic() - seen["error_at"]
    assert elapsed < 1.0, f"the wait went on for {elapsed:.2f}s after the error"
    message = caught.value.message
    assert message.startswith('unit mlflow-server/0 is in error: hook failed: "install"')
    assert "juju-unit  error        hook failed" in message   # the unit's status history
    assert fake_run.argvs().count(STATUS) == 2, "no poll after the error"


def test_transient_blocked_and_waiting_within_the_grace_period_pass(fake_run, context_for,
                                                                    substrate, tmp_path,
                                                                    bundle_dir, monkeypatch):
    statuses = [status("status-deploying"), status("status-blocked"), status("status-blocked"),
                status("status-deploying"), status("status-healthy")]
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir, statuses,
                    blocked_grace=30)
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    assert dep.deploy(local_channel("2.22/stable")) == "endpoint"
    assert fake_run.argvs().count(STATUS) == 6


def test_blocked_longer_than_the_grace_period_fails_with_the_message(fake_run, context_for,
                                                                     substrate, tmp_path,
                                                                     bundle_dir):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-blocked")], blocked_grace=0.3)
    fake_run.handle(["juju", "show-status-log", "--model", REF, "mlflow-server/0", "-n", "25"],
                    recording("juju/show-status-log-healthy.txt"))
    started = time.monotonic()
    with pytest.raises(Terminal) as caught:
        dep.deploy(local_channel("2.22/stable"))
    assert time.monotonic() - started < 5
    assert "unit mlflow-server/0 has been blocked for" in caught.value.message
    assert "Please add relation to the database" in caught.value.message


def test_grace_is_per_unit_and_resets_when_the_unit_leaves_blocked():
    clock = {"now": 0.0}
    watch = jwatch.BundleWatch(jsettings.BUNDLE_APPS, blocked_grace=10, clock=lambda: clock["now"])
    blocked = jubilant.Status._from_dict(json.loads(status("status-blocked")))
    deploying = jubilant.Status._from_dict(json.loads(status("status-deploying")))
    assert watch.error(blocked) is False
    clock["now"] = 9
    assert watch.error(deploying) is False        # left blocked: the grace starts again
    clock["now"] = 15
    assert watch.error(blocked) is False
    clock["now"] = 24
    assert watch.error(blocked) is False
    clock["now"] = 26
    with pytest.raises(Terminal, match="blocked for 11s"):
        watch.error(blocked)


def test_waiting_forever_ends_at_the_deadline_with_the_last_status(fake_run, context_for,
                                                                   substrate, tmp_path,
                                                                   bundle_dir):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-deploying")], options={"deploy_timeout": 0.5})
    with pytest.raises(DeadlineExceeded) as caught:
        dep.deploy(local_channel("2.22/stable"))
    message = caught.value.message
    assert "timed out after 0s waiting for the 2.22/stable bundle" in message
    assert "mlflow-server/0: waiting/executing (Waiting for object-storage relation data)" \
        in message


def test_a_few_failed_status_calls_in_a_row_are_retried(fake_run, context_for, substrate,
                                                        tmp_path, bundle_dir, monkeypatch):
    blip = Reply(returncode=1, stderr="ERROR connection is shut down\n")
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [blip, blip, status("status-deploying"), status("status-healthy")])
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    assert dep.deploy(local_channel("2.22/stable")) == "endpoint"


def test_status_failing_for_good_ends_the_wait_with_jujus_error(fake_run, context_for, substrate,
                                                                tmp_path, bundle_dir):
    gone = Reply(returncode=1, stderr='ERROR controller "x" not found\n')
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir, [gone])
    with pytest.raises(InfrastructureError, match='controller "x" not found'):
        dep.deploy(local_channel("2.22/stable"))
    assert fake_run.argvs().count(STATUS) == jsettings.STATUS_RETRIES + 1


def test_ctrl_c_ends_the_wait_at_the_next_poll(fake_run, context_for, substrate, tmp_path,
                                               bundle_dir):
    cancel = Reply(stdout=status("status-deploying"), check=lambda kwargs: CANCEL.set())
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir, [cancel])
    with pytest.raises(Interrupted):
        dep.deploy(local_channel("2.22/stable"))
    assert fake_run.argvs().count(STATUS) == 1


# ---------------------------------------------------------------- upgrade


def _refreshes(fake: FakeCluster) -> list[str]:
    return [line.split(" ", 4)[-1] for line in fake.lines("juju")
            if line.startswith("juju refresh")]


def test_upgrade_refreshes_minio_then_server_in_the_documented_order(cluster, context_for,
                                                                     tmp_path, stub_mlflow):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, cos_check=False)
    dep.deploy(local_channel("2.15/stable"))
    with pytest.raises(InfrastructureError, match="juju/juju#20830"):   # the server's refresh
        dep.upgrade(local_channel("2.22/stable"))                      # crosses bases
    assert _refreshes(fake) == ["mlflow-minio --channel ckf-1.10/stable",
                                "mlflow-server --channel 2.22/stable"]
    dep.teardown()
    provisioner.down()


def test_upgrade_leaves_minio_alone_when_its_channel_does_not_change(cluster, context_for,
                                                                     tmp_path, stub_mlflow):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, cos_check=False)
    dep.deploy(local_channel("2.22/stable"))
    dep.upgrade(local_channel("latest/edge"))
    assert _refreshes(fake) == ["mlflow-server --channel latest/edge"]
    dep.teardown()
    provisioner.down()


def test_a_unit_in_error_after_refresh_fails_the_upgrade(cluster, context_for, tmp_path,
                                                         stub_mlflow):
    fake = cluster({"juju": {"refresh_status": ["status-upgrade-error.json"]}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, cos_check=False, error_grace=0)
    dep.deploy(local_channel("2.22/stable"))
    with pytest.raises(Terminal, match='hook failed: "upgrade-charm"'):
        dep.upgrade(local_channel("latest/edge"))
    dep.teardown()
    provisioner.down()


# ---------------------------------------------------------------- teardown + janitor

DESTROY = ["juju", "destroy-model", REF, "--no-prompt", "--destroy-storage"]
FORCED = [*DESTROY, "--force", "--no-wait", "--timeout", "120s"]


def test_teardown_destroys_the_model_and_releases_it(fake_run, context_for, substrate, tmp_path,
                                                     bundle_dir, monkeypatch):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-healthy")])
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    dep.deploy(local_channel("2.22/stable"))
    fake_run.handle(DESTROY, Reply(stderr=recording("juju/destroy-model.stderr")))
    dep.teardown()
    dep.teardown()  # idempotent
    assert fake_run.argvs()[-1] == DESTROY and fake_run.argvs().count(DESTROY) == 1
    assert fake_run.calls[-1].timeout == jsettings.DEFAULT_TEARDOWN_TIMEOUT  # timeouts.teardown
    assert "juju-model" not in {r.type for r in dep.context.state.resources()}


@pytest.mark.parametrize("failure", [Reply(returncode=1, stderr="ERROR cannot destroy model: "
                                           "model not empty (model not empty)\n"),
                                     Reply(timeout=True)], ids=["fails", "deadline"])
def test_teardown_forces_the_destroy_when_the_normal_one_fails(failure, fake_run, context_for,
                                                               substrate, tmp_path, bundle_dir,
                                                               monkeypatch):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-healthy")], options={"teardown_timeout": 42})
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    dep.deploy(local_channel("2.22/stable"))
    fake_run.handle(DESTROY, failure)
    fake_run.handle(FORCED, "")
    dep.teardown()
    assert fake_run.argvs()[-2:] == [DESTROY, FORCED]
    assert fake_run.calls[-1].timeout == 42
    assert "juju-model" not in {r.type for r in dep.context.state.resources()}


def test_janitor_destroys_a_recorded_model_forcefully_and_tolerates_it_being_gone(fake_run):
    forced = ["juju", "destroy-model", "ctl:mm-x-2-22-stable", "--no-prompt", "--destroy-storage",
              "--force", "--no-wait", "--timeout", "120s"]
    fake_run.handle(forced, "", Reply(returncode=1, stderr='ERROR model "mm-x-2-22-stable" not '
                                                          'found (not found)\n'))
    resource = {"type": "juju-model", "name": "mm-x-2-22-stable", "controller": "ctl"}
    jcontroller.destroy_recorded_model(resource)
    jcontroller.destroy_recorded_model(resource)
    assert fake_run.argvs() == [forced, forced]


def test_release_platform_destroys_what_the_run_created(fake_run, context_for, substrate,
                                                        tmp_path):
    expect_controller(fake_run)
    dep = deployment(context_for, substrate, tmp_path)
    dep.juju_controller.ensure(substrate, dep.juju, dep.settings)
    destroy = ["juju", "destroy-controller", CLOUD, "--no-prompt", "--destroy-all-models",
               "--destroy-storage"]
    kill = ["juju", "kill-controller", CLOUD, "--no-prompt", "--timeout", "60s"]
    unregister = ["juju", "unregister", CLOUD, "--no-prompt"]
    fake_run.handle(destroy, Reply(timeout=True))
    fake_run.handle(kill, Reply(returncode=1, stderr="ERROR getting controller environ: "
                                                     "unable to get bootstrap information\n"))
    fake_run.handle(unregister, "")
    fake_run.handle(["juju", "remove-k8s", CLOUD, "--client"], "")
    dep.juju_controller.release(timeout=30, cluster_goes_away=True)
    dep.juju_controller.release()   # idempotent
    assert fake_run.argvs()[1:] == [destroy, kill, unregister,
                                    ["juju", "remove-k8s", CLOUD, "--client"]]
    assert dep.context.state.resources() == []


def test_a_controller_that_cannot_be_killed_is_an_error_on_a_cluster_that_stays(
        fake_run, context_for, substrate, tmp_path):
    expect_controller(fake_run)
    dep = deployment(context_for, substrate, tmp_path)
    dep.juju_controller.ensure(substrate, dep.juju, dep.settings)
    fake_run.handle(["juju", "destroy-controller", CLOUD, "--no-prompt", "--destroy-all-models",
                     "--destroy-storage"], Reply(returncode=1, stderr="ERROR boom\n"))
    fake_run.handle(["juju", "kill-controller", CLOUD, "--no-prompt", "--timeout", "60s"],
                    Reply(returncode=1, stderr="ERROR still boom\n"))
    fake_run.handle(["juju", "remove-k8s", CLOUD, "--client"], "")
    with pytest.raises(InfrastructureError, match="still boom"):
        dep.juju_controller.release(cluster_goes_away=False)
    assert [r.type for r in dep.context.state.resources()] == ["juju-controller"]


# ---------------------------------------------------------------- seams, names, plan, secrets


def test_every_juju_command_has_a_deadline_and_its_own_session(fake_run):
    fake_run.handle(["juju", "status", "--model", "c:m", "--format", "json"],
                    status("status-healthy"))
    juju = jcli._Juju(model="c:m", command_timeout=7)
    assert "mlflow-server" in juju.status().apps
    assert fake_run.calls[0].timeout == 7   # FakeRun asserts start_new_session=True too


def test_names_are_valid_juju_and_kubernetes_names(context_for):
    ctx = context_for("microk8s-1.32")
    assert jnames.cloud_name(ctx) == CLOUD
    assert jnames.model_name(ctx, "upgrade-2.15-stable-to-2.22-stable") == \
        f"mm-{RUN_ID}-upgrade-2-15-stable-to-2-22-stable"
    long = jnames.model_name(ctx, "upgrade-2.22-stable-to-latest-edge-and-some-more-words")
    assert len(long) <= 63 and long.startswith("mm-")
    assert jnames.model_name(ctx, "x" * 80) != jnames.model_name(ctx, "x" * 81)


def test_plan_for_is_the_exact_command_sequence_and_runs_nothing(fake_run, context_for):
    from harness.config.matrix import Cell

    ctx = context_for("microk8s-1.32")
    cell = Cell(ctx.platform, local_channel("2.15/stable"), ("tracking",),
                upgrade_to=local_channel("2.22/stable"))
    lines = jdeployment.JujuDeployment.plan_for(ctx, cell)
    model = f"mm-{RUN_ID}-upgrade-2-15-stable-to-2-22-stable"
    text = "\n".join(lines)
    assert f"juju add-k8s {CLOUD} --client" in lines[0]
    assert f"juju bootstrap {CLOUD} {CLOUD} --no-switch" in lines[1]
    assert lines[2] == f"juju add-model --no-switch {model} {CLOUD} --controller {CLOUD}"
    assert f"juju deploy --model {CLOUD}:{model} {jbundle._juju_data_dir()}/mlflow-matrix-<run-id>-" \
           "<random>/bundle.yaml --trust" in text
    assert f"juju refresh --model {CLOUD}:{model} mlflow-minio --channel ckf-1.10/stable" in text
    assert f"juju refresh --model {CLOUD}:{model} mlflow-server --channel 2.22/stable" in text
    assert f"juju destroy-model {CLOUD}:{model} --no-prompt --destroy-storage" in text
    assert "--force --no-wait --timeout 120s" in text
    assert fake_run.calls == []


def test_minio_keys_come_from_the_relation_data_and_never_show(fake_run, context_for, substrate,
                                                               tmp_path, bundle_dir, monkeypatch):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-healthy")])
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    dep.deploy(local_channel("2.22/stable"))
    secret = "K3Y" + "9" * 27
    fake_run.handle(["juju", "show-unit", "--model", REF, "mlflow-server/0", "--format", "json"],
                    recording("juju/show-unit-mlflow-server.json", ACCESS_KEY="minio",
                              SECRET_KEY=secret, MINIO_PORT="9000", MODEL=MODEL,
                              DB_PASSWORD="pw"))
    data = dep.minio_relation_data()
    creds = dep._credentials(data)
    assert (creds.access_key, creds.secret_key) == ("minio", secret)
    assert data["service"] == "mlflow-minio" and data["port"] == 9000
    assert secret not in repr(creds) and redact(f"key={secret} again {secret}").count(secret) == 0


def test_minio_keys_fall_back_to_the_get_minio_credentials_action(fake_run, context_for,
                                                                  substrate, tmp_path,
                                                                  bundle_dir, monkeypatch):
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-healthy")])
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    dep.deploy(local_channel("2.22/stable"))
    fake_run.handle(["juju", "run", "--model", REF, "--format", "json", "mlflow-server/0",
                     "get-minio-credentials", "--wait", "120s"],
                    recording("juju/run-get-minio-credentials.json", ACCESS_KEY="minio",
                              SECRET_KEY="ACTIONSECRET0123456789"))
    creds = dep._credentials({})
    assert creds.secret_key == "ACTIONSECRET0123456789"
    assert "ACTIONSECRET0123456789" not in redact("got ACTIONSECRET0123456789")


# ---------------------------------------------------------------- with the fake CLIs (transcripts)


def _run_deploy(fake: FakeCluster, context_for, tmp_path, **settings):
    from provisioners.kubernetes.microk8s import MicroK8sProvisioner

    options = settings.pop("options", {})
    ctx = context_for("microk8s-1.32", options=options, **settings)
    provisioner = MicroK8sProvisioner(ctx)
    substrate = provisioner.up()
    dep = provisioner.deployment(substrate, tmp_path / "reports" / "microk8s-1.32" / "2.22-stable")
    return provisioner, dep


def test_healthy_deployment_returns_a_working_endpoint(cluster, context_for, tmp_path,
                                                       stub_mlflow):
    fake = cluster({"juju": {"status": ["status-deploying.json", "status-blocked.json",
                                        "status-healthy.json"]}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path)
    endpoint = dep.deploy(local_channel("2.22/stable"))
    assert endpoint.mlflow_version == "2.22.0" and "/version" in stub_mlflow.paths
    assert endpoint.tracking_uri == f"http://127.0.0.1:{stub_mlflow.port}"
    assert endpoint.s3_endpoint_url == f"http://127.0.0.1:{stub_mlflow.port}"
    assert endpoint.artifact_bucket == "mlflow"
    assert endpoint.s3_credentials.secret_key == fake.secret_key
    assert fake.secret_key not in endpoint.public_json()
    dep.teardown()
    provisioner.down()
    check_transcript("juju-healthy-deploy", fake.transcript())


def test_unit_error_transcript(cluster, context_for, tmp_path):
    fake = cluster({"juju": {"status": ["status-deploying.json", "status-error.json"]}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, error_grace=0)
    with pytest.raises(Terminal, match='hook failed: "install"'):
        dep.deploy(local_channel("2.22/stable"))
    dep.teardown()
    provisioner.down()
    check_transcript("juju-unit-error", fake.transcript())


def test_bootstrap_failure_transcript(cluster, context_for, tmp_path):
    fake = cluster({"juju": {"bootstrap": "fail"}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path)
    with pytest.raises(InfrastructureError, match="failed to bootstrap model"):
        dep.deploy(local_channel("2.22/stable"))
    dep.teardown()
    provisioner.down()
    assert not fake.world()["controllers"] and not fake.world()["clouds"]
    check_transcript("juju-bootstrap-failure", fake.transcript())


def test_upgrade_transcript(cluster, context_for, tmp_path):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path)
    dep.deploy(local_channel("2.22/stable"))
    endpoint = dep.upgrade(local_channel("latest/edge"))
    assert endpoint.mlflow_version == "2.22.0"   # the stub server; the wait is what is checked
    model = next(iter(fake.world()["models"].values()))
    assert model["apps"]["mlflow-server"] == "latest/edge"
    assert model["revisions"]["mlflow-server"] == 1020 and model["upgrading"]["mlflow-server"] == 0
    dep.teardown()
    provisioner.down()
    check_transcript("juju-upgrade-2.22-to-latest-edge", fake.transcript(collapse=True))


def test_restart_recreates_the_server_pod_and_finds_the_endpoint_again(cluster, context_for,
                                                                       tmp_path, fake_api):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path)
    first = dep.deploy(local_channel("2.22/stable"))
    from provisioners.api import Restartable, Upgradable

    assert isinstance(dep, Restartable) and isinstance(dep, Upgradable)
    again = dep.restart()
    assert again.tracking_uri == first.tracking_uri and again.mlflow_version == "2.22.0"
    assert any(method == "DELETE" and path.endswith("/pods/mlflow-server-0")
               for method, path in fake_api.requests)
    dep.teardown()
    provisioner.down()


def test_stuck_destroy_is_forced_within_the_deadline(cluster, context_for, tmp_path):
    fake = cluster({"juju": {"status": ["status-healthy.json"], "destroy_model": "hang"}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path,
                                   options={"teardown_timeout": 1.0})
    dep.deploy(local_channel("2.22/stable"))
    started = time.monotonic()
    dep.teardown()
    assert time.monotonic() - started < 10
    assert not fake.world()["models"]
    provisioner.down()
    check_transcript("juju-destroy-forced", fake.transcript())


def test_parallel_cells_share_one_controller(cluster, context_for, tmp_path):
    fake = cluster()
    from provisioners.kubernetes.microk8s import MicroK8sProvisioner

    ctx = context_for("microk8s-1.32")
    provisioner = MicroK8sProvisioner(ctx)
    substrate = provisioner.up()
    deps = [provisioner.deployment(substrate, tmp_path / "r" / cell)
            for cell in ("2.15-stable", "2.22-stable")]
    assert not deploy_all(deps, ("2.15/stable", "2.22/stable"))
    assert len([line for line in fake.lines("juju") if line.startswith("juju bootstrap")]) == 1
    assert len(fake.world()["models"]) == 2
    for dep in deps:
        dep.teardown()
    provisioner.down()
    assert ctx.state.resources() == []


# ---------------------------------------------------------------- COS relation data (issue 13)


def _cos_lines(fake: FakeCluster, agent: str = "opentelemetry-collector-k8s") -> list[str]:
    return [line for line in fake.lines("juju")
            if agent in line and not line.startswith("juju show-status-log")]


def _cell(ctx, channel: str):
    from harness.config.matrix import Cell

    return Cell(ctx.platform, local_channel(channel), ("tracking",))


@pytest.mark.parametrize(("agent", "channel"), [("opentelemetry-collector-k8s", "2/stable"),
                                               ("grafana-agent-k8s", "latest/stable")])
def test_healthy_deploy_relates_the_cos_agent_and_checks_the_cos_data(agent, channel, cluster,
                                                                       context_for, tmp_path,
                                                                       stub_mlflow):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, cos_agent=agent)
    dep.deploy(local_channel("2.22/stable"))
    assert dep.cos is not None and dep.cos.problems == ()
    assert dep.cos.scrape_jobs[0]["metrics_path"] == "/metrics"
    assert dep.cos.alert_rules == ("MLFlowServerUnitIsUnavailable",)
    assert dep.cos.dashboards == ("MLflow",)
    ran = _cos_lines(fake, agent)
    assert [line.split(f"{REF} ", 1)[1] for line in ran] == [
        f"{agent} --channel {channel} --trust",
        f"mlflow-server:metrics-endpoint {agent}:metrics-endpoint",
        f"mlflow-server:grafana-dashboard {agent}:grafana-dashboards-consumer",
        f"{agent}/0 --format json"]
    # the agent was waited on: its first status was still executing
    after = fake.lines("juju")[fake.lines("juju").index(ran[2]) + 1:]
    assert after[:3] == [" ".join(STATUS)] * 3
    plan = plan_text(dep.context, _cell(dep.context, "2.22/stable"))
    assert all(line in plan for line in ran[:3])
    assert f"juju show-unit --model {REF} {agent}/0 --format json" in plan
    dep.teardown()
    provisioner.down()
    assert not fake.world()["models"], "destroying the model removes the agent too"


def plan_text(ctx, cell) -> str:
    return "\n".join(jdeployment.JujuDeployment.plan_for(ctx, cell))


def test_missing_metrics_endpoint_data_fails_the_deploy_naming_the_relation(cluster, context_for,
                                                                            tmp_path,
                                                                            stub_mlflow):
    fake = cluster({"juju": {"cos_show_unit": "no-metrics-endpoint"}})
    provisioner, dep = _run_deploy(fake, context_for, tmp_path)
    with pytest.raises(InfrastructureError) as caught:
        dep.deploy(local_channel("2.22/stable"))
    message = caught.value.message
    assert "no `metrics-endpoint` relation with mlflow-server" in message
    assert "grafana-dashboard" not in message.split(":", 1)[1], "the dashboard data was there"
    assert "cos_check: false" in caught.value.render()
    dep.teardown()
    provisioner.down()
    assert dep.context.state.resources() == []


def test_cos_check_false_skips_the_steps_and_the_plan_says_so(cluster, context_for, tmp_path,
                                                              stub_mlflow):
    fake = cluster()
    provisioner, dep = _run_deploy(fake, context_for, tmp_path, cos_check=False)
    dep.deploy(local_channel("2.22/stable"))
    assert dep.cos is None and _cos_lines(fake) == []
    plan = plan_text(dep.context, _cell(dep.context, "2.22/stable"))
    assert "COS relation check skipped (cos_check: false)" in plan
    assert "opentelemetry-collector-k8s --channel" not in plan
    dep.teardown()
    provisioner.down()


def test_the_agent_channel_is_a_setting(context_for):
    ctx = context_for("microk8s-1.32", cos_agent="grafana-agent-k8s", cos_agent_channel="1/edge")
    plan = plan_text(ctx, _cell(ctx, "2.22/stable"))
    model = f"mm-{RUN_ID}-2-22-stable"
    assert f"juju deploy --model {CLOUD}:{model} grafana-agent-k8s --channel 1/edge --trust" \
        in plan


def test_a_blocked_cos_agent_is_settled_but_a_blocked_bundle_unit_is_not():
    clock = {"now": 0.0}
    agent_app = "opentelemetry-collector-k8s"
    watch = jwatch.BundleWatch((*jsettings.BUNDLE_APPS, agent_app),
                               blocked_grace=10, may_block=(agent_app,),
                               clock=lambda: clock["now"])
    data = json.loads(status("status-healthy"))
    agent = json.loads(json.dumps(data["applications"]["mlflow-minio"]))
    agent["charm"] = agent["charm-name"] = agent_app
    agent["application-status"] = {"current": "blocked", "message": "no outgoing relation"}
    unit = agent["units"].pop("mlflow-minio/0")
    unit["workload-status"] = dict(agent["application-status"])
    agent["units"] = {jsettings.cos_agent_unit(agent_app): unit}
    data["applications"][agent_app] = agent
    settled = jubilant.Status._from_dict(data)
    assert watch.ready(settled) is True
    clock["now"] = 100
    assert watch.error(settled) is False
    data["applications"]["mlflow-server"]["units"]["mlflow-server/0"]["workload-status"] = {
        "current": "blocked", "message": "Please add relation to the database"}
    stuck = jubilant.Status._from_dict(data)
    assert watch.ready(stuck) is False
    watch.error(stuck)
    clock["now"] = 111
    with pytest.raises(Terminal, match="mlflow-server/0 has been blocked"):
        watch.error(stuck)


# ---------------------------------------------------------------- documented procedures


def _upgradable(fake_run, context_for, substrate, tmp_path, bundle_dir, monkeypatch, source):
    old = {"SERVER_CHANNEL": source.name,
           "MINIO_CHANNEL": "ckf-1.9/stable" if source.name == "2.15/stable" else "ckf-1.10/stable"}
    dep = _deployed(fake_run, context_for, substrate, tmp_path, bundle_dir,
                    [status("status-healthy", **old)])
    monkeypatch.setattr(jdeployment.JujuDeployment, "_endpoint", lambda self: "endpoint")
    dep.deploy(source)
    return dep, old


def test_the_2_15_to_2_22_guide_runs_its_two_refreshes_as_written(
        fake_run, context_for, substrate, tmp_path, bundle_dir, monkeypatch):
    """Each guide step is its own command: MinIO to the guide's channel, then the server to the
    target bundle's channel, each followed by the bundle settling (deployments/juju/guide.py)."""
    from harness.config.matrix import load_matrix

    guide = next(g for g in load_matrix().guides if g.id == "upgrade-2.15-to-2.22")
    dep, _old = _upgradable(fake_run, context_for, substrate, tmp_path, bundle_dir, monkeypatch,
                           local_channel("2.15/stable"))
    target = {"TARGET_SERVER_CHANNEL": "2.22/stable", "TARGET_MINIO_CHANNEL": "ckf-1.10/stable"}
    fake_run.handle(STATUS, status("status-refreshing", **target),
                    status("status-refreshed", **target))
    refresh_minio = ["juju", "refresh", "--model", REF, "mlflow-minio", "--channel",
                     "ckf-1.10/stable"]
    refresh_server = ["juju", "refresh", "--model", REF, "mlflow-server", "--channel",
                      "2.22/stable"]
    fake_run.handle(refresh_minio, "")
    fake_run.handle(refresh_server, "")
    before = len(fake_run.calls)
    minio, server = guide.steps
    assert dep.run_guide_step(guide, minio, local_channel("2.22/stable")) == "endpoint"
    assert dep.run_guide_step(guide, server, local_channel("2.22/stable")) == "endpoint"
    refreshes = [a for a in fake_run.argvs()[before:] if a[1] == "refresh"]
    assert refreshes == [refresh_minio, refresh_server]
    assert fake_run.argvs()[before:].index(refresh_server) > 1  # the bundle settled in between
