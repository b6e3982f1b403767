"""The charm's recorded observability artefacts (observability/<channel>/): intact, valid for
Prometheus, and every alert unit-tested from its intent with `promtool test rules`.

The rule tests (rule_tests/) are written from what each alert says it means (summary,
description), not copied from its expression. Where the two part, the case is a `*.mismatch.yaml`
file expected to fail (strict: a charm release that fixes the rule turns it red here, so the
expectation is revisited). promtool comes with Debian's `prometheus` package (.ci/run installs it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.config.matrix import load_matrix
from provisioners.local_prometheus import OBSERVABILITY_DIR, PROMETHEUS_HINT

RULE_TESTS = Path(__file__).resolve().parent / "rule_tests"
CHANNELS = sorted(p.name for p in OBSERVABILITY_DIR.iterdir() if (p / "source.json").is_file())
ALERT = re.compile(r"^\s*- alert:\s*(\S+)", re.M)


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip(f"promtool is not installed: {PROMETHEUS_HINT}")
    return found


def _rule_files(channel: str) -> list[Path]:
    return sorted((OBSERVABILITY_DIR / channel / "rules").iterdir())


def _rule_file_of(test_file: Path) -> str:
    """`mlflow-server.rule.test.yaml` → `mlflow-server.rule` (the file it tests)."""
    return re.sub(r"\.(test|[\w-]+\.mismatch)\.yaml$", "", test_file.name)


def test_every_channel_of_the_matrix_has_recorded_artefacts():
    channels = {c.slug for c in load_matrix().channels.values()}
    assert channels <= set(CHANNELS), f"no observability/<channel>/ for {channels - set(CHANNELS)}"


@pytest.mark.parametrize("channel", CHANNELS)
def test_recorded_files_are_the_upstream_bytes(channel):
    """Each file is byte for byte what source.json says was taken from the charm's repo."""
    root = OBSERVABILITY_DIR / channel
    source = json.loads((root / "source.json").read_text(encoding="utf-8"))
    assert source["repo"] == "canonical/mlflow-operator" and re.fullmatch(r"[0-9a-f]{40}",
                                                                          source["commit"])
    recorded = {**source["files"], "scrape_jobs.json": source["scrape_jobs"]}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"source.json"}
    assert on_disk == set(recorded), "files on disk and in source.json differ"
    for name, entry in recorded.items():
        digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{channel}/{name} changed since it was recorded"
    assert source["unit_down_alert"] in {a for p in _rule_files(channel)
                                         for a in ALERT.findall(p.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("channel", CHANNELS)
def test_promtool_check_rules_passes(channel):
    files = _rule_files(channel)
    proc = subprocess.run([_promtool(), "check", "rules", *map(str, files)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files), proc.stdout


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_alert_has_a_rule_unit_test(channel):
    tested: dict[str, set[str]] = {}
    for test_file in RULE_TESTS.glob("*.test.yaml"):
        text = test_file.read_text(encoding="utf-8")
        tested.setdefault(_rule_file_of(test_file), set()).update(
            re.findall(r"alertname:\s*(\S+)", text))
    for rules in _rule_files(channel):
        alerts = set(ALERT.findall(rules.read_text(encoding="utf-8")))
        untested = alerts - tested.get(rules.name, set())
        assert not untested, f"{channel}/{rules.name}: no promtool unit test for {untested}"


RULE_TEST_FILES = sorted(RULE_TESTS.glob("*.yaml"))


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=[p.name for p in RULE_TEST_FILES])
def test_promtool_test_rules(channel, test_file, tmp_path, request):
    """`promtool test rules` on the channel's rule file; a mismatch case must fail."""
    rules = OBSERVABILITY_DIR / channel / "rules" / _rule_file_of(test_file)
    assert rules.is_file(), f"{test_file.name} tests {rules.name}, which {channel} does not ship"
    text = test_file.read_text(encoding="utf-8")
    assert text.count("RULE_FILE") == 1, "rule_files: [RULE_FILE] is filled in here"
    test = tmp_path / test_file.name
    test.write_text(text.replace("RULE_FILE", json.dumps(str(rules))), encoding="utf-8")
    if test_file.name.endswith(".mismatch.yaml"):
        why = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
        request.applymarker(pytest.mark.xfail(strict=True, reason=why))
    proc = subprocess.run([_promtool(), "test", "rules", str(test)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
