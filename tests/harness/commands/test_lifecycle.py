"""`up`/`down` outside a run: the provisioner gets the same deadlines a run gives it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from harness.cli import main
from harness.config.matrix import DEFAULT_MATRIX

RECORDER = '''
import json, os
from dataclasses import dataclass
from provisioners.api import ProvisionerBase, Substrate

@dataclass(frozen=True)
class RecorderSettings:
    out: str = ""

class Recorder(ProvisionerBase):
    """Writes the options `down` hands it, and nothing else."""
    kind = "recorder"
    Settings = RecorderSettings

    def __init__(self, context):
        self.context = context

    def plan(self):
        return []

    def up(self):
        return Substrate(name="recorder")

    def down(self):
        with open(self.context.platform.settings.out, "w") as f:
            json.dump(dict(self.context.options), f)

    def deployment(self, substrate, cell_dir):
        raise NotImplementedError
'''


def _register(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site"
    info = site / "mm_recorder-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mm-recorder\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[mlflow_matrix.provisioners]\n"
                                           "recorder = mm_recorder:Recorder\n")
    (site / "mm_recorder.py").write_text(textwrap.dedent(RECORDER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))


def test_down_gives_the_provisioner_the_matrix_teardown_deadline(tmp_path: Path, monkeypatch):
    _register(tmp_path, monkeypatch)
    out = tmp_path / "options.json"
    data = yaml.safe_load(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    data["platforms"]["rec"] = {"kind": "recorder", "out": str(out)}
    data.setdefault("timeouts", {})["teardown"] = 42
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code = main(["down", "--platform", "rec", "--matrix", str(matrix),
                 "--reports-dir", str(tmp_path / "reports")])
    assert code == 0
    options = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert options["teardown_timeout"] == 42
