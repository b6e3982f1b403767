"""matrix.yaml `upgrade_guides:`: the shipped guides load, and a malformed entry is one screen
naming the file, the key and the fix (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.config.matrix import DEFAULT_MATRIX, Selection, expand_cells, load_matrix


def _mutated(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    mutate(data["upgrade_guides"])
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _guide(guides, gid):
    return next(g for g in guides if g["id"] == gid)


def _no_url(g):
    _guide(g, "upgrade-2.15-to-2.22")["url"] = "docs.example/upgrade"


def _bad_date(g):
    _guide(g, "upgrade-2.15-to-2.22")["read"] = "last week"


def _unknown_path(g):
    _guide(g, "upgrade-2.15-to-2.22")["paths"] = ["2.15/stable:9.9/stable"]


def _unknown_do(g):
    _guide(g, "upgrade-2.15-to-2.22")["steps"][0]["do"] = "upgrade-charm"


def _refresh_without_channel(g):
    del _guide(g, "upgrade-2.15-to-2.22")["steps"][0]["channel"]


def _unknown_app(g):
    _guide(g, "upgrade-mlflow-2-to-3")["apps"] = {}


def _unknown_remedy_defect(g):
    _guide(g, "upgrade-2.15-to-2.22")["steps"][1]["remedy"]["defect"] = "no-such-defect"


def _path_twice(g):
    _guide(g, "upgrade-mlflow-2-to-3")["paths"].append("2.15/stable:2.22/stable")


def _duplicate_step(g):
    steps = _guide(g, "upgrade-2.15-to-2.22")["steps"]
    steps[1]["id"] = steps[0]["id"]


MALFORMED = [
    (_no_url, "upgrade_guides[0].url", "https://"),
    (_bad_date, "upgrade_guides[0].read", "YYYY-MM-DD"),
    (_unknown_path, "upgrade_guides[0].paths[0]", "use channels from `channels:`"),
    (_unknown_do, "upgrade_guides[0].steps[0].do", "refresh, remove-relation, integrate"),
    (_refresh_without_channel, "upgrade_guides[0].steps[0].channel", "add `channel:`"),
    (_unknown_app, "upgrade_guides[1].steps[0].app", "map the guide's name"),
    (_unknown_remedy_defect, "upgrade_guides[0].steps[1].remedy.defect", "known_defects"),
    (_path_twice, "upgrade_guides[1].paths", "already follows guide 'upgrade-2.15-to-2.22'"),
    (_duplicate_step, "upgrade_guides[0].steps[1].id", "its own id"),
]


@pytest.mark.parametrize(("mutate", "key", "expected"), MALFORMED,
                         ids=[m[0].__name__.strip("_") for m in MALFORMED])
def test_malformed_guide_exits_2_naming_file_and_key(tmp_path, capsys, mutate, key, expected):
    path = _mutated(tmp_path, mutate)
    code = main(["list", "--matrix", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: {key}:" in err
    assert expected in err
    assert "Traceback" not in err


def test_every_default_upgrade_path_follows_a_published_guide_read_from_its_page():
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=(),
                                           upgrades=matrix.defaults.upgrades))
    followed = {cell.path: [g.id for g in matrix.guides_for(cell)] for cell in cells}
    assert followed == {"2.15/stable:2.22/stable": ["upgrade-2.15-to-2.22"],
                        "2.22/stable:latest/edge": ["upgrade-mlflow-2-to-3"]}
    for guide in matrix.guides:
        assert guide.url.startswith("https://documentation.ubuntu.com/charmed-mlflow/")
        assert guide.source.startswith("canonical/mlflow-operator@")


def test_restore_cells_run_the_backup_then_the_restore_guide():
    matrix = load_matrix()
    cells = expand_cells(matrix, Selection(platforms=("local",), channels=(),
                                           restores=matrix.restore_paths()))
    assert [c.id for c in cells] == ["restore-2.22-stable-to-2.22-stable",
                                     "restore-latest-edge-to-latest-edge",
                                     "restore-2.22-stable-to-latest-edge"]
    assert [g.id for g in matrix.guides_for(cells[2])] == ["backup", "restore"]


def test_a_path_without_a_guide_says_so():
    from harness.config.matrix import Cell
    from harness.run.guided import procedure_summary

    matrix = load_matrix()
    cell = Cell(matrix.platforms["local"], matrix.channels["2.15/stable"], ("upgrade",),
                upgrade_to=matrix.channels["latest/edge"])
    assert matrix.guides_for(cell) == ()
    summary = procedure_summary(cell, ())
    assert summary["note"] == "no published guide"
    assert "migrates_db_on_upgrade = true" in str(summary["migration"])
