"""The demo's paired slide-branch − thumbnail comparison on small inputs with known answers: the all-items row, the
items both models read through the same route ("not pathology"), pathology and its templates, and where the rows
appear in the HTML report and the printed table."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from breastgpt.bench.items import item_from_record
from breastgpt.demo.evaluate import Scored, slide_comparison
from breastgpt.demo.report import comparison_rich_table, render_report
from tests.bench.helpers import closed_record
from tests.clitext import words


def _pair() -> tuple[Scored, Scored]:
    rows = []
    for i in range(10):  # 5 patients, two pathology templates
        template = "tx-path-er-yesno" if i % 2 else "tx-path-her2-yesno"
        rows.append({**closed_record(f"path-{i}", f"p{i // 2}", modality="pathology"), "template_id": template})
    rows += [closed_record(f"mam-{i}", f"m{i // 2}") for i in range(20)]  # 10 patients
    items = [item_from_record(r) for r in rows]
    slide = np.r_[[1.0] * 9 + [0.0], [1.0] * 12 + [0.0] * 8]  # pathology 9/10, mammography 12/20
    thumbnail = np.r_[[1.0, 0.0] * 5, [1.0] * 14 + [0.0] * 6]  # pathology 5/10, mammography 14/20
    return Scored(items, {"full": slide}), Scored(items, {"full": thumbnail})


def test_rows_split_the_all_items_difference_into_its_two_routes():
    rows = {r["set"]: r for r in slide_comparison(*_pair(), 500, 0)}
    assert list(rows) == ["all image-dependent", "not pathology", "pathology", "tx-path-er-yesno",
                          "tx-path-her2-yesno"]
    assert [rows[k]["n_items"] for k in rows] == [30, 20, 10, 5, 5]
    assert np.isclose(rows["all image-dependent"]["difference"]["point"], (21 - 19) / 30)
    assert np.isclose(rows["not pathology"]["difference"]["point"], (12 - 14) / 20)
    assert np.isclose(rows["pathology"]["difference"]["point"], (9 - 5) / 10)
    er, her2 = rows["tx-path-er-yesno"], rows["tx-path-her2-yesno"]  # odd and even pathology items
    assert (er["breastgpt"]["point"], er["thumbnail"]["point"]) == (0.8, 0.0) and np.isclose(er["difference"]["point"], 0.8)
    assert (her2["breastgpt"]["point"], her2["thumbnail"]["point"], her2["difference"]["point"]) == (1.0, 1.0, 0.0)
    # The shares add up: the all-items difference is the item-weighted mix of the two routes.
    mix = (20 * rows["not pathology"]["difference"]["point"] + 10 * rows["pathology"]["difference"]["point"]) / 30
    assert np.isclose(mix, rows["all image-dependent"]["difference"]["point"])
    for row in rows.values():
        iv = row["difference"]
        assert iv["low"] <= iv["point"] <= iv["high"]


def test_without_pathology_items_there_is_one_row():
    slide, thumbnail = _pair()
    keep = [i for i, it in enumerate(slide.items) if it.modality != "pathology"]
    part = [Scored([s.items[i] for i in keep], {"full": s.correct["full"][keep]}) for s in (slide, thumbnail)]
    assert [r["set"] for r in slide_comparison(*part, 200, 0)] == ["all image-dependent"]


def test_the_report_and_the_printed_table_show_every_row():
    results = {"models": {}, "slide_vs_thumbnail": slide_comparison(*_pair(), 200, 0)}
    html = render_report({"stages": [], "settings": {}, "machine": {}, "seconds": 1.0}, results, [])
    assert "Slide branch vs thumbnail" in html and "not pathology" in html and "the two trainings' own" in html
    console = Console(width=200, record=True)
    console.print(comparison_rich_table(results))
    text = words(console.export_text())
    for name in ("all image-dependent", "not pathology", "pathology", "tx-path-er-yesno"):
        assert name in text
    assert "-10.0 [" in text and "40.0 [" in text  # not pathology 60.0 vs 70.0; pathology 90.0 vs 50.0
