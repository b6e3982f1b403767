"""Fake `juju`, `microk8s`, `k8s`, `snap`, `kubectl` and `sudo` executables.

Each fake checks the arguments it receives the way the real tool would (unknown flags, missing
values, missing required flags and objects that do not exist are errors, with the real tool's
wording and exit code), keeps a little state between invocations (clouds, controllers, models,
installed snaps, enabled addons), replays recorded real-world output from `recordings/` and
appends every invocation to `calls.jsonl` in the state directory.

The scenario (`scenario.json` in the state directory, written by `FakeCluster`) chooses which
recordings to replay, e.g. the sequence of `juju status` answers after a deploy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import string
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent / "recordings"


class Usage(Exception):
    """Bad command line: the real tool prints a message and exits 2."""


class Hang(Exception):
    """The real tool would block (a stuck destroy, a followed log): sleep outside the lock."""


class Fail(Exception):
    def __init__(self, message: str, code: int = 1, stdout: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.stdout = stdout


class Context:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.scenario: dict[str, Any] = json.loads((state_dir / "scenario.json").read_text())
        path = state_dir / "state.json"
        self.state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for key in ("clouds", "controllers", "models", "snaps", "addons", "features", "counters"):
            self.state.setdefault(key, {})
        if not self.state.get("seeded"):
            self.state["seeded"] = True
            for name, channel in self.scenario.get("preinstalled_snaps", {}).items():
                self.state["snaps"][name] = {"channel": channel, "preinstalled": True}
            for addon in self.scenario.get("microk8s", {}).get("enabled", []):
                self.state["addons"][addon] = True
            for feature in self.scenario.get("k8s", {}).get("enabled", []):
                self.state["features"][feature] = True
        for name in self.scenario.get("juju", {}).get("controllers", []):
            self.state["controllers"].setdefault(name, {"cloud": "existing-cloud"})
        self.values: dict[str, str] = dict(self.scenario.get("values", {}))

    def save(self) -> None:
        """Atomically: the fake Kubernetes API reads this file while a fake CLI writes it."""
        tmp = self.dir / f"state.json.{os.getpid()}"
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.dir / "state.json")

    def rec(self, name: str, **extra: str) -> str:
        text = (RECORDINGS / name).read_text(encoding="utf-8")
        return string.Template(text).safe_substitute({**self.values, **extra})

    def next_in(self, key: str, sequence: Sequence[str]) -> str:
        """The next entry of a sequence; the last one repeats."""
        index = self.state["counters"].get(key, 0)
        self.state["counters"][key] = index + 1
        return sequence[min(index, len(sequence) - 1)]


def parse(argv: Sequence[str], *, flags: dict[str, bool], positional: tuple[int, int],
          repeat: Sequence[str] = ()) -> tuple[list[str], dict[str, Any]]:
    """Go-flag style parser: `flags` maps a flag to whether it takes a value."""
    args: list[str] = []
    opts: dict[str, Any] = {}
    items = list(argv)
    while items:
        item = items.pop(0)
        if item.startswith("-") and item != "-":
            name, eq, value = item.partition("=")
            if name not in flags:
                raise Usage(f"option provided but not defined: {name}")
            if flags[name]:
                if not eq:
                    if not items:
                        raise Usage(f"option needs an argument: {name}")
                    value = items.pop(0)
                if name in repeat:
                    opts.setdefault(name, []).append(value)
                else:
                    opts[name] = value
            else:
                if eq:
                    raise Usage(f"invalid boolean flag {name}: {value}")
                opts[name] = True
        else:
            args.append(item)
    low, high = positional
    if len(args) < low:
        raise Usage("missing arguments")
    if len(args) > high:
        raise Usage(f"unrecognized args: {json.dumps(args[high:])}")
    return args, opts


def model_key(ctx: Context, ref: str | None) -> str:
    if not ref:
        raise Fail("ERROR no current model, use juju switch to select a model on which to operate")
    key = ref if ":" in ref else f"{ctx.state.get('current_controller', '')}:{ref}"
    if key not in ctx.state["models"]:
        name = ref.split(":", 1)[-1]
        raise Fail(f'ERROR model "{name}" not found (not found)')
    return key


# ---------------------------------------------------------------- juju


def juju(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    if not argv:
        raise Usage("no command")
    command, rest = argv[0], argv[1:]
    handler = JUJU.get(command)
    if handler is None:
        raise Fail(f'ERROR juju: "{command}" is not a juju command. See "juju --help".')
    locked = int(ctx.scenario.get("juju", {}).get("lock_errors", 0))
    if locked and ctx.next_in("lock-errors", [*range(locked), -1]) >= 0:
        # another juju process holds the client store lock (jubilant#192, juju/juju#21212)
        raise Fail(LOCK_ERROR)
    return handler(ctx, rest, stdin)


LOCK_ERROR = "ERROR cannot acquire lock file to get the current controller name: " \
             "no such file or directory"


def juju_add_k8s(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--client": False, "--controller": True, "-c": True,
                                    "--context-name": True, "--storage": True,
                                    "--cluster-name": True, "--skip-storage": False,
                                    "--region": True, "--cloud": True, "--credential": True},
                       positional=(1, 1))
    name = args[0]
    controller = opts.get("--controller") or opts.get("-c")
    if not opts.get("--client") and not controller:
        raise Fail("ERROR This operation can be applied to both a copy on this client and to "
                   "the one on a controller.\nNo current controller was detected and there are "
                   "no registered controllers on this client: either bootstrap one or register "
                   "one.")
    if "apiVersion" not in stdin or "clusters" not in stdin:
        raise Fail("ERROR No k8s cluster definitions found in config")
    if controller and controller not in ctx.state["controllers"]:
        raise Fail(f"ERROR controller {controller} not found")
    if name in ctx.state["clouds"]:
        raise Fail(f'ERROR cloud "{name}" already exists')
    if ctx.scenario.get("juju", {}).get("storage_required") and not opts.get("--storage"):
        raise Fail('ERROR Juju needs to know what storage class to use to provision workload and '
                   'operator storage.\nRun add-k8s again, using --storage=<name> to specify the '
                   'storage class to use.')
    ctx.state["clouds"][name] = {"controller": controller or "", "storage": opts.get("--storage"),
                                 "context": opts.get("--context-name")}
    return 0, ctx.rec("juju/add-k8s.stdout", CLOUD=name), ""


def juju_bootstrap(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--no-switch": False, "--config": True,
                                    "--bootstrap-constraints": True, "--model-default": True,
                                    "--constraints": True, "--credential": True},
                       positional=(2, 2), repeat=("--config", "--model-default"))
    cloud, name = args
    if cloud not in ctx.state["clouds"]:
        raise Fail(f'ERROR cloud {cloud} not found\nUse "juju clouds" to see available clouds.')
    if name in ctx.state["controllers"]:
        raise Fail(f'ERROR controller "{name}" already exists')
    if ctx.scenario.get("juju", {}).get("bootstrap") == "hang":
        raise Hang()
    if ctx.scenario.get("juju", {}).get("bootstrap") == "fail":
        return 1, "", ctx.rec("juju/bootstrap-fail.stderr", CLOUD=cloud, CONTROLLER=name)
    ctx.state["controllers"][name] = {"cloud": cloud, "config": opts.get("--config") or []}
    return 0, "", ctx.rec("juju/bootstrap-ok.stderr", CLOUD=cloud, CONTROLLER=name)


def juju_add_model(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--no-switch": False, "--controller": True, "-c": True,
                                    "--config": True, "--credential": True, "--owner": True},
                       positional=(1, 2), repeat=("--config",))
    name = args[0]
    cloud = args[1] if len(args) > 1 else ""
    controller = opts.get("--controller") or opts.get("-c") or ctx.state.get("current_controller")
    if not controller or controller not in ctx.state["controllers"]:
        raise Fail(f"ERROR controller {controller} not found")
    if not re.match(r"^[a-z0-9]+[a-z0-9-]*$", name) or len(name) > 63:
        raise Fail(f'ERROR "{name}" is not a valid name: model names may only contain lowercase '
                   "letters, digits and hyphens")
    if cloud and cloud not in ctx.state["clouds"]:
        raise Fail(f'ERROR cloud {cloud} not found')
    key = f"{controller}:{name}"
    if key in ctx.state["models"]:
        raise Fail(f'ERROR model "{name}" already exists')
    ctx.state["models"][key] = {"cloud": cloud, "apps": {}, "deployed": False, "refreshed": False}
    return 0, "", ctx.rec("juju/add-model.stderr", MODEL=name, CLOUD=cloud)


def _yaml() -> Any:
    site = os.environ.get("FAKE_CLI_SITE")
    if site and site not in sys.path:
        sys.path.append(site)
    import yaml

    return yaml


def _bundle(path: str) -> dict[str, Any]:
    yaml = _yaml()

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError:
        raise Fail(f'ERROR cannot deploy bundle: "{path}": no such file or directory') from None
    if not isinstance(data, dict) or "applications" not in data:
        raise Fail(f"ERROR cannot deploy bundle: invalid bundle data in {path}")
    return data


def juju_deploy(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--trust": False,
                                    "--channel": True, "--constraints": True, "--config": True,
                                    "--num-units": True, "-n": True, "--revision": True,
                                    "--overlay": True, "--base": True},
                       positional=(1, 2), repeat=("--config", "--overlay"))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    model = ctx.state["models"][key]
    target = args[0]
    if target.startswith(("/", ".")):
        bundle = _bundle(target)
        trusted = [app for app, body in bundle["applications"].items()
                   if isinstance(body, dict) and body.get("trust")]
        if trusted and not opts.get("--trust"):
            raise Fail("ERROR Bundle cannot be deployed without trusting applications with your "
                       "cloud credentials.\nPlease repeat the deploy command with the --trust "
                       "argument if you consent to trust the following application(s):\n"
                       + "\n".join(f"  - {app}" for app in trusted))
        options = _overlay_options(opts.get("--overlay") or [], bundle)
        for app, body in bundle["applications"].items():
            _add_app(model, app, body.get("charm", app), body.get("channel", ""),
                     options.get(app, {}))
        model["deployed"] = True
        server_channel = bundle["applications"].get("mlflow-server", {}).get("channel", "")
        return 0, "", ctx.rec("juju/deploy-bundle.stderr", SERVER_CHANNEL=server_channel)
    app = args[1] if len(args) > 1 else target
    channel = opts.get("--channel", "latest/stable")
    config = dict(item.split("=", 1) for item in opts.get("--config") or [])
    _add_app(model, app, target, channel, {k: _option(v) for k, v in config.items()})
    model["deployed"] = {"mlflow-server", "mlflow-minio", "mlflow-mysql"} <= set(model["apps"])
    return 0, "", (f'Deployed "{app}" from charm-hub charm "{target}", revision 1 in channel '
                   f'{channel} on ubuntu@{model["bases"][app]}/stable\n')


# The bases each charm channel is published for: charmcraft.yaml on the charm's track branch
# (mlflow-operator track/2.15: ubuntu 20.04; track/2.22 and main, i.e. latest/edge: 24.04;
# minio-operator track/ckf-1.9 and track/ckf-1.10: 20.04); mysql-k8s 8.0/stable: the base
# `juju status` shows in mlflow-operator#337. Revisions: those of the recorded statuses.
BASES = {("mlflow-server", "2.15/stable"): "20.04", ("mlflow-server", "2.22/stable"): "24.04",
         ("mlflow-server", "latest/edge"): "24.04", ("minio", "ckf-1.9/stable"): "20.04",
         ("minio", "ckf-1.10/stable"): "20.04", ("mysql-k8s", "8.0/stable"): "22.04"}
REVISIONS = {"mlflow-server": 762, "mlflow-minio": 459, "mlflow-mysql": 240}
REFRESHED_REVISIONS = {"mlflow-server": 1020}   # the revision of the recorded refresh


def _add_app(model: dict[str, Any], app: str, charm: str, channel: str,
             options: dict[str, Any]) -> None:
    model["apps"][app] = channel
    model.setdefault("charms", {})[app] = charm
    model.setdefault("bases", {})[app] = BASES.get((charm, channel), "22.04")
    model.setdefault("revisions", {})[app] = REVISIONS.get(app, 1)
    model.setdefault("config", {})[app] = options


def _option(value: str) -> Any:
    return {"true": True, "false": False}.get(value.lower(), value)


def _overlay_options(paths: list[str], bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`applications.<app>.options` of each overlay, as `juju deploy --overlay` merges them."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        overlay = _bundle(path)
        for app, body in overlay["applications"].items():
            if app not in bundle["applications"]:
                raise Fail(f'ERROR cannot deploy bundle: application "{app}" in overlay '
                           f'"{path}" not found in the bundle')
            merged.setdefault(app, {}).update((body or {}).get("options") or {})
    return merged


# Endpoints (name → interface) of the charms the COS check relates: mlflow-server's from
# mlflow-operator docs/how-to/integrate-cos.rst and the recorded show-unit; grafana-agent-k8s's
# from grafana-agent-k8s-operator k8s_metadata.yaml (requires/provides);
# opentelemetry-collector-k8s's from its charmcraft.yaml (commit 2a77867, requires/provides).
ENDPOINTS = {
    "mlflow-server": {"object-storage": "object-storage", "relational-db": "mysql_client",
                      "metrics-endpoint": "prometheus_scrape",
                      "grafana-dashboard": "grafana_dashboard"},
    "grafana-agent-k8s": {"metrics-endpoint": "prometheus_scrape",
                          "grafana-dashboards-consumer": "grafana_dashboard",
                          "grafana-dashboards-provider": "grafana_dashboard",
                          "send-remote-write": "prometheus_remote_write",
                          "logging-consumer": "loki_push_api",
                          "logging-provider": "loki_push_api"},
    "opentelemetry-collector-k8s": {"metrics-endpoint": "prometheus_scrape",
                                    "grafana-dashboards-consumer": "grafana_dashboard",
                                    "grafana-dashboards-provider": "grafana_dashboard",
                                    "send-remote-write": "prometheus_remote_write",
                                    "send-loki-logs": "loki_push_api",
                                    "receive-loki-logs": "loki_push_api"},
}
COS_AGENTS = ("opentelemetry-collector-k8s", "grafana-agent-k8s")
RECORDED_AGENT = "grafana-agent-k8s"   # the agent of show-unit-grafana-agent-k8s.json


def juju_integrate(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--via": True},
                       positional=(2, 2))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    model = ctx.state["models"][key]
    interfaces = []
    for item in args:
        app, _, endpoint = item.partition(":")
        if app not in model["apps"]:
            raise Fail(f'ERROR application "{app}" not found (not found)')
        if endpoint and app in ENDPOINTS:
            if endpoint not in ENDPOINTS[app]:
                raise Fail(f'ERROR application "{app}" has no "{endpoint}" relation')
            interfaces.append(ENDPOINTS[app][endpoint])
    if len(interfaces) == 2 and interfaces[0] != interfaces[1]:
        raise Fail(f'ERROR no relations found matching "{args[0]}" and "{args[1]}"')
    model.setdefault("relations", []).append(sorted(args))
    return 0, "", ""


def _cos_agent_status(ctx: Context, key: str, COS_AGENT: str) -> dict[str, Any]:
    """A COS agent in `juju status --format json`, the shape of the recorded bundle apps:
    one poll still executing after the deploy, then active/idle."""
    first = ctx.next_in(f"agent-status:{key}", ["executing", "idle"]) == "executing"
    workload = {"current": "maintenance" if first else "active",
                "since": "09 Jun 2025 20:20:31Z"}
    if first:
        workload["message"] = "installing charm software"
    relations: dict[str, list[dict[str, str]]] = {}
    for pair in ctx.state["models"][key].get("relations", []):
        ours = [item for item in pair if item.startswith(f"{COS_AGENT}:")]
        if ours:
            endpoint = ours[0].split(":", 1)[1]
            other = next(item for item in pair if item not in ours).split(":")[0]
            relations.setdefault(endpoint, []).append({
                "related-application": other, "interface": ENDPOINTS[COS_AGENT][endpoint],
                "scope": "global"})
    return {
        "charm": COS_AGENT, "base": {"name": "ubuntu", "channel": "22.04"},
        "charm-origin": "charmhub", "charm-name": COS_AGENT, "charm-rev": 211,
        "charm-channel": ctx.state["models"][key]["apps"][COS_AGENT], "scale": 1,
        "provider-id": "4b0c7d2e-5f1a-4c8e-9d3b-6a2f1e0c9b74", "address": "10.152.183.88",
        "exposed": False, "application-status": dict(workload),
        "relations": relations,
        "units": {f"{COS_AGENT}/0": {
            "workload-status": workload,
            "juju-status": {"current": "executing" if first else "idle",
                            "since": "09 Jun 2025 20:20:31Z", "version": "3.6.5"},
            "leader": True, "address": "10.1.90.170", "provider-id": f"{COS_AGENT}-0"}},
        "version": "0.40.4",
        "endpoint-bindings": {"": "alpha", **{e: "alpha" for e in ENDPOINTS[COS_AGENT]}},
    }


def _status_json(ctx: Context, key: str) -> str:
    model = ctx.state["models"][key]
    controller, name = key.split(":", 1)
    values = {"MODEL": name, "CONTROLLER": controller, "CLOUD": model.get("cloud", ""),
              "SERVER_CHANNEL": model["apps"].get("mlflow-server", ""),
              "MINIO_CHANNEL": model["apps"].get("mlflow-minio", ""),
              "TARGET_SERVER_CHANNEL": model["apps"].get("mlflow-server", ""),
              "TARGET_MINIO_CHANNEL": model["apps"].get("mlflow-minio", "")}
    juju_scenario = ctx.scenario.get("juju", {})
    upgrading = {app: left for app, left in model.get("upgrading", {}).items() if left > 0}
    if not model["deployed"]:
        recording = "status-empty.json"
    elif upgrading:
        # Juju switched the application's charm at once; its unit still runs the old one
        # (`upgrading-from`), active/idle, until the pod is replaced
        recording = "status-healthy.json"
        for app in upgrading:
            model["upgrading"][app] -= 1
            if model["upgrading"][app] == 0:
                model.setdefault("pods", {})[app] = model.get("pods", {}).get(app, 0) + 1
    elif model["refreshed"]:
        recording = ctx.next_in(f"refresh-status:{key}", juju_scenario.get(
            "refresh_status", ["status-refreshing.json", "status-refreshed.json"]))
    else:
        recording = ctx.next_in(f"status:{key}", juju_scenario.get(
            "status", ["status-deploying.json", "status-healthy.json"]))
    ctx.state.setdefault("last_status", {})[key] = recording
    data = json.loads(ctx.rec(f"juju/{recording}", **values))
    for app, info in data.get("applications", {}).items():
        if app not in model.get("revisions", {}):
            continue
        info["charm-rev"] = model["revisions"][app]
        info["base"] = {"name": "ubuntu", "channel": model["bases"][app]}
        if app in upgrading:
            for unit in info["units"].values():
                unit["upgrading-from"] = model["upgrading_from"][app]
    for agent in COS_AGENTS:
        if agent in model["apps"] and model["deployed"]:
            data["applications"][agent] = _cos_agent_status(ctx, key, agent)
    return json.dumps(data, indent=4)


def juju_status(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    _args, opts = parse(argv, flags={"--model": True, "-m": True, "--format": True,
                                    "--relations": False, "--color": False},
                       positional=(0, 5))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    text = _status_json(ctx, key)
    fmt = opts.get("--format", "tabular")
    if fmt == "json":
        return 0, text, ""
    if fmt == "yaml":
        return 0, _yaml().safe_dump(json.loads(text), sort_keys=False), ""
    raise Usage(f'invalid value "{fmt}" for option --format: unknown format "{fmt}"')


def juju_config(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--format": True},
                       positional=(1, 1))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    if args[0] not in ctx.state["models"][key]["apps"]:
        raise Fail(f'ERROR application "{args[0]}" not found (not found)')
    if opts.get("--format") != "json":
        raise Fail("fake juju: only --format json is recorded")
    data = json.loads(ctx.rec("juju/config-mlflow-server.json"))
    for option, value in ctx.state["models"][key].get("config", {}).get(args[0], {}).items():
        if option in data["settings"]:
            data["settings"][option].update(source="user", value=value)
    return 0, json.dumps(data, indent=4), ""


def juju_show_unit(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--format": True,
                                    "--endpoint": True, "--related-unit": True,
                                    "--app": False},
                       positional=(1, 1))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    agent = args[0].split("/")[0]
    if agent in COS_AGENTS and agent in ctx.state["models"][key]["apps"]:
        return 0, _cos_agent_show_unit(ctx, key, opts, agent), ""
    if args[0] != "mlflow-server/0":
        raise Fail(f'ERROR unit "{args[0]}" not found (not found)')
    if ctx.scenario.get("juju", {}).get("show_unit") == "no-relation-data":
        return 0, json.dumps({"mlflow-server/0": {"opened-ports": [], "charm": "mlflow-server",
                                                  "leader": True, "relation-info": []}}), ""
    return 0, ctx.rec("juju/show-unit-mlflow-server.json", MODEL=key.split(":", 1)[1]), ""


def _cos_agent_show_unit(ctx: Context, key: str, opts: dict[str, Any],
                         COS_AGENT: str) -> str:
    """The recorded consumer-side show-unit, holding only the relations integrated here
    (scenario `juju.cos_show_unit: no-metrics-endpoint` drops that one, as if the charm
    never provided it). The databags are mlflow-server's, whichever agent reads them: for
    opentelemetry-collector-k8s the recorded grafana-agent-k8s unit is renamed."""
    if opts.get("--format") != "json":
        raise Fail(f"fake juju: only --format json is recorded for {COS_AGENT}/0")
    text = ctx.rec("juju/show-unit-grafana-agent-k8s.json", MODEL=key.split(":", 1)[1],
                   MODEL_UUID="0f3e5a6b-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
    data = json.loads(text.replace(RECORDED_AGENT, COS_AGENT))
    integrated = {f"{COS_AGENT}:{rel['endpoint']}"
                  for rel in data[f"{COS_AGENT}/0"]["relation-info"]
                  for pair in ctx.state["models"][key].get("relations", [])
                  if pair == sorted([f"{COS_AGENT}:{rel['endpoint']}",
                                     f"mlflow-server:{rel['related-endpoint']}"])}
    dropped = ctx.scenario.get("juju", {}).get("cos_show_unit") == "no-metrics-endpoint"
    data[f"{COS_AGENT}/0"]["relation-info"] = [
        rel for rel in data[f"{COS_AGENT}/0"]["relation-info"]
        if f"{COS_AGENT}:{rel['endpoint']}" in integrated
        and not (dropped and rel["endpoint"] == "metrics-endpoint")]
    return json.dumps(data, indent=1)


def juju_run(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--format": True,
                                    "--wait": True, "--params": True, "--background": False},
                       positional=(2, 2))
    model_key(ctx, opts.get("--model") or opts.get("-m"))
    unit, action = args
    if action != "get-minio-credentials":
        raise Fail(f'ERROR action "{action}" not defined for unit "{unit}". (not found)')
    return 0, ctx.rec("juju/run-get-minio-credentials.json"), ""


def juju_show_status_log(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "-n": True, "--type": True,
                                    "--days": True, "--format": True, "--utc": False},
                       positional=(1, 1))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    last = ctx.state.get("last_status", {}).get(key, "")
    if "error" in last and args[0] == "mlflow-server/0":
        return 0, ctx.rec("juju/show-status-log-error.txt"), ""
    return 0, ctx.rec("juju/show-status-log-healthy.txt"), ""


def juju_debug_log(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    _args, opts = parse(argv, flags={"--model": True, "-m": True, "--replay": False,
                                    "--no-tail": False, "--limit": True, "--level": True,
                                    "--include": True, "--lines": True, "-n": True},
                       positional=(0, 0))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    if not opts.get("--no-tail") and not opts.get("--limit"):
        raise Hang()  # the real debug-log follows the log forever without --no-tail
    return 0, ctx.rec("juju/debug-log.txt", MODEL=key.split(":", 1)[1]), ""


def juju_refresh(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--model": True, "-m": True, "--channel": True,
                                    "--trust": False, "--revision": True, "--force": False,
                                    "--base": True},
                       positional=(1, 1))
    key = model_key(ctx, opts.get("--model") or opts.get("-m"))
    model = ctx.state["models"][key]
    app = args[0]
    if app not in model["apps"]:
        raise Fail(f'ERROR application "{app}" not found (not found)')
    channel = opts.get("--channel", model["apps"][app])
    charm = model.get("charms", {}).get(app, app)
    published = BASES.get((charm, channel))
    if published and published != model["bases"][app]:
        # juju/juju#20830: a Kubernetes charm cannot be refreshed to a channel published for
        # another base only
        available = "\n".join(f'  channel "{ch}": available bases are: ubuntu@{base}'
                              for (name, ch), base in BASES.items() if name == charm)
        raise Fail(f'ERROR selecting releases: charm or bundle not found for channel '
                   f'"{channel}", base "amd64/ubuntu/{model["bases"][app]}"\n'
                   f"available releases are:\n{available}")
    old = model["revisions"][app]
    new = max(REFRESHED_REVISIONS.get(app, 0), old + 1)
    model["apps"][app] = channel
    model["revisions"][app] = new
    model.setdefault("upgrading", {})[app] = int(ctx.scenario.get("juju", {}).get(
        "refresh_polls", 2))
    model.setdefault("upgrading_from", {})[app] = f"ch:amd64/{charm}-{old}"
    model["refreshed"] = True
    return 0, "", ctx.rec("juju/refresh.stderr", APP_CHARM=charm, CHANNEL=channel, REV=str(new))


def juju_destroy_model(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--no-prompt": False, "--destroy-storage": False,
                                    "--release-storage": False, "--force": False,
                                    "--no-wait": False, "--timeout": True, "-t": True,
                                    "-y": False},
                       positional=(1, 1))
    if not (opts.get("--no-prompt") or opts.get("-y")):
        raise Fail("ERROR cannot read from terminal: not a terminal (use --no-prompt)")
    if opts.get("--timeout") and not opts.get("--force"):
        raise Fail("ERROR --timeout can only be used with --force (dangerous)")
    key = model_key(ctx, args[0])
    mode = ctx.scenario.get("juju", {}).get("destroy_model", "ok")
    if not opts.get("--force"):
        if mode == "hang":
            raise Hang()
        if mode == "fail":
            return 1, "", ("Destroying model\nERROR cannot destroy model: model not empty, "
                           "found 3 applications (model not empty)\n")
    del ctx.state["models"][key]
    return 0, "", ctx.rec("juju/destroy-model.stderr")


def juju_destroy_controller(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--no-prompt": False, "--destroy-all-models": False,
                                    "--destroy-storage": False, "--release-storage": False,
                                    "--force": False, "--no-wait": False,
                                    "--model-timeout": True, "-y": False},
                       positional=(1, 1))
    name = args[0]
    if name not in ctx.state["controllers"]:
        raise Fail(f"ERROR controller {name} not found")
    models = [k for k in ctx.state["models"] if k.startswith(f"{name}:")]
    if models and not opts.get("--destroy-all-models"):
        raise Fail("ERROR cannot destroy controller: controller has models; "
                   "use --destroy-all-models")
    for key in models:
        del ctx.state["models"][key]
    del ctx.state["controllers"][name]
    return 0, "", ('Destroying controller\nWaiting for hosted model resources to be '
                   'reclaimed\nAll hosted models reclaimed, cleaning up controller machines\n')


def juju_kill_controller(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, _opts = parse(argv, flags={"--no-prompt": False, "--timeout": True, "-t": True,
                                    "-y": False}, positional=(1, 1))
    if args[0] not in ctx.state["controllers"]:
        raise Fail(f"ERROR controller {args[0]} not found")
    del ctx.state["controllers"][args[0]]
    return 0, "", "Destroying controller\n"


def juju_unregister(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, _opts = parse(argv, flags={"--no-prompt": False, "-y": False}, positional=(1, 1))
    ctx.state["controllers"].pop(args[0], None)
    return 0, "", ""


def juju_remove_k8s(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--client": False, "--controller": True, "-c": True},
                       positional=(1, 1))
    if not opts.get("--client") and not (opts.get("--controller") or opts.get("-c")):
        raise Fail("ERROR no controller specified: use --client or --controller")
    if args[0] not in ctx.state["clouds"]:
        raise Fail(f'ERROR cloud "{args[0]}" not found')
    del ctx.state["clouds"][args[0]]
    return 0, "", f'Removed details of cloud "{args[0]}" from this client\n'


JUJU: dict[str, Callable[[Context, list[str], str], tuple[int, str, str]]] = {
    "add-k8s": juju_add_k8s, "bootstrap": juju_bootstrap, "add-model": juju_add_model,
    "deploy": juju_deploy, "integrate": juju_integrate, "status": juju_status,
    "config": juju_config, "show-unit": juju_show_unit, "run": juju_run,
    "show-status-log": juju_show_status_log, "debug-log": juju_debug_log,
    "refresh": juju_refresh, "destroy-model": juju_destroy_model,
    "destroy-controller": juju_destroy_controller, "kill-controller": juju_kill_controller,
    "unregister": juju_unregister, "remove-k8s": juju_remove_k8s,
}


# ---------------------------------------------------------------- snap


def snap(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    if not argv:
        raise Usage("missing command")
    command, rest = argv[0], argv[1:]
    snaps = ctx.state["snaps"]
    if command == "list":
        args, _ = parse(rest, flags={"--all": False}, positional=(1, 1))
        name = args[0]
        if name not in snaps:
            return 1, "", ctx.rec("snap/list-missing.stderr")
        info = snaps[name]
        return 0, ctx.rec("snap/list.txt", SNAP=name, CHANNEL=info["channel"],
                          VERSION="v1.32.3", REV="7964"), ""
    if os.environ.get("FAKE_CLI_EUID", "0") != "0":
        raise Fail('error: access denied (try with sudo)')
    if command == "install":
        args, opts = parse(rest, flags={"--classic": False, "--channel": True,
                                        "--dangerous": False}, positional=(1, 1))
        name = args[0]
        if name not in ("microk8s", "k8s"):
            raise Fail(f'error: snap "{name}" not found')
        if not opts.get("--classic"):
            raise Fail(f"error: This revision of snap \"{name}\" was published using classic "
                       "confinement and thus may perform\n       arbitrary system changes "
                       "outside of the security sandbox that snaps are usually confined to,\n"
                       f"       which may put your system at risk.\n\n       If you understand "
                       f"and want to proceed repeat the command including --classic.")
        if name in snaps:
            return 0, "", f'snap "{name}" is already installed, see \'snap help refresh\'\n'
        if ctx.scenario.get("snap", {}).get("install") == "fail":
            raise Fail(f'error: cannot install "{name}": Post "https://api.snapcraft.io/v2/'
                       'snaps/refresh": dial tcp: lookup api.snapcraft.io: no such host')
        channel = opts.get("--channel", "latest/stable")
        snaps[name] = {"channel": channel, "preinstalled": False}
        return 0, ctx.rec("snap/install.txt", SNAP=name, CHANNEL=channel,
                          VERSION="v1.32.3"), ""
    if command == "remove":
        args, opts = parse(rest, flags={"--purge": False}, positional=(1, 1))
        name = args[0]
        if name not in snaps:
            return 0, "", f'snap "{name}" is not installed\n'
        del snaps[name]
        ctx.state["addons"].clear() if name == "microk8s" else ctx.state["features"].clear()
        return 0, ctx.rec("snap/remove.txt", SNAP=name), ""
    raise Fail(f'error: unknown command "{command}", see \'snap help\'.')


# ---------------------------------------------------------------- microk8s


MICROK8S_ADDONS = {"dns", "hostpath-storage", "storage", "metallb", "ingress", "rbac",
                   "metrics-server"}


def _need_snap(ctx: Context, name: str) -> None:
    if name not in ctx.state["snaps"]:
        raise Fail(f"{name}: command not found", code=127)


def _kubeconfig(ctx: Context) -> str:
    path = ctx.dir / "kubeconfig.yaml"
    return path.read_text() if path.exists() else ""


def _kubectl_sub(ctx: Context, rest: list[str], recdir: str) -> tuple[int, str, str]:
    if rest[:1] == ["wait"]:
        args, opts = parse(rest[1:], flags={"--for": True, "--all": False, "--timeout": True},
                           positional=(1, 2))
        if opts.get("--for") != "condition=Ready" or args[0] != "node":
            raise Fail("error: unexpected kubectl wait in the fake")
        return 0, ctx.rec(f"{recdir}/kubectl-wait.txt"), ""
    if rest[:2] == ["get", "nodes"]:
        return 0, ctx.rec("microk8s/get-nodes.txt"), ""
    raise Fail(f"fake: kubectl {' '.join(rest)} is not recorded")


def microk8s(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    _need_snap(ctx, "microk8s")
    if not argv:
        raise Usage("missing command")
    command, rest = argv[0], argv[1:]
    scenario = ctx.scenario.get("microk8s", {})
    if command == "status":
        args, _opts = parse(rest, flags={"--wait-ready": False, "--timeout": True,
                                        "--format": True}, positional=(0, 0))
        if scenario.get("ready") is False:
            return 1, ("microk8s is not running. Use microk8s inspect for a deeper "
                       "inspection.\n"), ""
        return 0, ctx.rec("microk8s/status.txt"), ""
    if command in ("enable", "disable"):
        args, _ = parse(rest, flags={}, positional=(1, 1))
        addon, _, arg = args[0].partition(":")
        if addon not in MICROK8S_ADDONS:
            raise Fail(f"Addon {addon} was not found in any repository")
        if addon == "metallb" and command == "enable" and not re.match(
                r"^\d+\.\d+\.\d+\.\d+-\d+\.\d+\.\d+\.\d+(,.+)?$", arg):
            raise Fail("Enabling MetalLB\nYou have to input an IP Range value when asked, or "
                       "provide it as an argument to the enable command")
        if scenario.get("fail_enable") == addon:
            raise Fail(f"Infer repository core for addon {addon}\nFailed to enable {addon}")
        addons = ctx.state["addons"]
        if command == "disable":
            addons.pop(addon, None)
            return 0, f"Disabling {addon}\n{addon} is disabled\n", ""
        if addon in addons:
            return 0, ctx.rec("microk8s/enable-already.txt", ADDON=addon), ""
        addons[addon] = arg or True
        return 0, ctx.rec(f"microk8s/enable-{addon}.txt"), ""
    if command == "kubectl":
        return _kubectl_sub(ctx, rest, "microk8s")
    if command == "config":
        parse(rest, flags={"-l": False}, positional=(0, 0))
        return 0, _kubeconfig(ctx), ""
    raise Fail(f"'{command}' is not a valid MicroK8s subcommand.")


# ---------------------------------------------------------------- k8s


K8S_FEATURES = {"network", "dns", "gateway", "ingress", "local-storage", "load-balancer",
                "metrics-server"}


def k8s(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    _need_snap(ctx, "k8s")
    if not argv:
        raise Usage("missing command")
    command, rest = argv[0], argv[1:]
    state = ctx.state
    bootstrapped = state.get("k8s_bootstrapped") or ctx.scenario.get("k8s", {}).get(
        "bootstrapped")
    if command == "status":
        parse(rest, flags={"--wait-ready": False, "--timeout": True, "--output-format": True},
              positional=(0, 0))
        if not bootstrapped:
            return 1, "", ctx.rec("k8s/status-not-bootstrapped.stderr")
        return 0, ctx.rec("k8s/status.txt"), ""
    if command == "bootstrap":
        parse(rest, flags={"--file": True, "--address": True, "--name": True,
                           "--timeout": True}, positional=(0, 0))
        if bootstrapped:
            raise Fail("Error: The node is already part of a cluster")
        containerd = ctx.scenario.get("k8s", {}).get("containerd_path", "")
        if containerd and Path(containerd).exists():
            # another containerd owns the socket directory (k8s-snap#1574, #1612)
            return 1, "", ctx.rec("k8s/bootstrap-containerd.stderr", PATH=containerd)
        state["k8s_bootstrapped"] = True
        return 0, ctx.rec("k8s/bootstrap.txt"), ""
    if not bootstrapped and command in ("set", "enable", "disable", "config", "kubectl"):
        return 1, "", ctx.rec("k8s/status-not-bootstrapped.stderr")
    if command == "set":
        args, _ = parse(rest, flags={}, positional=(1, 10))
        for item in args:
            key, eq, _ = item.partition("=")
            if not eq or not key.startswith(("load-balancer.", "local-storage.", "dns.",
                                             "network.", "gateway.", "ingress.")):
                raise Fail(f'Error: Invalid option key "{key}"')
        return 0, "", ""
    if command in ("enable", "disable"):
        args, _ = parse(rest, flags={"--timeout": True}, positional=(1, 10))
        out = []
        for feature in args:
            if feature not in K8S_FEATURES:
                raise Fail(f'Error: Unknown feature "{feature}"')
            features = state["features"]
            if command == "disable":
                features.pop(feature, None)
                out.append(f"Disabled {feature}.")
            elif feature in features or feature in ("network", "dns", "local-storage"):
                features[feature] = True
                out.append(ctx.rec("k8s/enable.txt", FEATURE=feature).strip())
            else:
                features[feature] = True
                out.append(f"Enabled {feature}.")
        return 0, "\n".join(out) + "\n", ""
    if command == "kubectl":
        return _kubectl_sub(ctx, rest, "k8s")
    if command == "config":
        parse(rest, flags={"--server": True}, positional=(0, 0))
        return 0, _kubeconfig(ctx), ""
    raise Fail(f'Error: unknown command "{command}" for "k8s"')


# ---------------------------------------------------------------- kubectl


def kubectl(ctx: Context, argv: list[str], stdin: str) -> tuple[int, str, str]:
    args, opts = parse(argv, flags={"--kubeconfig": True, "--context": True, "-n": True,
                                    "--namespace": True, "-o": True},
                       positional=(1, 3))
    config = opts.get("--kubeconfig")
    if config and not Path(config).is_file():
        raise Fail(f'error: stat {config}: no such file or directory')
    namespace = opts.get("-n") or opts.get("--namespace") or "default"
    if args == ["get", "all"]:
        return 0, ctx.rec("kubectl/get-all.txt"), ""
    if args == ["describe", "pods"]:
        return 0, ctx.rec("kubectl/describe-pods.txt", NAMESPACE=namespace), ""
    if args == ["version"]:
        return 0, ctx.rec("kubectl/version.txt"), ""
    if args == ["get", "nodes"]:
        return 0, ctx.rec("kubectl/get-nodes.txt"), ""
    raise Fail(f'error: the fake has no recording for "kubectl {" ".join(args)}"')


TOOLS = {"juju": juju, "snap": snap, "microk8s": microk8s, "k8s": k8s, "kubectl": kubectl}


# ---------------------------------------------------------------- entry point


@contextlib.contextmanager
def _locked(state_dir: Path):
    with open(state_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(state_dir: Path, entry: dict[str, Any]) -> None:
    with open(state_dir / "calls.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def main(tool: str) -> int:
    argv = sys.argv[1:]
    if tool == "sudo":
        os.execvp(argv[0], argv)
    state_dir = Path(os.environ["FAKE_CLI_STATE"])
    stdin = ""
    if tool == "juju" and argv[:1] == ["add-k8s"]:
        stdin = sys.stdin.read()
    entry: dict[str, Any] = {"tool": tool, "argv": argv, "t": time.time()}
    if stdin:
        entry["stdin"] = {"bytes": len(stdin), "kubeconfig": "apiVersion" in stdin}
    _log(state_dir, {**entry, "event": "start"})
    hang = False
    with _locked(state_dir):
        ctx = Context(state_dir)
        try:
            code, out, err = TOOLS[tool](ctx, argv, stdin)
        except Usage as exc:
            code, out, err = 2, "", f"ERROR {exc}\n"
        except Fail as exc:
            code, out, err = exc.code, exc.stdout, str(exc) + "\n"
        except Hang:
            hang, code, out, err = True, 0, "", ""
        ctx.save()
    if hang:
        _log(state_dir, {**entry, "event": "hang"})
        time.sleep(3600)
    _log(state_dir, {**entry, "event": "end", "rc": code})
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
