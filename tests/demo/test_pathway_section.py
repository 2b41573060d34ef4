"""Issue 34, point 4: the demo's pathway section — pathway items scored apart from the image-dependent set, accuracy
with and without the earlier stages' media, patient-clustered intervals — on small synthetic inputs, and its place
in the HTML report and the printed tables."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from breastgpt.bench.items import item_from_record
from breastgpt.demo.evaluate import Scored, learning_table, pathway_table, split_pathway
from breastgpt.demo.report import pathway_rich_table, render_report
from tests.bench.helpers import closed_record
from tests.clitext import words


def _scored() -> Scored:
    rows = []
    for i in range(24):  # 12 patients, two pathway items each (ER and HER2)
        for template in ("pathway-er-treatment", "pathway-her2-treatment"):
            row = closed_record(f"{template}-{i}", f"p{i // 2}", i % 2, stage="treatment", modality="pathology")
            rows.append({**row, "template_id": template})
    rows += [closed_record(f"single-{i}", f"q{i}", i % 2) for i in range(10)]
    items = [item_from_record(r) for r in rows]
    rng = np.random.default_rng(0)
    pathway_full = (rng.random(48) < 0.8).astype(float)
    pathway_without = pathway_full * (rng.random(48) < 0.6)  # some answers lost without the earlier media
    full = np.r_[pathway_full, np.tile([1.0, 0.0], 5)]  # single questions: 50 %
    without = np.r_[pathway_without, np.full(10, np.nan)]  # no-prior-media asked only the pathway items
    no_image = np.r_[np.full(48, 0.5), np.zeros(10)]
    return Scored(items, {"full": full, "no_prior_media": without, "no_image": no_image})


def test_pathway_items_are_scored_apart_from_the_criterion_set():
    single, pathway = split_pathway(_scored())
    assert len(single.items) == 10 and len(pathway.items) == 48
    assert set(single.correct) == {"full", "no_image"}  # no-prior-media asked none of them
    assert not any(it.template_id.startswith("pathway-") for it in single.items)
    assert learning_table(single, 200, 0)[0]["full"]["point"] == 0.5
    assert split_pathway(single)[1] is None


def test_pathway_table_compares_with_and_without_earlier_media_with_patient_intervals():
    _, pathway = split_pathway(_scored())
    rows = pathway_table(pathway, 500, 0)
    assert [r["set"] for r in rows] == ["all pathway items", "pathway-er-treatment", "pathway-her2-treatment"]
    overall = rows[0]
    assert (overall["n_items"], overall["n_patients"], overall["chance"]) == (48, 12, 0.5)
    full, without = pathway.correct["full"], pathway.correct["no_prior_media"]
    assert overall["full"]["point"] == full.mean() and overall["no_prior_media"]["point"] == without.mean()
    assert np.isclose(overall["difference"]["point"], full.mean() - without.mean())
    for key in ("full", "no_prior_media", "difference"):
        iv = overall[key]
        assert iv["low"] <= iv["point"] <= iv["high"] and iv["high"] - iv["low"] > 0
    assert overall["difference"]["low"] > 0  # the planted loss without the earlier media is found
    assert sum(r["n_items"] for r in rows[1:]) == 48


def test_the_report_and_the_printed_table_show_the_pathway_section():
    _, pathway = split_pathway(_scored())
    results = {"models": {}, "pathway": pathway_table(pathway, 200, 0)}
    html = render_report({"stages": [], "settings": {}, "machine": {}, "seconds": 1.0}, results, [])
    assert "Care pathway" in html and "without earlier-stage media" in html
    overall = results["pathway"][0]
    for key in ("full", "no_prior_media", "difference"):
        assert f"{100 * overall[key]['point']:.1f} [{100 * overall[key]['low']:.1f}," in html
    console = Console(width=200, record=True)
    console.print(pathway_rich_table(results))
    text = words(console.export_text())
    assert "all pathway items" in text and f"{100 * overall['full']['point']:.1f} [" in text
    assert pathway_rich_table({"models": {}}) is None


def test_pathway_records_train_as_they_are_and_stay_out_of_encoder_pretraining():
    from breastgpt.train.encoder_objective import encoder_task
    from breastgpt.demo.tasks import pathway_rows

    record = {**closed_record("pw", "p1", 0, stage="treatment"), "template_id": "pathway-er-treatment",
              "split": "train", "media": [{"path": "media/a.png", "kind": "image"},
                                          {"path": "features/b.h5", "kind": "slide"}]}
    (row,) = pathway_rows([record])
    assert row["messages"] == record["messages"] and row["images"] == ["media/a.png"]
    assert row["slides"] == ["features/b.h5"] and row["videos"] == []
    single = {**closed_record("s1", "p2", 1), "split": "train", "media": [{"path": "media/c.png", "kind": "image"}]}
    other = {**closed_record("s2", "p3", 0), "split": "train", "media": [{"path": "media/d.png", "kind": "image"}]}
    task = encoder_task([record, single, other])
    assert set(task.classes) == {"t-closed"} and list(task.media) == [("media/c.png",), ("media/d.png",)]
    assert task.skipped == {"pathway": 1}
