"""Batch feature extraction over many slides, resumable and fault-isolating.

Per slide: open (io.wsi) → tissue mask → tile grid → tiles read in worker processes → encoder → feature
file (atomic) + QC thumbnail, with a JSON state file recording the request, the outcome and, for an
unreadable slide, the typed error's reason (quarantine). A rerun skips a slide only when its feature file
verifies against the same request; anything else is redone from scratch, which together with atomic
writes makes a SIGKILL at any point safe. Outputs:

    OUT/features/<slide_id>.h5     OUT/thumbnails/<slide_id>.png     OUT/state/<slide_id>.json
    OUT/run_summary.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breastgpt.io.errors import MedicalFileError
from breastgpt.io.wsi import open_slide, slide_fingerprint
from breastgpt.pathology import features as feature_io
from breastgpt.pathology.encoders import DEFAULT_ENCODER, TileEncoder, build_encoder
from breastgpt.pathology.overlay import qc_overlay, write_json, write_png
from breastgpt.pathology.tiling import SlideSource, TilingConfig, build_grid, describe_grid, iter_tile_batches
from breastgpt.pathology.tissue import TissueConfig, tissue_mask_for_slide

ProgressHook = Callable[[str, int, int], None]  # (slide_id, tiles done, tiles total)


@dataclass(frozen=True)
class ExtractConfig:
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
    mpp: float | None = None  # user-supplied level-0 µm/px, overrides the file
    tiling: TilingConfig = field(default_factory=TilingConfig)
    tissue: TissueConfig = field(default_factory=TissueConfig)
    workers: int = 1
    batch_size: int = 32
    device: str = "cpu"
    feature_dtype: str = "float32"
    thumbnail_max_side: int = 1024

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.workers < 0:
            raise ValueError("batch_size must be positive and workers ≥ 0")
        if self.feature_dtype not in ("float32", "float16"):
            raise ValueError("feature_dtype must be float32 or float16")


@dataclass
class SlideOutcome:
    slide: str
    slide_id: str
    status: str  # done | skipped | quarantined
    n_tiles: int = 0
    seconds: float = 0.0
    features: str | None = None
    error: dict[str, str] | None = None


def slide_ids_for(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique with a short path hash where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
            for s, p in zip(stems, paths, strict=True)]


def request_for(path: Path, config: ExtractConfig, encoder: TileEncoder) -> dict[str, Any]:
    fingerprint = slide_fingerprint(path)
    return {"encoder": encoder.name, "weights_sha256": encoder.weights_sha256 or "none", "dim": encoder.dim,
            "target_mpp": config.tiling.target_mpp, "tile_size": config.tiling.tile_size,
            "min_tissue_fraction": config.tiling.min_tissue_fraction, "segmentation": config.tissue.to_dict(),
            "slide_sha256": fingerprint["sha256"], "slide_hash_method": fingerprint["method"],
            "slide_size": fingerprint["size"], "mpp_override": config.mpp, "feature_dtype": config.feature_dtype,
            "slide_mpp_source": "user" if config.mpp is not None else "file"}


def extract_slides(paths: Sequence[str | Path], out_dir: str | Path, config: ExtractConfig = ExtractConfig(), *,
                   progress: ProgressHook | None = None, encoder: TileEncoder | None = None,
                   slide_ids: Sequence[str] | None = None, mpps: Sequence[float | None] | None = None,
                   keyed: bool = False) -> dict[str, Any]:
    """Extract every slide; returns (and writes) the run summary. Unreadable slides are quarantined.

    `slide_ids` name the feature files (default: the file stems, made unique); `mpps` override µm/px per slide
    (None: `config.mpp`). With `keyed`, the ids are keyed names (corpus slides) and stand in for the paths in
    every state file, summary and error record."""
    out = Path(out_dir)
    paths = [Path(p) for p in paths]
    ids = list(slide_ids) if slide_ids is not None else slide_ids_for(paths)
    per_slide = list(mpps) if mpps is not None else [config.mpp] * len(paths)
    encoder = encoder or build_encoder(config.encoder, weights=config.weights, device=config.device)
    started = time.time()
    outcomes = [extract_one(path, sid, out, dataclasses.replace(config, mpp=mpp if mpp is not None else config.mpp),
                            encoder, progress, label=sid if keyed else None)
                for path, sid, mpp in zip(paths, ids, per_slide, strict=True)]
    summary = {
        "encoder": encoder.identity, "config": _config_dict(config), "started": started,
        "seconds": round(time.time() - started, 3),
        "counts": {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "quarantined")},
        "slides": [dataclasses.asdict(o) for o in outcomes],
    }
    write_json(out / "run_summary.json", summary)
    return summary


def extract_one(path: Path, slide_id: str, out: Path, config: ExtractConfig, encoder: TileEncoder,
                progress: ProgressHook | None = None, *, label: str | None = None) -> SlideOutcome:
    """Extract one slide to OUT/features/<slide_id>.h5. With `label`, state files, the outcome and error records
    name the slide by `label` instead of its path (corpus slides: their file names are barcodes or case ids)."""
    state_path = out / "state" / f"{slide_id}.json"
    h5_path = out / "features" / f"{slide_id}.h5"
    shown = label or str(path)
    started = time.time()
    try:
        request = request_for(path, config, encoder)
    except OSError as exc:
        return _quarantine(shown, slide_id, state_path, _named({"path": str(path), "error": "unreadable",
                                                                "problem": str(exc), "hint": "check the path"},
                                                               path, label))
    if feature_io.verify_features(h5_path, request) is None:
        n = int(feature_io.read_attrs(h5_path)["n_tiles"])
        return SlideOutcome(shown, slide_id, "skipped", n, 0.0, str(h5_path))
    write_json(state_path, {"slide": shown, "status": "running", "request": request})
    try:
        n_tiles = _extract_to(path, slide_id, h5_path, out, config, encoder, request, progress)
    except MedicalFileError as exc:
        return _quarantine(shown, slide_id, state_path, _named(exc.as_record(), path, label), request)
    outcome = SlideOutcome(shown, slide_id, "done", n_tiles, round(time.time() - started, 3), str(h5_path))
    write_json(state_path, {"slide": shown, "status": "done", "request": request,
                            "outcome": dataclasses.asdict(outcome)})
    return outcome


def _named(record: dict[str, str], path: Path, label: str | None) -> dict[str, str]:
    """An error record with the slide's path, name and stem replaced by `label` (when given)."""
    if label is None:
        return record
    out = {}
    for key, text in record.items():
        for raw in sorted({str(path), path.name, path.stem}, key=len, reverse=True):
            text = str(text).replace(raw, label)
        out[key] = text
    return out


