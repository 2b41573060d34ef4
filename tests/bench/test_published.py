"""Import of the published BreastStage-Bench file (ms-swift layout), written by hand as a user's download looks:
rows without patients, CT/US/MRI questions that mention a mammogram, slides in three placements, stray keys,
ms-swift `objects` grounding. Exact counts per modality, stage, kind and cluster level."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from breastgpt.bench.aggregate import score_run
from breastgpt.bench.clusters import cluster_items
from breastgpt.bench.items import BenchDataError, item_from_record, write_jsonl_atomic
from breastgpt.bench.published import import_published
from breastgpt.bench.report import write_report
from breastgpt.bench.runner import load_bench
from breastgpt.bench.scoring import ScoreConfig
from tests.io.dicom_factory import write_grey_dicom

SCR = {"role": "system", "content": "You are an expert in breast cancer screening."}
DX = {"role": "system", "content": "You are an expert in breast cancer diagnosis."}
TX = {"role": "system", "content": "You are an expert in breast cancer treatment planning."}


def _turns(*system: dict, user: str, answer: str) -> list[dict[str, str]]:
    return [*system, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


PUBLISHED = [
    # 0-1: one patient, two mammography questions (PNG; the text names the modality)
    {"messages": _turns(SCR, user="<image>What is the breast density of this mammogram?\nA. A\nB. B\nC. C\nD. D",
                        answer="C"), "images": ["mammo/0001.png"], "patient_id": "P001"},
    {"messages": _turns(DX, user="<image>Is this calcification in the mammogram benign or malignant?\nA. Benign\n"
                                 "B. Malignant", answer="B. Malignant"),
     "images": ["mammo/0002.png"], "patient_id": "P001", "rejected_response": "A"},
    # 2-3: no patient; DICOM MG of one study
    {"messages": _turns(DX, user="<image>Locate the mass.", answer="[120, 200, 340, 410]"),
     "images": ["mammo/0003.dcm"]},
    {"messages": _turns(DX, user="<image>Describe the findings.",
                        answer="Irregular spiculated mass in the upper outer quadrant."), "images": ["mammo/0004.dcm"]},
    # 4: ultrasound DICOM whose question mentions the prior mammogram
    {"messages": _turns(SCR, user="<image>In this breast ultrasound, compared with the prior mammogram, what is the "
                                  "BI-RADS category?\nA. 3\nB. 4\nC. 5", answer="B"), "images": ["us/b1.dcm"]},
    # 5: ultrasound PNG with explicit published fields
    {"messages": _turns(user="<image>This mammogram-negative patient has an ultrasound; is the lesion solid?\n"
                             "A. Yes\nB. No", answer="A"), "images": ["us/b2.png"], "modality": "US",
     "stage": "diagnosis"},
    # 6: ultrasound PNG, no field, text names two modalities: undecided, not the first word
    {"messages": _turns(SCR, user="<image>Breast ultrasound after an inconclusive mammogram: describe the lesion.",
                        answer="Oval hypoechoic mass."), "images": ["us/b3.png"]},
    # 7: chest CT volume, question mentions a mammogram
    {"messages": _turns(SCR, user="<video>Chest CT for a patient with a suspicious mammogram: is there a pulmonary "
                                  "nodule?\nA. Yes\nB. No", answer="A. Yes"), "videos": ["ct/vol1.nii.gz"],
     "patient_id": "P002"},
    # 8: breast MRI volume for treatment planning, mentions the mammogram
    {"messages": _turns(TX, user="<video>Breast MRI before neoadjuvant chemotherapy; the mammogram showed a mass. "
                                 "Describe the tumour.", answer="A 3 cm enhancing mass."),
     "videos": ["mri/case3.nii.gz"], "patient_id": "P003"},
    # 9: MRI volume not downloaded: the file type decides
    {"messages": _turns(user="<video>Breast MRI: what is the BI-RADS category?\nA. 4\nB. 5", answer="A"),
     "videos": ["mri/missing.nii.gz"]},
    # 10-12: slides: in `slides` with <slide>, in `images` with <image>, in `images` with no placeholder
    {"messages": _turns(user="<slide>What is the histologic type?\nA. Ductal\nB. Lobular", answer="A"),
     "slides": ["wsi/s1.h5"], "patient_id": "TCGA-A1-0001"},
    {"messages": _turns(user="<image>Is the tumour ER positive?", answer="Yes."), "images": ["wsi/s2.h5"],
     "patient_id": "TCGA-A1-0001", "question_type": "open", "meta": {"origin": "bcnb"}},
    {"messages": _turns(user="Describe this whole-slide image.", answer="Invasive ductal carcinoma, grade 2."),
     "images": ["wsi/s3.svs"]},
    # 13: a field that contradicts the media
    {"messages": _turns(user="<image>Grade this tumour.", answer="Grade 2."), "images": ["wsi/s4.h5"],
     "modality": "mammography"},
    # 14: ms-swift grounding on the image of row 5 (no patient: clustered with row 5 by the shared image)
    {"messages": _turns(user="<image>Where is the <ref-object>?", answer="<bbox>"), "images": ["us/b2.png"],
     "modality": "ultrasound", "objects": {"ref": ["lesion"], "bbox": [[100, 150, 300, 420]],
                                           "bbox_type": "norm1000"}},
]


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def _media(root: Path) -> None:
    for n, name in enumerate(["mammo/0001.png", "mammo/0002.png", "us/b2.png", "us/b3.png"]):
        _png(root / name, 40 * n + 10)
    for name, modality, study in (("mammo/0003.dcm", "MG", "1.2.826.0.1.1"), ("mammo/0004.dcm", "MG", "1.2.826.0.1.1"),
                                  ("us/b1.dcm", "US", "1.2.826.0.2.1")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_grey_dicom(root / name, np.arange(64).reshape(8, 8) + len(name), modality=modality,
                         StudyInstanceUID=study)
    for name in ("ct/vol1.nii.gz", "mri/case3.nii.gz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16) + len(name), np.eye(4)), root / name)
    for name in ("wsi/s1.h5", "wsi/s2.h5"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(root / name, "w") as fh:
            fh["features"] = np.zeros((2, 4), np.float32) + len(name)


@pytest.fixture()
def published(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "media"
    _media(root)
    path = tmp_path / "BreastStage-Bench.json"
    path.write_text(json.dumps(PUBLISHED, indent=1))
    return path, root


def test_fields_come_from_published_fields_and_media(published):
    path, root = published
    imported = import_published(path, split="bench", media_root=root)
    recs = imported.records
    assert [r.modality for r in recs] == [
        "mammography", "mammography", "mammography", "mammography", "ultrasound", "ultrasound", "unknown", "ct",
        "mri", "mri", "pathology", "pathology", "pathology", "unknown", "ultrasound"]
    assert [r.stage for r in recs] == [
        "screening", "diagnosis", "diagnosis", "diagnosis", "screening", "diagnosis", "screening", "screening",
        "treatment", "unknown", "treatment", "treatment", "treatment", "unknown", "unknown"]
    s = imported.summary
    assert s["rows"] == 15
    assert s["modality"] == {"ct": 1, "mammography": 4, "mri": 2, "pathology": 3, "ultrasound": 3, "unknown": 2}
    assert s["stage"] == {"diagnosis": 4, "screening": 4, "treatment": 4, "unknown": 3}
    assert s["modality_from"] == {"conflict": 1, "field": 2, "media": 6, "media+text": 3, "text": 2, "undecided": 1}
    assert s["stage_from"] == {"field": 1, "modality": 4, "modality+text": 6, "text": 1, "undecided": 3}
    assert s["kind"] == {"image": 8, "slide": 4, "volume": 3}
    assert s["task_family"] == {"closed_vqa": 7, "grounding": 2, "open_vqa": 6}
    assert s["ignored_keys"] == {"meta": 1, "question_type": 1, "rejected_response": 1}
    assert s["conflicts"] == {"modality": 1}
    assert s["conflicts_listed"] == [{"row": 13, "field": "modality",
                                      "detail": "field 'mammography' vs media allowing ['pathology']"}]
    assert s["study_key"] == {"dicom": 3, "none": 12}
    assert s["media_files"] == {"hashed": 12, "not found": 3}


def test_slides_import_with_their_own_placeholder(published):
    path, root = published
    recs = import_published(path, split="bench", media_root=root).records
    for n in (10, 11, 12, 13):
        assert recs[n].kind == "slide" and recs[n].slides == [PUBLISHED[n].get("slides", PUBLISHED[n].get("images"))[0]]
        assert recs[n].images == [] and recs[n].message("user").count("<slide>") == 1
        assert "<image>" not in recs[n].message("user")
    assert recs[11].message("user") == "<slide>Is the tumour ER positive?"
    assert recs[12].message("user") == "<slide>Describe this whole-slide image."
    assert recs[7].kind == "volume" and recs[7].videos == ["ct/vol1.nii.gz"]
    assert recs[11].media[0].sha256 == hashlib.sha256((root / "wsi/s2.h5").read_bytes()).hexdigest()
    assert recs[12].media[0].sha256 == ""  # not downloaded: no hash is invented


def test_labels_patients_and_studies(published):
    path, root = published
    recs = import_published(path, split="bench", media_root=root).records
    assert recs[0].label == {"options": ["A", "B", "C", "D"], "answer_index": 2}
    assert recs[2].task_family == "grounding" and recs[2].label["box"] == [120, 200, 340, 410]
    assert recs[14].task_family == "grounding" and recs[14].label["box"] == [100, 150, 300, 420]
    assert recs[0].patient_key == recs[1].patient_key and recs[0].patient_key.startswith("pub-patient-")
    assert "P001" not in recs[0].patient_key and recs[7].patient_key != recs[0].patient_key
    assert recs[2].study_key == recs[3].study_key != recs[4].study_key
    assert recs[2].study_key.startswith("dicom-study-") and "1.2.826" not in recs[2].study_key
    assert recs[2].patient_key == "unknown" and recs[5].study_key == "unknown"
    assert all(r.answer_provenance.kind == "unknown" for r in recs)
    again = import_published(path, split="bench", media_root=root).records
    assert [r.id for r in again] == [r.id for r in recs] and len({r.id for r in recs}) == 15


def test_clusters_fall_back_to_study_then_shared_image(published):
    path, root = published
    items = [item_from_record(r.to_dict()) for r in import_published(path, split="bench", media_root=root).records]
    clustering = cluster_items(items)
    assert clustering.summary() == {"unit": "clusters", "n_items": 15, "n_clusters": 11, "by_level": {
        "patient": {"items": 6, "clusters": 4}, "study": {"items": 3, "clusters": 2},
        "image": {"items": 6, "clusters": 5}}}
    assert clustering.keys[5] == clustering.keys[14]  # one ultrasound image, two questions
    assert clustering.keys[2] == clustering.keys[3] and clustering.keys[10] == clustering.keys[11]
    assert len({clustering.keys[n] for n in (6, 9, 12, 13)}) == 4
    assert clustering.warning() == (
        "clustering: 9 of 15 items have no patient key and are clustered 3 by study (2 clusters), 6 by shared image "
        "(5 clusters); intervals treat these clusters as independent, so they are too narrow if one patient has "
        "several studies or images")


def test_the_report_says_which_clustering_was_used(published, tmp_path):
    path, root = published
    bench = load_bench(path, root)
    assert bench.format == "published" and bench.import_summary["modality"]["ultrasound"] == 3
    items = list(bench.items.values())
    write_jsonl_atomic(tmp_path / "run" / "responses.jsonl",
                       [{"item_id": it.id, "response": "A", "model": "m"} for it in items])
    scores, files = score_run(items, tmp_path / "run", ScoreConfig(n_resamples=200, embeddings=False))
    assert scores.clustering["n_clusters"] == 11 and scores.clustering["unit"] == "clusters"
    assert scores.warnings[0].startswith("clustering: 9 of 15 items have no patient key")
    overall = next(g for g in scores.groups if g["grouping"] == "overall" and g["metric"] == "accuracy")
    # the 7 closed items: P001 (2 items), P002, TCGA, study of row 4, image of row 5, path of row 9
    assert overall["n_clusters"] == 6 and "only 6 clusters (< 30)" in overall["warning"]
    assert overall["low"] < overall["high"]  # not the one-cluster, zero-width interval of an all-UNKNOWN import
    write_report(scores, tmp_path / "out", [path, *files])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Clusters resampled: 11 from 15 items" in html and "6 items by image (5 clusters)" in html


def test_modality_counts_are_not_taken_from_the_first_word(published):
    path, root = published
    recs = import_published(path, split="bench", media_root=root).records
    mentions = [n for n, row in enumerate(PUBLISHED) if "mammogram" in row["messages"][-2]["content"]]
    assert mentions == [0, 1, 4, 5, 6, 7, 8]
    assert Counter(recs[n].modality for n in mentions) == {"mammography": 2, "ultrasound": 2, "unknown": 1, "ct": 1,
                                                           "mri": 1}


def test_bad_rows_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([PUBLISHED[0], {"images": []}]))
    with pytest.raises(BenchDataError, match=r"bad.json: row 1 cannot be imported: no messages"):
        import_published(bad, split="bench")
    real_boxes = {**PUBLISHED[14], "objects": {"ref": ["x"], "bbox": [[10, 10, 50, 50]], "bbox_type": "real"}}
    bad.write_text(json.dumps([real_boxes]))
    with pytest.raises(BenchDataError, match="bbox_type 'real'"):
        import_published(bad, split="bench")
    bad.write_text("{not json")
    with pytest.raises(BenchDataError, match="not JSON"):
        import_published(bad, split="bench")
    bad.write_text("\n".join(json.dumps(r) for r in PUBLISHED[:2]))  # JSONL works too
    assert len(import_published(bad, split="bench").records) == 2
