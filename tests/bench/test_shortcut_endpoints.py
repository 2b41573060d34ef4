"""Issue 30 point 2: two text-only shortcut endpoints are flagged on every cell, a real image reader on none.

The bench has closed questions in three paper columns (one of them partly from an external held-out source),
open-ended questions and grounding items, 40 patients per cell. Each item's image encodes its answer in its grey
level, so an endpoint that decodes the PNG it is sent really reads the image. The two shortcut endpoints never look
at it: one answers every template with its training prior (the majority training answer), one always says "A".
All three are run through `bench run` with the no-image ablation and scored with the training records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from breastgpt.bench.aggregate import score_run
from breastgpt.bench.items import load_items
from breastgpt.bench.report import first_screen, report_dict, source_table
from breastgpt.bench.runner import run_bench
from breastgpt.bench.scoring import ScoreConfig
from breastgpt.corpus.records import write_records_jsonl
from tests.bench.stub_openai import StubOpenAI
from tests.bench.test_ablations import make_record
from tests.bench.test_runner import config, decode_png, image_parts, letter_of, user_text

OPTIONS = ["Malignant", "Benign", "Normal", "Cyst"]
TEXTS = ["an oval mass with circumscribed margins", "a spiculated irregular mass with architectural distortion",
         "clustered fine pleomorphic calcifications", "heterogeneously dense tissue without a mass"]
BOXES = [[100, 100, 300, 300], [500, 500, 800, 800], [100, 600, 300, 900], [600, 100, 900, 300]]
CLOSED_CELLS = [("diagnosis", "mammography"), ("screening", "ultrasound"), ("diagnosis", "mri")]
N = 40  # patients per cell


def _closed_answer(i: int) -> int:
    return [1, 1, 1, 0, 2][i % 5]  # Benign 60 %, Malignant 20 %, Normal 20 %


def _bench_records() -> tuple[list[Any], dict[str, int]]:
    """Bench records and, per item, the code its image carries."""
    recs, code = [], {}
    for c, (stage, modality) in enumerate(CLOSED_CELLS):
        for i in range(N):
            rid = f"c{c}x{i}"
            answer = _closed_answer(i)
            rec = make_record(rid, f"pc{c}-{i}", answer=answer, options=OPTIONS, stage=stage, modality=modality)
            if c == 0 and i % 2:  # half of the mammography cell comes from a held-out external source
                rec = dataclasses.replace(rec, source="inbreast", split="external")
            recs.append(rec)
            code[rid] = answer
    for i in range(N):
        rid = f"o{i}"
        recs.append(make_record(rid, f"po{i}", family="open_vqa", stage="screening", modality="ultrasound",
                                answer_text=TEXTS[i % 4]))
        code[rid] = i % 4
    for i in range(N):
        rid = f"g{i}"
        recs.append(_grounding(rid, f"pg{i}", BOXES[i % 4]))
        code[rid] = i % 4
    return recs, code


def _train_records() -> list[Any]:
    """Training records of the same templates: majority answers Benign, TEXTS[0] and BOXES[0] (60 %)."""
    recs = []
    for i in range(20):
        major = i % 5 < 3
        recs.append(make_record(f"tc{i}", f"tp{i}", answer=1 if major else 3, options=OPTIONS, split="train"))
        recs.append(make_record(f"to{i}", f"tq{i}", family="open_vqa", answer_text=TEXTS[0 if major else 1 + i % 3],
                                split="train"))
        recs.append(_grounding(f"tg{i}", f"tr{i}", BOXES[0 if major else 1 + i % 3], split="train"))
    return recs


def _grounding(rid: str, patient: str, box: list[int], split: str = "bench") -> Any:
    rec = make_record(rid, patient, family="open_vqa", question=f"Item {rid}: where is the lesion?", split=split)
    return dataclasses.replace(rec, task_family="grounding", template_id="t-grounding", label={"box": box},
                               messages=[*rec.messages[:2], {"role": "assistant", "content": str(box)}])


def _write_bench(root: Path) -> tuple[Path, Path]:
    recs, code = _bench_records()
    for r in recs:
        path = root / r.media[0].path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 10), 20 + 50 * code[r.id], np.uint8)).save(path)
    write_records_jsonl(root / "bench.jsonl", recs)
    write_records_jsonl(root / "train.jsonl", _train_records())
    return root / "bench.jsonl", root / "train.jsonl"


def _family(body: dict[str, Any]) -> str:
    text = user_text(body)
    return "closed" if "\nA. " in text else "grounding" if "where is the lesion" in text else "open"


def image_reader(body: dict[str, Any]) -> str:
    """Decodes the image it is sent; without one it says so (and scores nothing)."""
    parts = image_parts(body)
    if not parts:
        return "No image was provided, so I cannot answer."
    code = int(round((decode_png(parts[0]["image_url"]["url"]).mean() - 20) / 50))
    family = _family(body)
    if family == "closed":
        return letter_of(body, OPTIONS[code])
    return str(BOXES[code]) if family == "grounding" else TEXTS[code].capitalize() + "."


def training_prior(body: dict[str, Any]) -> str:
    """Never looks at the image: each template's majority training answer."""
    family = _family(body)
    if family == "closed":
        return letter_of(body, "Benign")
    return str(BOXES[0]) if family == "grounding" else TEXTS[0]


def always_a(body: dict[str, Any]) -> str:
    return "A"


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("endpoints")
    bench, train_path = _write_bench(root)
    train = load_items(train_path, split="train")
    out = {}
    for name, answer in (("reader", image_reader), ("prior", training_prior), ("always_a", always_a)):
        with StubOpenAI(answer) as stub:
            run_bench(config(bench, stub, root / name, ablations=("no-image",), concurrency=8))
        items = load_items(root / name / "bench_items.jsonl")
        out[name] = score_run(items, root / name, ScoreConfig(n_resamples=1000, embeddings=False), train=train)
    out["root"] = root
    return out


