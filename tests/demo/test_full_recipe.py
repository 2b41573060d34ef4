"""The full demo's recipe in miniature: per-model encoder pre-training, frozen encoders, re-worded conversations and
the thumbnail comparator, end to end (the quick demo trains neither a comparator nor pre-trained encoders).

Three sources (mammography DICOM, slides and the linked pathway cohort), 12 synthetic patients each and a handful of
steps: nothing here is about accuracy, only that every part of the default path runs and does what its settings say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from breastgpt.demo import run_demo
from breastgpt.demo.settings import DemoSettings
from breastgpt.synth.writers import PLANTED_IDENTIFIERS, PLANTED_PATIENT_ID_PREFIX

MINI = DemoSettings(name="mini", deid_patients=2, sources=("vindr_mammo", "bcnb", "pathway_cohort"), patients=12,
                    train_steps=6, micro_batch=4, bootstrap=200, encoder_steps=4, freeze_encoders=True,
                    train_variants=2, ablations=("no-image", "shuffle-image", "no-prior-media"))


@pytest.fixture(scope="module")
def mini_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("mini") / "out"
    return out, run_demo(out, settings=MINI, secret=b"m" * 32)


def test_every_stage_runs_in_order(mini_demo) -> None:
    out, summary = mini_demo
    assert summary.ok is True
    stages = {stage.name: stage for stage in summary.stages}
    assert list(stages) == ["synthesize DICOM", "inspect", "de-identify", "PHI scan", "cohort", "corpus", "audit",
                            "task set", "slide features", "model", "train breastgpt", "train thumbnail", "bench",
                            "score", "report"]
    assert stages["synthesize DICOM"].figures == {"patients": 2, "dicom_files": 8}
    assert stages["cohort"].figures["patients"] == 36
    assert stages["audit"].figures["leakage"] is False
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "not a medical device" in html


def test_nothing_identifying_leaks(mini_demo) -> None:
    out, summary = mini_demo
    stages = {stage.name: stage for stage in summary.stages}
    assert stages["PHI scan"].figures["leaks"] == 0
    written = [p for p in (out / "deidentified").rglob("*") if p.is_file()] + [out / "demo.log", out / "summary.json"]
    assert len(written) > 2
    for path in written:
        blob = path.read_bytes() + str(path.relative_to(out)).encode()
        for value in list(PLANTED_IDENTIFIERS.values()) + [PLANTED_PATIENT_ID_PREFIX, "FAKEPHI"]:
            assert value.encode() not in blob, f"{value} leaked into {path}"


def test_both_models_pretrain_their_own_routes_and_keep_their_encoders_frozen(mini_demo) -> None:
    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.module_groups import encoder_prefixes

    encoder_params = encoder_prefixes(BreastGPTForConditionalGeneration.module_groups)

    out, summary = mini_demo
    stages = {stage.name: stage for stage in summary.stages}
    assert all(stage.ok for stage in summary.stages), [s.message for s in summary.stages if not s.ok]
    for name, mode in (("breastgpt", "features"), ("thumbnail", "thumbnail")):
        figures = stages[f"train {name}"].figures
        assert figures["steps"] == 6 and figures["encoder_pretraining"]["slide_mode"] == mode
        manifest = json.loads((out / "stages" / f"pretrain_{name}.json").read_text())
        assert manifest["figures"]["steps"] == 4
        pretrained = out / "runs" / f"encoders-{name}" / "final"
        config = json.loads((pretrained / "manifest.json").read_text())["config"]
        assert config["objective"] == "encoders" and config["data"]["slide_mode"] == mode  # the training loop's
        assert (pretrained / "encoder_heads.safetensors").is_file()
        assert json.loads((out / "runs" / name / "final" / "manifest.json").read_text())["config"]["model"][
            "path"] == str(pretrained)
        encoders = BreastGPTForConditionalGeneration.from_pretrained(pretrained)
        final = BreastGPTForConditionalGeneration.from_pretrained(out / "runs" / name / "final")
        before, after = dict(encoders.named_parameters()), dict(final.named_parameters())
        frozen = [n for n in before if n.startswith(encoder_params)]
        assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)  # freeze_encoders held
        assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("model.language_model."))
    if summary.machine["torch_threads"] >= 2:  # the comparator trained meanwhile, in a process of its own
        assert "parallel" in stages["train thumbnail"].figures and stages["train thumbnail"].figures["threads"] >= 1
        assert "comparator" in stages["train breastgpt"].figures


def test_the_comparator_is_scored_beside_breastgpt(mini_demo) -> None:
    out, summary = mini_demo
    results = summary.results
    assert set(results["models"]) == {"breastgpt", "thumbnail"}
    rows = {row["set"]: row for row in results["slide_vs_thumbnail"]}
    assert {"all image-dependent", "not pathology", "pathology"} <= set(rows)
    assert rows["not pathology"]["n_items"] + rows["pathology"]["n_items"] == rows["all image-dependent"]["n_items"]
    for key in ("breastgpt", "thumbnail", "difference"):
        assert rows["pathology"][key]["n_items"] == rows["pathology"]["n_items"] > 0
    assert summary.settings["train_variants"] == 2 and summary.settings["comparator"] is True
    assert (out / "report.html").is_file() and "thumbnail" in (out / "report.html").read_text()


def test_a_failed_comparator_training_names_its_error_and_log(tmp_path) -> None:
    """The comparator trains through the public command (`breastgpt train run`); a failure there reaches the demo's
    stage as a RuntimeError naming the command, its exit status and its log."""
    import threading

    from breastgpt.demo.training import _Running, cli_process, finish_comparator
    from breastgpt.train.recipes import get_recipe

    config = get_recipe("demo-thumbnail")
    config.output_dir, config.model.path = str(tmp_path / "run"), str(tmp_path / "no-init")
    log = tmp_path / "thumbnail.log"
    with pytest.raises(RuntimeError, match=r"`breastgpt train run --recipe demo-thumbnail` for demo-thumbnail exited "
                                           r"with status 2 \(its log: .*thumbnail.log\)"):
        cli_process(1, log)("demo-thumbnail", config)
    assert "no-init: not a checkpoint folder (no config.json)" in log.read_text()
    outcome = {"error": RuntimeError("DataError: bad slide"), "seconds": 1.0}
    thread = threading.Thread(target=lambda: None)
    thread.start()
    with pytest.raises(RuntimeError, match=r"comparator's training failed: DataError: bad slide \(its log: "):
        finish_comparator(_Running(thread, log, 1, outcome))


def test_pathway_items_are_trained_benched_with_and_without_earlier_media_and_reported(mini_demo) -> None:
    out, summary = mini_demo
    stages = {stage.name: stage for stage in summary.stages}
    counts = stages["task set"].figures["pathway"]
    assert counts["train"] > 0 and counts["bench"] > 0 and counts["train"] + counts["bench"] == 24
    train = [json.loads(line) for line in (out / "task_set" / "train_conversations.jsonl").read_text().splitlines()]
    pathway_rows = [r for r in train if sum(m["role"] == "user" for m in r["messages"]) == 3 and r["slides"]]
    assert len(pathway_rows) == counts["train"]
    bench = [json.loads(line) for line in (out / "task_set" / "bench.jsonl").read_text().splitlines()]
    assert not [r for r in bench if r["source"] == "pathway_cohort" and not r["template_id"].startswith("pathway-")]
    rows = summary.results["pathway"]
    assert rows[0]["set"] == "all pathway items" and rows[0]["n_items"] == counts["bench"]
    assert rows[0]["no_prior_media"]["n_items"] == counts["bench"] and "difference" in rows[0]
    assert all(row["set"] != "pathway" for m in summary.results["models"].values() for row in m["table"])
    assert "Care pathway" in (out / "report.html").read_text()
