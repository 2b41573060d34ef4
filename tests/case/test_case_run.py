"""Issue 34, point 2: `case run` walks a synthetic linked patient and a case built from the real sample files, in
pathway order, carrying earlier studies forward as turns; the report is readable (real browser) and identifier-free;
an interrupted run resumes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastgpt.case import CaseError, load_case
from breastgpt.case.build import cases_from_source
from breastgpt.case.run import CaseSettings, run_case
from breastgpt.deid.pseudonym import Pseudonymizer
from breastgpt.infer.engine import Engine
from breastgpt.synth.cohort import generate
from tests.clitext import words

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SETTINGS = CaseSettings(encoder="tiny-random", max_new_tokens=8)  # the tiny checkpoint's 32-d slide branch


class Recording:
    """The real engine, remembering every conversation it was asked."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.asked = engine, []
        self.processor, self.model, self.name = engine.processor, engine.model, engine.name

    def generate(self, conversations, params):
        self.asked.extend(conversations)
        return self.engine.generate(conversations, params)

    def _inputs(self, conversations):
        return self.engine._inputs(conversations)  # noqa: SLF001 — the kept-tile overlay's prefill


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def synthetic_cases(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("cases")
    roots = generate(out / "raw", 2, ["pathway_cohort"], seed=4)
    pseudo = Pseudonymizer(b"case-test-secret-0123456789abcdef")
    return cases_from_source("pathway_cohort", roots["pathway_cohort"], out / "cases", pseudo.patient_key)


def _real_case(realdata: Path, folder: Path) -> Path:
    files = {"studies/1/image1.png": realdata / "ultrasound" / "busi" / "malignant_1.png",
             "studies/2/volume1.nrrd": realdata / "mri" / "breast1_image.nrrd",
             "studies/3/slide1.svs": realdata / "wsi" / "CMU-1-Small-Region.svs"}
    for rel, source in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / rel)
    case = {"format": "breastgpt-case", "version": 1, "patient": "PK-REAL",
            "studies": [
                {"stage": "treatment", "modality": "pathology", "date": "2024-03-01",
                 "media": [{"kind": "slide", "path": "studies/3/slide1.svs"}]},
                {"stage": "screening", "modality": "ultrasound", "date": "2024-01-10",
                 "media": [{"kind": "image", "path": "studies/1/image1.png"}],
                 "clinical_text": "Palpable lump, upper outer quadrant."},
                {"stage": "diagnosis", "modality": "mri", "date": "2024-02-01",
                 "media": [{"kind": "volume", "path": "studies/2/volume1.nrrd"}]}]}
    (folder / "case.json").write_text(json.dumps(case))
    return folder


def _check_report(out: Path, pseudonym: str, stems: list[str]) -> dict:
    report = json.loads((out / "case_report.json").read_text())
    assert [s["stage"] for s in report["studies"]] == ["screening", "diagnosis", "treatment"]
    assert [len(s["questions"]) for s in report["studies"]] == [1, 1, 2]
    for study in report["studies"]:
        assert study["images"] and all((out / p).is_file() for p in study["images"])
    assert report["studies"][2]["kept_tiles"] and (out / report["studies"][2]["kept_tiles"][0]).is_file()
    written = (out / "case_report.json").read_text() + (out / "report.html").read_text()
    assert pseudonym not in written and not [s for s in stems if s in written]
    return report


def test_synthetic_patient_runs_in_pathway_order_with_history(synthetic_cases, engine, tiny_checkpoint, tmp_path):
    assert len(synthetic_cases) == 2
    case = load_case(synthetic_cases[0])
    assert [s.stage for s in case.ordered()] == ["screening", "diagnosis", "treatment"]
    recording = Recording(engine)
    report = run_case(case.folder, tiny_checkpoint, tmp_path / "out", SETTINGS, engine=recording)
    _check_report(tmp_path / "out", case.patient, ["screening_mammogram", "biopsy_slide", "PWMRN", "patient_0"])
    assert [s["day"] for s in report["studies"]] == [0, 12, 30]
    assert len(recording.asked) == 4
    roles = [[m["role"] for m in c.messages] for c in recording.asked]
    assert roles == [["user"], ["user", "assistant", "user"]] + [["user", "assistant"] * 2 + ["user"]] * 2
    last = recording.asked[-1]
    kinds = [[p["type"] for p in m["content"]] for m in last.messages if m["role"] == "user"]
    assert kinds == [["image", "text"], ["image", "text"], ["slide", "text"]]
    assert last.messages[1]["content"] == report["studies"][0]["questions"][0]["answer"]  # the model's own answer
    assert "Clinical stage: treatment planning" in last.prompt_messages()[0]["content"]
    assert "Clinical stage: screening" in recording.asked[0].prompt_messages()[0]["content"]