def _rows(scores: Any, *variants: str) -> list[dict[str, Any]]:
    return [s for s in scores.shortcuts if s["variant"] in variants]


# closed: overall, Dx Mam, Scr BUS, Dx MRI, external; open: overall, Scr BUS; grounding: overall, Dx Mam
PLACES = {("closed_vqa", "overall"), ("closed_vqa", "Dx Mam"), ("closed_vqa", "Scr BUS"), ("closed_vqa", "Dx MRI"),
          ("closed_vqa", "external"), ("open_vqa", "overall"), ("open_vqa", "Scr BUS"), ("grounding", "overall"),
          ("grounding", "Dx Mam")}


@pytest.mark.parametrize("endpoint", ["prior", "always_a"])
def test_shortcut_endpoints_are_flagged_on_every_cell(scored, endpoint):
    scores, _ = scored[endpoint]
    no_image = _rows(scores, "no_image")
    assert {(s["family"], s["where"]) for s in no_image} == PLACES
    assert all(s["flag"] and "with no image" in s["flag"] for s in no_image), [s for s in no_image if not s["flag"]]
    against_prior = _rows(scores, "prior")
    assert {(s["family"], s["where"]) for s in against_prior} == PLACES
    assert all(s["flag"] for s in against_prior)
    screen = first_screen(report_dict(scores, []))
    flagged = {c for c, f in zip(screen["columns"], screen["flags"]) if f}
    assert flagged == {"Dx Mam", "Scr BUS", "Dx MRI", "closed", "open"}


def test_the_training_prior_endpoint_scores_exactly_the_prior_baseline(scored):
    scores, _ = scored["prior"]
    closed = scores.paper_row["closed"]
    assert closed["point"] == pytest.approx(0.6) and closed["baselines"]["prior"]["point"] == pytest.approx(0.6)
    assert closed["baselines"]["chance"]["point"] == pytest.approx(0.25)
    assert closed["baselines"]["text_only"]["point"] == pytest.approx(0.6)
    gap = next(s for s in scores.shortcuts if s["variant"] == "prior" and s["where"] == "overall"
               and s["family"] == "closed_vqa")["gap"]
    assert (gap["point"], gap["low"], gap["high"]) == (0.0, 0.0, 0.0)


def test_a_real_image_reader_is_not_flagged(scored):
    scores, _ = scored["reader"]
    rows = _rows(scores, "no_image", "prior", "chance")
    assert len(rows) == 2 * len(PLACES) + 5  # chance is defined for the closed places only
    assert not [s for s in rows if s["flag"]]
    assert scores.paper_row["closed"]["point"] == 1.0 and scores.paper_row["closed"]["baselines"]["text_only"][
        "point"] == 0.0
    screen = first_screen(report_dict(scores, []))
    assert not any(screen["flags"]) and [r["label"] for r in screen["rows"]] == [
        "stub-model (internal bench)", "external (held-out sources)", "chance (uniform guess)", "training prior (per template)",
        "text-only (no image)"]


def test_external_partition_is_reported_beside_the_internal_bench(scored):
    scores, _ = scored["reader"]
    assert scores.paper_external["Dx Mam"]["n_items"] == N // 2 and scores.paper_external["Scr BUS"] is None
    assert scores.paper_row["Dx Mam"]["n_items"] == N // 2 and scores.paper_row["Dx MRI"]["n_items"] == N
    table = source_table(report_dict(scores, []))
    assert table["partitions"] == ["internal", "external"]
    by_source = {r["source"]: r["cells"] for r in table["rows"]}
    assert by_source["inbreast"][0] is None and by_source["inbreast"][2]["n_clusters"] == N // 2
    assert by_source["vindr"][0]["n_items"] == 2 * N + N // 2  # internal closed items of the default source
    assert by_source["vindr"][2] is None


def test_score_cli_takes_the_training_records(scored):
    from typer.testing import CliRunner

    from breastgpt.bench.cli import app
    from tests.clitext import words

    root = scored["root"]
    args = ["score", str(root / "prior" / "bench_items.jsonl"), str(root / "prior"), "--resamples", "100",
            "--no-embeddings", "--out", str(root / "prior-cli")]
    res = CliRunner().invoke(app, [*args, "--train", str(root / "train.jsonl")])
    assert res.exit_code == 0, res.output
    text = words(res.stdout)
    assert all(w in text for w in ("column", "model", "external", "chance", "prior", "MDD", "flag"))
    assert text.count("⚑") == 5  # Dx Mam, Scr BUS, Dx MRI, closed, open
    res = CliRunner().invoke(app, [*args, "--train", str(root / "prior" / "bench_items.jsonl")])
    assert res.exit_code == 2 and "no record with split 'train'" in words(res.output)


def test_report_tables_show_the_baselines_beside_each_score(scored, tmp_path):
    from breastgpt.bench.report import write_report

    scores, files = scored["prior"]
    write_report(scores, tmp_path / "out", files)
    html = (tmp_path / "out" / "report.html").read_text()
    cells = html.split("<h2>Stage × modality × task family × source</h2>")[1].split("<h2>")[0]
    sources = html.split("<h2>Per source")[1].split("<h2>")[0]
    # every closed cell row: chance, prior and text-only under the accuracy (4 closed cell rows)
    assert cells.count('<small class="b">chance') == 4 and cells.count('<small class="b">prior') >= 4 + 2 + 2
    assert sources.count('<small class="b">text-only') == 3  # vindr closed and open, inbreast closed (external)
