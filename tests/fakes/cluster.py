"""`FakeCluster`: the fake CLIs on PATH, their state, their scenario and their transcript."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.kubeapi import FakeKubeAPI

FAKES_DIR = Path(__file__).resolve().parent
TOOLS = ("juju", "snap", "microk8s", "k8s", "kubectl", "sudo")
TRANSCRIPTS = FAKES_DIR / "transcripts"
PYCACHE = Path(tempfile.gettempdir()) / "mlflow-matrix-fake-cli-pycache"


@dataclass(frozen=True)
class Call:
    tool: str
    argv: list[str]
    stdin: dict[str, Any] | None = None

    @property
    def line(self) -> str:
        return shlex.join([self.tool, *self.argv])


class FakeCluster:
    """Fake `juju`, `snap`, `microk8s`, `k8s`, `kubectl` (and `sudo`) in a private bin dir.

    `env()` gives the variables a child process needs; `activate(monkeypatch)` applies them to
    this process. `calls()` is what the fakes were asked, in order.
    """

    def __init__(self, root: Path, scenario: dict[str, Any] | None = None,
                 api: FakeKubeAPI | None = None) -> None:
        self.root = root
        self.bin = root / "bin"
        self.state = root / "state"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.api = api
        self.secret_key = "S" + secrets.token_hex(14).upper()   # like the minio charm's 30 chars
        self.db_password = secrets.token_urlsafe(16)
        self.scenario: dict[str, Any] = {
            "values": {"ACCESS_KEY": "minio", "SECRET_KEY": self.secret_key,
                       "DB_PASSWORD": self.db_password, "MINIO_PORT": "9000",
                       "SUBSTRATE": "microk8s/localhost"},
            "juju": {}, "snap": {}, "microk8s": {}, "k8s": {}, "preinstalled_snaps": {},
        }
        for key, value in (scenario or {}).items():
            if isinstance(value, dict) and isinstance(self.scenario.get(key), dict):
                self.scenario[key].update(value)
            else:
                self.scenario[key] = value
        self._write_scenario()
        if api is not None:
            api.attach(self.world)   # the API server sees each model's config and refreshes
        kubeconfig = api.kubeconfig() if api else _unreachable_kubeconfig()
        (self.state / "kubeconfig.yaml").write_text(kubeconfig)
        for tool in TOOLS:
            script = self.bin / tool
            # No `site` (15 ms instead of 45 ms) and cached bytecode even where the environment
            # says PYTHONDONTWRITEBYTECODE: each fake call would otherwise compile fakecli anew.
            script.write_text(f"#!{sys.executable} -S\n"
                              "import sys\n"
                              "sys.dont_write_bytecode = False\n"
                              f"sys.pycache_prefix = {str(PYCACHE)!r}\n"
                              f"sys.path.insert(0, {str(FAKES_DIR.parent)!r})\n"
                              "from fakes.fakecli import main\n"
                              f"sys.exit(main({tool!r}))\n")
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def _write_scenario(self) -> None:
        (self.state / "scenario.json").write_text(json.dumps(self.scenario, indent=1))

    def update(self, **parts: Any) -> None:
        for key, value in parts.items():
            if isinstance(value, dict) and isinstance(self.scenario.get(key), dict):
                self.scenario[key].update(value)
            else:
                self.scenario[key] = value
        self._write_scenario()

    # -- environment

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        base = dict(os.environ if base is None else base)
        base["PATH"] = f"{self.bin}{os.pathsep}{base.get('PATH', '')}"
        base["FAKE_CLI_STATE"] = str(self.state)
        base["FAKE_CLI_SITE"] = _site_packages()
        return base

    def activate(self, monkeypatch: Any) -> FakeCluster:
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("FAKE_CLI_STATE", str(self.state))
        monkeypatch.setenv("FAKE_CLI_SITE", _site_packages())
        return self

    # -- what happened

    def calls(self, tool: str | None = None) -> list[Call]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") != "start" or (tool and entry["tool"] != tool):
                continue
            out.append(Call(entry["tool"], entry["argv"], entry.get("stdin")))
        return out

    def lines(self, tool: str | None = None) -> list[str]:
        return [call.line for call in self.calls(tool)]

    def ran(self, fragment: str) -> bool:
        return any(fragment in line for line in self.lines())

    def world(self) -> dict[str, Any]:
        path = self.state / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def transcript(self, *, collapse: bool = False, **replacements: str) -> str:
        """The calls as shell lines, with run ids and temp dirs made stable; `collapse` folds
        consecutive repeats (polls whose count depends on timing) into one line."""
        lines = self.lines()
        if collapse:
            lines = [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]
        text = "\n".join(lines) + "\n"
        for old, new in replacements.items():
            if old:
                text = text.replace(old, new)
        return normalize(text)


def _site_packages() -> str:
    """Where PyYAML lives: the fakes start without `site` and add it only when they parse YAML."""
    import yaml

    return str(Path(yaml.__file__).resolve().parent.parent)


def normalize(text: str) -> str:
    text = re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "<run-id>", text)
    text = re.sub(r"/tmp/[^\s']*?/(bundle\.yaml)", r"<tmp>/\1", text)
    text = re.sub(r"(/tmp|/var/tmp)/[^\s']+", "<tmp>", text)
    return text


def _unreachable_kubeconfig() -> str:
    return ("apiVersion: v1\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n"
            "    server: https://127.0.0.1:9\n  name: microk8s-cluster\ncontexts:\n"
            "- context:\n    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\n"
            "current-context: microk8s\nkind: Config\npreferences: {}\nusers:\n- name: admin\n"
            "  user:\n    token: fake-token-0123456789abcdef\n")


def check_transcript(name: str, actual: str) -> None:
    """Compare with tests/fakes/transcripts/<name>.txt (UPDATE_TRANSCRIPTS=1 rewrites it)."""
    path = TRANSCRIPTS / f"{name}.txt"
    if os.environ.get("UPDATE_TRANSCRIPTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"no transcript {path}; record it with UPDATE_TRANSCRIPTS=1"
    expected = path.read_text()
    assert actual == expected, f"transcript {name} changed:\n--- expected\n{expected}\n" \
                               f"--- actual\n{actual}"


def iter_lines(text: str) -> Iterator[str]:
    yield from (line for line in text.splitlines() if line.strip())