def test_an_interrupted_run_resumes(synthetic_cases, engine, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    first = Recording(engine)
    run_case(synthetic_cases[1], tiny_checkpoint, out, SETTINGS, engine=first)
    state = json.loads((out / ".state" / "answers.json").read_text())
    del state["answers"]["2:1"]  # as if killed before the last answer
    (out / ".state" / "answers.json").write_text(json.dumps(state))
    again = Recording(engine)
    report = run_case(synthetic_cases[1], tiny_checkpoint, out, SETTINGS, engine=again)
    assert len(again.asked) == 1 and report["questions"] == 4
    other = Recording(engine)
    run_case(synthetic_cases[1], tiny_checkpoint, out, CaseSettings(encoder="tiny-random", max_new_tokens=5),
             engine=other)
    assert len(other.asked) == 4  # other settings: nothing is reused


def test_case_folder_from_the_real_sample_files(realdata, engine, tiny_checkpoint, tmp_path):
    folder = _real_case(realdata, tmp_path / "case")
    run_case(folder, tiny_checkpoint, tmp_path / "out", CaseSettings(encoder="tiny-random", max_new_tokens=8),
             engine=engine)
    report = _check_report(tmp_path / "out", "PK-REAL", ["CMU-1", "malignant_1", "breast1_image"])
    assert [s["modality"] for s in report["studies"]] == ["ultrasound", "mri", "pathology"]
    assert report["studies"][0]["clinical_text"].startswith("Palpable lump")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium / chromium-browser not on PATH (apt-get install chromium)")
def test_case_report_reads_in_a_real_browser(synthetic_cases, engine, tiny_checkpoint, tmp_path):
    run_case(synthetic_cases[0], tiny_checkpoint, tmp_path / "out", SETTINGS, engine=engine)
    png = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={png}", "--window-size=1200,1800", (tmp_path / "out" / "report.html").as_uri()]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (1800, 1200)
    grey = pixels.mean(axis=2)
    assert grey.std() > 10 and (grey < 128).mean() > 0.005  # text and tables, not a blank page
    # the key images loaded: the slide's pink H&E and the heatmap appear as coloured pixels (text is grey)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 60).mean() > 0.01


def test_case_errors_name_the_file_and_the_fix(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    with pytest.raises(CaseError, match="case.json: not found"):
        load_case(folder)
    base = {"format": "breastgpt-case", "version": 1,
            "studies": [{"stage": "screening", "modality": "mammography",
                         "media": [{"kind": "image", "path": "missing.png"}]}]}
    (folder / "case.json").write_text(json.dumps(base))
    with pytest.raises(CaseError, match="does not exist"):
        load_case(folder)
    base["studies"][0]["media"][0]["path"] = "../outside.png"
    (tmp_path / "outside.png").write_bytes(b"x")
    (folder / "case.json").write_text(json.dumps(base))
    with pytest.raises(CaseError, match="leaves the case folder"):
        load_case(folder)
    base["studies"][0]["colour"] = "red"
    (folder / "case.json").write_text(json.dumps(base))
    with pytest.raises(CaseError, match="unknown keys"):
        load_case(folder)


def test_cli_case_run_and_from_source(synthetic_cases, tiny_checkpoint, tmp_path, monkeypatch):
    from breastgpt.case.cli import app

    result = CliRunner().invoke(app, ["run", str(synthetic_cases[0]), "--model", str(tiny_checkpoint), "--out",
                                      str(tmp_path / "out"), "--encoder", "tiny-random", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "[treatment]" in result.output and (tmp_path / "out" / "report.html").is_file()
    raw = generate(tmp_path / "raw", 3, ["pathway_cohort"], seed=5)["pathway_cohort"]
    monkeypatch.setenv("BREASTGPT_DEID_SECRET", "cli-case-secret-0123456789abcdef")
    made = CliRunner().invoke(app, ["from-source", "pathway_cohort", str(raw), "--out", str(tmp_path / "cases")])
    assert made.exit_code == 0, made.output
    folders = sorted((tmp_path / "cases").iterdir())
    assert len(folders) == 3 and all(len(load_case(f).studies) == 3 for f in folders)
    written = " ".join(str(p.relative_to(tmp_path)) for p in (tmp_path / "cases").rglob("*"))
    written += " ".join((f / "case.json").read_text() for f in folders)
    assert not [s for s in ("PWMRN", "PWACC", "patient_0", "screening_mammogram") if s in written]
    monkeypatch.delenv("BREASTGPT_DEID_SECRET", raising=False)
    empty = CliRunner().invoke(app, ["from-source", "pathway_cohort", str(tmp_path), "--out", str(tmp_path / "c")])
    assert empty.exit_code == 2 and "BREASTGPT_DEID_SECRET" in words(empty.output)
