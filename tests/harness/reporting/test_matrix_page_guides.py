"""The matrix page names the guide an upgrade cell followed, or says there is none."""

from __future__ import annotations

import json

from harness.reporting.matrix_page import write_matrix_page

from .conftest import cell_json


def _as_upgrade(reports, column: str, procedure: dict) -> None:
    body = cell_json(reports, column)
    body.update(upgrade=True, procedure=procedure)
    (reports / column / "cell.json").write_text(json.dumps(body), encoding="utf-8")


def test_upgrade_cells_show_their_guide_or_no_published_guide(reports):
    guide = {"id": "upgrade-2.15-to-2.22", "title": "Upgrade from 2.15 to 2.22",
             "url": "https://documentation.ubuntu.com/charmed-mlflow/how-to/manage/upgrade/"
                    "migrate-v215-v222/", "read": "2026-12-08"}
    _as_upgrade(reports, "local/2.22-stable", {"kind": "upgrade", "guides": [guide]})
    _as_upgrade(reports, "local/latest-edge", {"kind": "upgrade", "guides": [],
                                               "note": "no published guide"})
    write_matrix_page(reports)
    md = (reports / "matrix.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| *guide followed*"))
    assert f"[Upgrade from 2.15 to 2.22]({guide['url']})" in row
    assert "no published guide" in row
    html = (reports / "matrix.html").read_text()
    assert f'<a href="{guide["url"]}">Upgrade from 2.15 to 2.22</a>' in html
    assert "no published guide" in html
    data = json.loads((reports / "matrix.json").read_text())
    by = {c["column"]: c for c in data["cells"]}
    assert by["local/latest-edge"]["procedure"]["note"] == "no published guide"
    assert by["local-mysql/2.22-stable"]["procedure"] is None
