"""Dataset-specific conventions on hand-written fixtures: coordinate origins, tuple orders, name collisions,
mask variants, bad rows — and the real BUSI and TCGA-BRCA files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastgpt.corpus.sources import SourceProblem
from tests.corpus.fixtures import discovered
from breastgpt.corpus.sources.embed import parse_roi_coords
from breastgpt.corpus.sources.mias import mias_box
from breastgpt.corpus.sources.tables import parse_birads, parse_density
from breastgpt.corpus.sources.vindr_mammo import categories
from breastgpt.synth.writers import write_pgm


def test_mias_origin_is_bottom_left(tmp_path):
    write_pgm(tmp_path / "mdb001.pgm", np.zeros((1024, 1024), np.uint8))
    write_pgm(tmp_path / "mdb002.pgm", np.zeros((1024, 1024), np.uint8))
    (tmp_path / "Info.txt").write_text("mdb001 G CIRC B 535 425 197\nmdb002 D NORM\nmdb003 X BAD\n")
    samples = discovered("mias", tmp_path)
    problem = [s for s in samples if isinstance(s, SourceProblem)]
    assert len(problem) == 1 and "Info.txt:3" in problem[0].path
    first = next(s for s in samples if getattr(s, "sample_id", "") == "mdb001")
    assert first.labels["boxes"] == [{"box": [338, 402, 732, 796], "label": "mass"}]
    assert first.labels["laterality"] == "R" and first.labels["mass_margin"] == "circumscribed"
    assert first.labels["tissue"] == "fatty_glandular" and first.patient_id == "1"
    second = next(s for s in samples if getattr(s, "sample_id", "") == "mdb002")
    assert second.labels["pathology"] == "normal" and second.labels["laterality"] == "L" and second.patient_id == "1"
    assert mias_box(10, 1000, 30, 1024, 1024) == [0, 0, 40, 54]


def test_embed_roi_coords_are_row_first():
    assert parse_roi_coords("((100, 200, 150, 260),)") == [[200, 100, 260, 150]]
    assert parse_roi_coords("((10, 20, 30, 40), (50, 60, 70, 80))") == [[20, 10, 40, 30], [60, 50, 80, 70]]
    assert parse_roi_coords("()") == []
    with pytest.raises(ValueError):
        parse_roi_coords("((1, 2, 3),)")


def test_embed_box_outside_image_is_a_problem(tmp_path):
    from breastgpt.synth.cases import SynthConfig
    from breastgpt.synth.mammo_dicom import gen_embed

    gen_embed(tmp_path, SynthConfig(patients=1, seed=0))
    meta = tmp_path / "tables" / "EMBED_OpenData_metadata.csv"
    import pandas as pd

    table = pd.read_csv(meta, dtype=str)
    table.loc[0, "ROI_coords"] = "((10, 10, 5000, 20),)"
    table.to_csv(meta, index=False)
    samples = discovered("embed", tmp_path)
    assert len(samples) == 1 and isinstance(samples[0], SourceProblem)
    assert "outside" in samples[0].reason


def test_kau_bcmd_names_never_collide(tmp_path):
    for folder in ("Birad1", "Birad4"):
        (tmp_path / folder / "7").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / folder / "7" / "RCC.jpg")
    samples = discovered("kau_bcmd", tmp_path)
    assert sorted(s.sample_id for s in samples) == ["Birad1__7__RCC", "Birad4__7__RCC"]
    assert {s.sample_id: s.labels["birads"] for s in samples} == {"Birad1__7__RCC": 1, "Birad4__7__RCC": 4}
    assert all(s.labels["laterality"] == "R" and s.labels["view"] == "CC" for s in samples)


def test_busi_second_mask_gives_second_box(tmp_path):
    folder = tmp_path / "benign"
    folder.mkdir()
    for sub in ("malignant", "normal"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(folder / "benign (1).png")
    for suffix, (y, x) in (("_mask", (2, 3)), ("_mask_1", (10, 20))):
        mask = np.zeros((20, 30), np.uint8)
        mask[y:y + 4, x:x + 5] = 255
        Image.fromarray(mask).save(folder / f"benign (1){suffix}.png")
    (sample,) = discovered("busi", tmp_path)
    assert sample.sample_id == "benign-1"
    assert sample.labels["boxes"] == [{"box": [3, 2, 8, 6], "label": "lesion"}, {"box": [20, 10, 25, 14], "label": "lesion"}]


def test_real_busi_files(realdata):
    root = realdata / "ultrasound" / "busi"
    samples = discovered("busi", root)
    assert len(samples) == 9 and not [s for s in samples if isinstance(s, SourceProblem)]
    by_label = {}
    for sample in samples:
        by_label.setdefault(sample.labels["pathology"], []).append(sample)
        mask = np.asarray(Image.open(root / f"{sample.sample_id}_mask.png").convert("L")) > 0
        ys, xs = np.nonzero(mask)
        expected = [] if len(xs) == 0 else [[int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]]
        assert [b["box"] for b in sample.labels["boxes"]] == expected
    assert {k: len(v) for k, v in by_label.items()} == {"benign": 3, "malignant": 3, "normal": 3}
    assert all(s.labels["boxes"] == [] for s in by_label["normal"])
    benign_1 = next(s for s in samples if s.sample_id == "benign_1")
    assert benign_1.labels["boxes"] == [{"box": [215, 107, 266, 133], "label": "lesion"}]


def test_real_tcga_clinical_table(realdata):
    from collections import Counter

    from breastgpt.corpus.sources.tcga_brca import read_clinical

    clinical = read_clinical(realdata / "clinical")
    assert len(clinical) == 1084
    assert Counter(v.get("molecular_subtype") for v in clinical.values()) == Counter(
        {"luminal_a": 499, "luminal_b": 197, "basal": 171, None: 103, "her2_enriched": 78, "normal_like": 36})
    assert Counter(v.get("tumour_stage") for v in clinical.values()) == Counter(
        {"II": 616, "III": 249, "I": 181, None: 19, "IV": 19})
    assert clinical["TCGA-3C-AAAU"] == {"molecular_subtype": "luminal_a", "histologic_type": "lobular",
                                        "pathology": "malignant", "malignant": True}
    assert clinical["TCGA-3C-AALI"]["molecular_subtype"] == "her2_enriched"
    assert clinical["TCGA-3C-AALI"]["tumour_stage"] == "II"


def test_code_parsers():
    assert [parse_birads(v) for v in ("4a", "BI-RADS 5", "3.0", "", "BIRADS 0")] == [4, 5, 3, None, 0]
    assert [parse_density(v) for v in ("DENSITY C", "2", "4.0", "")] == ["C", "B", "D", None]
    assert categories("['Mass', 'Suspicious Calcification']") == ["Mass", "Suspicious Calcification"]
    with pytest.raises(ValueError):
        parse_birads("7")


def test_bad_rows_become_problems(tmp_path):
    from breastgpt.synth.cases import SynthConfig
    from breastgpt.synth.mammo_dicom import gen_vindr_mammo

    gen_vindr_mammo(tmp_path, SynthConfig(patients=2, seed=0))
    csv = tmp_path / "breast-level_annotations.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace("BI-RADS", "BI-RADS 9 x", 1)
    csv.write_text("\n".join(lines) + "\n")
    next(iter((tmp_path / "images").rglob("*.dicom")))
    samples = discovered("vindr_mammo", tmp_path)
    assert len(samples) == 2
    assert sum(isinstance(s, SourceProblem) for s in samples) == 1
    assert discovered("vindr_mammo", tmp_path / "missing")[0].reason.endswith(
        "point the adapter at the dataset's download root")


def test_institutional_manifest(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "T1.nii.gz").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text(
        "patient,study,modality,kind,files,birads,malignant,split\n"
        "MRN123,ACC999,mri,volume,p1/T1.nii.gz,4,yes,test\n"
        "MRN124,ACC998,mri,volume,p1/missing.nii.gz,2,no,train\n")
    good, bad = discovered("institutional", tmp_path)
    assert good.labels == {"birads": 4, "malignant": True} and good.dataset_split == "test"
    assert "MRN" not in good.sample_id and "ACC" not in good.sample_id and len(good.sample_id) == 16
    assert isinstance(bad, SourceProblem) and "missing" in bad.reason
    (tmp_path / "manifest.csv").write_text("patient,study,modality,kind,files,colour\nA,B,mri,volume,p1/T1.nii.gz,x\n")
    (problem,) = discovered("institutional", tmp_path)
    assert "unknown columns ['colour']" in problem.reason


def test_cbis_missing_series_is_a_problem(tmp_path):
    from breastgpt.synth.cases import SynthConfig
    from breastgpt.synth.mammo_dicom import gen_cbis_ddsm

    gen_cbis_ddsm(tmp_path, SynthConfig(patients=2, seed=0))
    import shutil

    victim = sorted(p for p in (tmp_path / "CBIS-DDSM").iterdir() if not p.name.endswith("_1"))[0]
    shutil.rmtree(victim)
    samples = discovered("cbis_ddsm", tmp_path)
    problems = [s for s in samples if isinstance(s, SourceProblem)]
    assert len(samples) == 2 and len(problems) == 1 and "not found in the download" in problems[0].reason