def _quarantine(shown: str, slide_id: str, state_path: Path, record: dict[str, str],
                request: dict[str, Any] | None = None) -> SlideOutcome:
    write_json(state_path, {"slide": shown, "status": "quarantined", "request": request, "error": record})
    return SlideOutcome(shown, slide_id, "quarantined", error=record)


def _extract_to(path: Path, slide_id: str, h5_path: Path, out: Path, config: ExtractConfig,
                encoder: TileEncoder, request: dict[str, Any], progress: ProgressHook | None) -> int:
    with open_slide(path, mpp=config.mpp) as reader:
        mask, _ = tissue_mask_for_slide(reader, config.tissue)
        grid = build_grid(reader, mask, config.tiling)
        thumbnail = reader.thumbnail(config.thumbnail_max_side)
        description = reader.describe()
    source = SlideSource(str(path), config.mpp)
    chunks: list[np.ndarray] = []
    done = 0
    for coords, pixels in iter_tile_batches(source, grid, batch_size=config.batch_size, workers=config.workers):
        chunks.append(encoder.encode(pixels))
        done += len(coords)
        if progress:
            progress(slide_id, done, len(grid.coords))
    feats = np.concatenate(chunks) if chunks else np.zeros((0, encoder.dim), dtype=np.float32)
    thumb_ds = (reader.dimensions[0] / thumbnail.shape[1], reader.dimensions[1] / thumbnail.shape[0])
    provenance = request | {
        "effective_mpp": list(grid.effective_mpp), "level": grid.level, "read_size": list(grid.read_size),
        "footprint_level0": list(grid.footprint), "tile_um": list(grid.tile_um),
        "magnification": round(10.0 / config.tiling.target_mpp, 3), "slide_mpp": list(grid.slide_mpp),
        "reader": description["reader"], "reader_version": description["reader_version"],
        "slide": description, "grid": describe_grid(grid), "thumbnail_downsample": list(thumb_ds),
        "tissue_mask_downsample": list(mask.downsample), "tissue_threshold": mask.threshold,
        "encoder_input_size": encoder.input_size, "encoder_mean": list(encoder.mean),
        "encoder_std": list(encoder.std)}
    feature_io.write_features(h5_path, grid.coords, feats, provenance, feature_dtype=config.feature_dtype,
                              thumbnail=thumbnail, tissue_mask=mask.mask)
    write_png(out / "thumbnails" / f"{slide_id}.png",
              qc_overlay(thumbnail, mask.mask, grid.coords, grid.footprint, thumb_ds))
    return len(grid.coords)


def _config_dict(config: ExtractConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))
