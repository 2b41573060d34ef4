"""Hand-made sources for corpus tests: a tiny adapter over a `cases.json` folder and a normaliser that writes
content-addressed PNGs. Module-level so that process and dask workers can import them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from breastgpt.corpus.records import atomic_write_bytes
from breastgpt.corpus.sources.base import NormalisedMedia, SourceProblem, SourceSample, checked_sample
from breastgpt.io.errors import CorruptFileError

SECRET = "test-secret-0123456789abcdef"

# One full label set per modality: every template of that modality applies to at least one of them.
FULL_LABELS: dict[str, dict[str, Any]] = {
    "mammography": {"laterality": "L", "view": "MLO", "birads": 4, "density": "C", "pathology": "malignant",
                    "abnormality": "mass", "mass_shape": "irregular", "mass_margin": "spiculated",
                    "calc_type": "fine_pleomorphic", "calc_distribution": "grouped", "masking_level": 6,
                    "tissue": "dense_glandular", "malignant": True,
                    "boxes": [{"box": [10, 20, 30, 40], "label": "mass"}]},
    "ultrasound": {"us_shape": "irregular", "us_margin": "not_circumscribed", "us_echo": "hypoechoic",
                   "us_boundary": "echogenic_halo", "us_calcification": True, "us_blood_flow": "internal",
                   "birads": 5, "pathology": "malignant", "malignant": True,
                   "boxes": [{"box": [8, 8, 40, 32], "label": "lesion"}]},
    "ct": {"ct_abnormalities": {"lung_nodule": True, "emphysema": False, "pleural_effusion": True,
                                "lymphadenopathy": False, "cardiomegaly": False, "atelectasis": True,
                                "consolidation": False, "lung_opacity": True,
                                "coronary_artery_wall_calcification": False, "pericardial_effusion": False,
                                "hiatal_hernia": False, "bronchiectasis": False, "arterial_wall_calcification": True,
                                "medical_material": False, "pulmonary_fibrotic_sequela": False,
                                "mosaic_attenuation_pattern": False, "peribronchial_thickening": False,
                                "interlobular_septal_thickening": False},
           "boxes": [{"box": [4, 4, 20, 20], "label": "nodule"}]},
    "mri": {"lesion_type": "mass", "enhancement_curve": "washout", "birads": 5, "pathology": "malignant",
            "malignant": True, "laterality": "R", "molecular_subtype": "her2_enriched", "er": False, "pr": False,
            "her2": True, "ki67_high": True, "tumour_stage": "II", "node_status": "n1_2",
            "boxes": [{"box": [16, 16, 48, 40], "label": "tumour"}]},
    "pathology": {"histologic_type": "lobular", "er": True, "pr": True, "her2": False, "ki67_high": False,
                  "molecular_subtype": "luminal_a", "node_status": "n0", "tumour_stage": "I"},
}


def write_png(path: Path, array: np.ndarray, fmt: str = "PNG", **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **kwargs)
    return path


def random_image(seed: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A smooth random image (blurred noise) so perceptual hashes are meaningful."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC))


def make_source(root: Path, source: str, cases: list[dict[str, Any]]) -> Path:
    """Write a source folder: one PNG per case plus cases.json (case: id, patient, modality, labels, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, case in enumerate(cases):
        image = root / f"{case['id']}.png"
        if "bytes" in case:
            image.write_bytes(case["bytes"])
        else:
            default_seed = int(hashlib.sha256(f"{source}/{case['id']}".encode()).hexdigest()[:8], 16)
            write_png(image, random_image(case.get("seed", default_seed)))
        rows.append({k: v for k, v in case.items() if k not in ("bytes", "seed")} | {"file": image.name})
    (root / "cases.json").write_text(json.dumps(rows, indent=1))
    return root


class FolderAdapter:
    """Reads cases.json written by make_source (name set per instance)."""

    modality = "mammography"

    def __init__(self, name: str) -> None:
        self.name = name

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        for row in json.loads((root / "cases.json").read_text()):
            if row.get("bad_row"):
                yield SourceProblem(self.name, str(root / "cases.json"), f"row {row['id']}: {row['bad_row']}")
                continue
            yield checked_sample(
                self.name, root / row["file"], sample_id=row["id"], patient_id=row["patient"],
                study_id=row.get("study", row["id"]), modality=row.get("modality", "mammography"),
                kind=row.get("kind", "image"), media=[root / row["file"]], labels=row.get("labels", {}),
                report=row.get("report"), dataset_split=row.get("dataset_split"))


def png_normaliser(sample: SourceSample, out_dir: Path, *, limits: Any = None) -> NormalisedMedia:
    """Decode the input PNG, write a grey PNG under media/ by content hash, map boxes to the 0-1000 grid."""
    if os.environ.get("CORPUS_TEST_DELAY"):
        time.sleep(float(os.environ["CORPUS_TEST_DELAY"]))
    src = Path(sample.media[0])
    try:
        with Image.open(src) as im:
            grey = np.asarray(im.convert("L"))
    except Exception as exc:
        raise CorruptFileError(src, f"not a decodable image ({type(exc).__name__})", "re-download the file")
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    rel = f"media/{digest[:2]}/{digest}.png"
    if not (Path(out_dir) / rel).is_file():
        atomic_write_bytes(Path(out_dir) / rel, data)
    h, w = grey.shape
    boxes = [{"box": [round(b["box"][0] * 1000 / w), round(b["box"][1] * 1000 / h), round(b["box"][2] * 1000 / w),
                      round(b["box"][3] * 1000 / h)], "label": b["label"]} for b in sample.labels.get("boxes", [])]
    return NormalisedMedia(kind=sample.kind, paths=[rel], sha256s=[digest], width=w, height=h, boxes_norm1000=boxes)


def adapters_for(*names: str) -> dict[str, FolderAdapter]:
    return {n: FolderAdapter(n) for n in names}


def discovered(name: str, root: Path) -> list[SourceSample | SourceProblem]:
    """What adapter `name` yields under `root`, each sample with its ROI masks decoded into boxes as the build's
    item workers decode them (`resolve_boxes`)."""
    from breastgpt.corpus.sources.base import get_adapter
    from breastgpt.corpus.sources.media import resolve_boxes

    return [item if isinstance(item, SourceProblem) else resolve_boxes(item)
            for item in get_adapter(name).discover(root)]
