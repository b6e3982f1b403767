"""matrix.yaml validation: every malformed file exits 2 with file, key path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.config.matrix import DEFAULT_MATRIX, Selection, expand_cells, load_matrix


def register_kind(tmp_path: Path, monkeypatch, kind: str, target: str) -> Path:
    """A real entry point in the group mlflow_matrix.provisioners (a dist-info on sys.path)."""
    site = tmp_path / "site"
    info = site / f"mm_test_{kind.replace('-', '_')}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mm-test-{kind}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[mlflow_matrix.provisioners]\n{kind} = {target}\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _base() -> dict:
    return yaml.safe_load(DEFAULT_MATRIX.read_text(encoding="utf-8"))


def _mutated(tmp_path: Path, mutate) -> Path:
    data = _base()
    mutate(data)
    return _write(tmp_path, yaml.safe_dump(data, sort_keys=False))


def test_shipped_matrix_loads_and_expands_default_cells():
    matrix = load_matrix()
    cells = expand_cells(matrix, matrix.defaults)
    ids = {(c.platform.name, c.id) for c in cells}
    assert ("local", "2.22-stable") in ids
    assert ("local-mysql", "latest-edge") in ids
    assert matrix.channels["2.15/stable"].mlflow_version == "2.15.1"
    assert "sqlalchemy<2.1" in matrix.requirements_for(matrix.channels["2.15/stable"])
    assert "setuptools<70" in matrix.requirements_for(matrix.channels["2.15/stable"])
    assert "setuptools<70" not in matrix.requirements_for(matrix.channels["2.22/stable"])


def _delete_channel_version(d):
    del d["channels"]["2.22/stable"]["mlflow"]


def _bad_kind(d):
    d["platforms"]["local"]["kind"] = "minikube"


def _unknown_top(d):
    d["platfroms"] = {}


def _unknown_setting(d):
    d["platforms"]["local"]["databse"] = "sqlite"


def _wrong_type_timeout(d):
    d["timeouts"]["deploy"] = "ten minutes"


def _bad_literal(d):
    d["platforms"]["local"]["database"] = "postgres"


def _default_unknown_channel(d):
    d["defaults"]["channels"] = ["2.22/stable", "9.9/stable"]


def _upgrade_unknown(d):
    d["upgrades"] = [{"from": "2.15/stable", "to": "2.99/stable"}]


def _bad_version(d):
    d["channels"]["2.22/stable"]["mlflow"] = "two"


def _platforms_list(d):
    d["platforms"] = ["local"]


def _bad_pin_range(d):
    d["install_pins"][0]["mlflow"] = "less than 3"


def _float_version(d):
    d["channels"]["2.22/stable"]["mlflow"] = 2.2


def _cloud_kind(d):  # declared by an entry point (see below), module not in this installation
    d["platforms"]["local"] = {"kind": "cloudy"}


def _phase_typo(d):
    d["known_defects"][0]["phases"] = ["upgrad"]


def _negative_poll(d):
    d["platforms"]["microk8s-1.32"]["poll_interval"] = -5


def _negative_timeout(d):
    d["timeouts"]["deploy"] = -1


def _zero_parallel(d):
    d["defaults"]["parallel"] = -1  # 0 is valid: sized to the machine


MALFORMED = [
    (_delete_channel_version, "channels.2.22/stable.mlflow", "add `mlflow: X.Y.Z`"),
    (_bad_kind, "platforms.local.kind", "registered kinds: aks, canonical-k8s, eks, existing, external"),
    (_cloud_kind, "platforms.local.kind", "registered but not installed"),
    (_phase_typo, "known_defects[0].phases[0]", "did you mean `upgrade`?"),
    (_negative_poll, "platforms.microk8s-1.32.poll_interval", "fix: write a positive number"),
    (_negative_timeout, "timeouts.deploy", "fix: write a positive number (seconds)"),
    (_zero_parallel, "defaults.parallel", "must be zero or more"),
    (_unknown_top, "platfroms", "did you mean `platforms`"),
    (_unknown_setting, "platforms.local.databse", "did you mean `database`"),
    (_wrong_type_timeout, "timeouts.deploy", "whole number"),
    (_bad_literal, "platforms.local.database", "sqlite, mysql"),
    (_default_unknown_channel, "defaults.channels", "9.9/stable"),
    (_upgrade_unknown, "upgrades[0].to", "2.99/stable"),
    (_bad_version, "channels.2.22/stable.mlflow", "not a version"),
    (_platforms_list, "platforms", "must be a mapping"),
    (_bad_pin_range, "install_pins[0].mlflow", "version range"),
    (_float_version, "channels.2.22/stable.mlflow", "quote it"),
]


@pytest.mark.parametrize(("mutate", "key", "expected"), MALFORMED,
                         ids=[m[0].__name__.strip("_") for m in MALFORMED])
def test_malformed_matrix_exits_2_naming_file_and_key(tmp_path, capsys, monkeypatch, mutate, key,
                                                      expected):
    register_kind(tmp_path, monkeypatch, "cloudy", "mm_cloudy_not_installed:Provisioner")
    path = _mutated(tmp_path, mutate)
    code = main(["list", "--matrix", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: {key}:" in err
    assert expected in err
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 6


def test_duplicate_platform_name_is_rejected(tmp_path, capsys):
    text = DEFAULT_MATRIX.read_text(encoding="utf-8").replace(
        "  local-mysql:\n", "  local:\n    kind: local\n  local-mysql:\n", 1)
    path = _write(tmp_path, text)
    assert main(["list", "--matrix", str(path)]) == 2
    err = capsys.readouterr().err
    assert "platforms.local: declared twice" in err


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    path = _write(tmp_path, "channels:\n  a: [unclosed\nplatforms: {}\n")
    assert main(["list", "--matrix", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "line" in err


def test_empty_and_missing_files(tmp_path, capsys):
    assert main(["list", "--matrix", str(_write(tmp_path, ""))]) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert main(["list", "--matrix", str(tmp_path / "nope.yaml")]) == 2
    assert "matrix file not found" in capsys.readouterr().err


def test_bad_flags_exit_2_with_hint(capsys):
    assert main(["run", "--platform", "nosuch", "--dry-run"]) == 2
    assert "unknown platform 'nosuch'" in capsys.readouterr().err
    assert main(["run", "--channel", "1.0/stable", "--dry-run"]) == 2
    assert "unknown channel" in capsys.readouterr().err
    assert main(["run", "--upgrade", "2.15/stable", "--dry-run"]) == 2
    assert "FROM:TO" in capsys.readouterr().err
    assert main(["run", "--mlflow-version", "latest", "--dry-run"]) == 2
    assert "is not a version" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--parallel", "0"])
    assert exc.value.code == 2


def test_selection_by_flags():
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=("2.15/stable",),
                                           scenarios=("tracking",)))
    assert [(c.platform.name, c.id, c.scenarios) for c in cells] == [
        ("local", "2.15-stable", ("tracking",))]


def test_dry_run_prints_plan_without_running(capsys):
    assert main(["run", "--platform", "local", "--channel", "2.22/stable", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "mlflow server --host 127.0.0.1" in out
    assert "--default-artifact-root s3://mlflow/" in out
    assert "mlflow==2.22.0" in out


def test_version_bound_defect_never_matches_a_detected_version():
    import dataclasses

    from harness.config.defects import KnownDefect, Signature, applies
    from harness.config.matrix import DETECT, adhoc_channel, cell_facts

    matrix = load_matrix()
    cell = expand_cells(matrix, Selection(platforms=("local",), channels=("2.22/stable",),
                                          scenarios=("tracking",)))[0]
    detected = dataclasses.replace(cell, channel=adhoc_channel(DETECT))
    defect = KnownDefect(id="x", link="l", summary="s", signature=Signature(message="m"),
                         tests=("t",), fixed_in="3.0")
    assert applies(defect, cell_facts(cell))
    assert not applies(defect, cell_facts(detected))
    assert applies(defect, cell_facts(detected, server_versions=("2.22.0",)))
    assert not applies(defect, cell_facts(detected, server_versions=("3.1.0",)))


def test_matrix_yaml_in_the_current_directory_is_the_default(tmp_path, monkeypatch, capsys):
    """`--matrix` help says ./matrix.yaml: a matrix.yaml where the user stands wins."""
    data = _base()
    data["channels"]["2.22/stable"]["mlflow"] = "2.22.1"
    _write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"matrix: {tmp_path / 'matrix.yaml'}" in out
    assert "MLflow 2.22.1" in out
    monkeypatch.chdir(tmp_path / "..")
    assert load_matrix().path == DEFAULT_MATRIX
