"""Every adapter on its synthetic fixture: exact labels, boxes, splits and image geometry; no planted identifier
reaches a sample id, study id, label or meta."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from breastgpt.corpus.sources import ADAPTERS, SourceProblem
from tests.corpus.fixtures import discovered
from breastgpt.synth.cohort import GENERATORS, generate
from breastgpt.synth.writers import PLANTED_IDENTIFIERS, PLANTED_PATIENT_ID_PREFIX

SOURCES = sorted(GENERATORS)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("cohort")
    return out, generate(out, patients=4, seed=3, workers=2)


def _truth(out: Path, name: str) -> dict[str, dict]:
    return {t["sample_id"]: t for t in json.loads((out / ".truth" / f"{name}.json").read_text())}


def _geometry(sample) -> tuple[int, int]:
    path = sample.media[0]
    if sample.kind == "volume":
        from breastgpt.io.volume import read_volume

        z, y, x = read_volume(path).shape
        return x, y
    if sample.kind == "slide":
        from breastgpt.io.wsi import open_slide

        with open_slide(path, mpp=0.5 if path.suffix == ".jpg" else None) as slide:
            return slide.dimensions
    from breastgpt.corpus.sources.media import read_pixels

    pixels = read_pixels(path)
    return pixels.shape[1], pixels.shape[0]


def test_every_adapter_has_a_generator():
    assert sorted(ADAPTERS) == sorted(set(SOURCES) | {"institutional"})


@pytest.mark.parametrize("name", SOURCES)
def test_adapter_recovers_synthetic_truth(cohort, name):
    out, roots = cohort
    truth = _truth(out, name)
    samples = discovered(name, roots[name])
    problems = [s for s in samples if isinstance(s, SourceProblem)]
    assert problems == []
    assert sorted(s.sample_id for s in samples) == sorted(truth)
    for sample in samples:
        expected = truth[sample.sample_id]
        assert sample.labels == expected["labels"], sample.sample_id
        assert sample.dataset_split == expected["split"]
        assert sample.source == name
        assert all(p.exists() for p in sample.media + sample.masks)
        assert _geometry(sample) == (expected["width"], expected["height"])


@pytest.mark.parametrize("name", SOURCES)
def test_no_planted_identifier_leaks(cohort, name):
    _, roots = cohort
    planted = list(PLANTED_IDENTIFIERS.values()) + [PLANTED_PATIENT_ID_PREFIX, "FAKEPHI"]
    for sample in discovered(name, roots[name]):
        exposed = json.dumps([sample.sample_id, sample.study_id, sample.labels, sample.meta, sample.report],
                             default=str)
        assert not [p for p in planted if p.lower() in exposed.lower()], sample.sample_id


def test_synthetic_dicom_carries_planted_identifiers(cohort):
    from breastgpt.io.dicom import read_dataset

    _, roots = cohort
    path = next((roots["vindr_mammo"] / "images").rglob("*.dicom"))
    header = read_dataset(path, header_only=True)
    assert str(header.PatientName) == PLANTED_IDENTIFIERS["PatientName"]
    assert str(header.ReferencedPatientSequence[0].PatientName) == PLANTED_IDENTIFIERS["nested_PatientName"]
    assert header[0x0011, 0x1001].value == PLANTED_IDENTIFIERS["private"]


def test_pixels_carry_the_box(cohort):
    """The labelled box is where the drawn finding is: brighter inside than in the surrounding breast."""
    from breastgpt.corpus.sources.media import read_pixels

    _, roots = cohort
    for sample in discovered("cbis_ddsm", roots["cbis_ddsm"]):
        x1, y1, x2, y2 = sample.labels["boxes"][0]["box"]
        pixels = read_pixels(sample.media[0]).astype(float)
        ring = pixels[max(0, y1 - 20):y2 + 20, max(0, x1 - 20):x2 + 20]
        assert pixels[y1:y2, x1:x2].max() > np.median(ring) + 500
