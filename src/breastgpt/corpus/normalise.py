"""Per-modality normalisation of a `SourceSample`'s media into content-addressed corpus files.

The pixel work is `breastgpt.preprocessing` (the same functions `ask` and `serve` apply to raw files); this module
stores its results and carries its geometry to masks and boxes:
- Mammography: pixels through the DICOM VOI LUT / window with MONOCHROME1 inverted (`breastgpt.io`), cropped to
  the breast, everything not connected to the breast zeroed (burned-in text, markers), chest wall moved to one
  side (flip), long side limited; the same crop/flip/scale applies to masks and boxes.
- Ultrasound: only the imaging region (largest non-dark component) is kept.
- Volumes: resampled to in-plane ≤ limit and even depth ≤ limit, windowed (CT preset in HU, MRI percentiles);
  label maps nearest-neighbour only.
- Slides: not decoded; fingerprinted (the build names the feature file `breastgpt slides extract` writes).
Boxes come back on the 0–1000 grid of the normalised image ([x1, y1, x2, y2], volumes add z1, z2).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from breastgpt.artifacts import atomic_write_bytes
from breastgpt.corpus.sources.base import NormalisedMedia, SourceSample
from breastgpt.preprocessing import Preprocessing, prepare_image, prepare_volume, read_image_pixels

__all__ = ["NormalisedMedia", "Preprocessing", "normalise_media"]


def normalise_media(sample: SourceSample, out_dir: Path, *, limits: Preprocessing = Preprocessing()) -> NormalisedMedia:
    """Write the sample's normalised media under `out_dir/media/` and describe it; `limits` are the corpus's
    preprocessing settings (`breastgpt.preprocessing`, the functions inference applies too). Raises
    MedicalFileError."""
    if sample.kind == "slide":
        return _slide(sample)
    if sample.kind == "volume":
        return _volume(sample, Path(out_dir), limits)
    return _image(sample, Path(out_dir), limits)


# ---- 2-D images -------------------------------------------------------------------------------------------

def _read_mask(path: Path) -> np.ndarray:
    from breastgpt.corpus.sources.media import read_pixels

    mask = read_pixels(path)
    return (mask.max(axis=2) if mask.ndim == 3 else mask) > 0


def _image(sample: SourceSample, out_dir: Path, settings: Preprocessing) -> NormalisedMedia:
    prepared = prepare_image(read_image_pixels(sample.media[0]), sample.modality, settings)
    x1, y1, x2, y2 = prepared.crop
    w, h = x2 - x1, y2 - y1
    masks = [_read_mask(m)[y1:y2, x1:x2] for m in sample.masks]
    boxes = [_shift_clip(dict(b), x1, y1, w, h) for b in sample.labels.get("boxes", [])]
    if prepared.flipped:
        masks = [m[:, ::-1] for m in masks]
        boxes = [_flip_box(b, w) for b in boxes]
    size = prepared.size
    mask_bytes = [_png(Image.fromarray(np.ascontiguousarray(m).astype(np.uint8) * 255).resize(size, Image.NEAREST))
                  for m in masks]
    path, digest = _store(out_dir, _png(Image.fromarray(np.ascontiguousarray(prepared.pixels))), ".png")
    stored_masks = [_store(out_dir, b, ".png")[0] for b in mask_bytes]
    return NormalisedMedia(kind="image", paths=[path], sha256s=[digest], width=size[0], height=size[1],
                           boxes_norm1000=[_norm1000(b, w, h) for b in boxes], mask_paths=stored_masks,
                           meta={"crop": [x1, y1, x2, y2], "flipped": prepared.flipped, "scale": prepared.scale,
                                 "masked_pixels": prepared.masked_pixels})


def _shift_clip(entry: dict, x0: int, y0: int, w: int, h: int) -> dict:
    x1, y1, x2, y2 = entry["box"][:4]
    box = [min(max(x1 - x0, 0), w), min(max(y1 - y0, 0), h), min(max(x2 - x0, 0), w), min(max(y2 - y0, 0), h)]
    return dict(entry, box=box)


def _flip_box(entry: dict, w: int) -> dict:
    x1, y1, x2, y2 = entry["box"]
    return dict(entry, box=[w - x2, y1, w - x1, y2])


def _norm1000(entry: dict, w: int, h: int, depth: int | None = None) -> dict:
    x1, y1, x2, y2 = entry["box"][:4]
    box = [round(x1 / w * 1000), round(y1 / h * 1000), round(x2 / w * 1000), round(y2 / h * 1000)]
    if depth is not None:
        box += [round(entry["box"][4] / depth * 1000), round(entry["box"][5] / depth * 1000)]
    return {"box": box, "label": entry.get("label", "")}


# ---- volumes ----------------------------------------------------------------------------------------------

def _volume(sample: SourceSample, out_dir: Path, settings: Preprocessing) -> NormalisedMedia:
    from breastgpt.io.volume import read_volume
    from breastgpt.io.windowing import resample_volume, target_shape

    paths, digests, shape = [], [], None
    for media in sample.media:
        volume = read_volume(media)
        shape = shape or target_shape(volume, max_inplane=settings.volume_inplane, max_depth=settings.volume_depth)
        path, digest = _store(out_dir, _npz(prepare_volume(volume, sample.modality, settings, shape=shape)), ".npz")
        paths.append(path)
        digests.append(digest)
    mask_paths, boxes = [], []
    for mask_file in sample.masks:
        labels = resample_volume(read_volume(mask_file), shape, is_label=True).array.astype(np.int16)
        mask_paths.append(_store(out_dir, _npz(labels), ".npz")[0])
        boxes += _label_boxes(labels)
    z, y, x = shape
    return NormalisedMedia(kind="volume", paths=paths, sha256s=digests, width=x, height=y, depth=z,
                           boxes_norm1000=[_norm1000(b, x, y, z) for b in boxes], mask_paths=mask_paths,
                           meta={"window": settings.window_for(sample.modality)})


def _label_boxes(labels: np.ndarray) -> list[dict]:
    boxes = []
    for value in sorted(int(v) for v in np.unique(labels) if v != 0):
        zs, ys, xs = np.nonzero(labels == value)
        boxes.append({"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1,
                              int(zs.min()), int(zs.max()) + 1], "label": f"label_{value}"})
    return boxes


# ---- slides -----------------------------------------------------------------------------------------------

def _slide(sample: SourceSample) -> NormalisedMedia:
    from breastgpt.io.wsi import open_slide, slide_fingerprint

    path = sample.media[0]
    mpp = 0.5 if path.suffix.lower() in (".jpg", ".jpeg", ".png") else None  # raster "WSIs" carry no µm/px
    with open_slide(path, mpp=mpp, require_mpp=False) as slide:
        width, height = slide.dimensions
    fingerprint = slide_fingerprint(path)
    # feature_path is set by the build: the feature file is named by a keyed id (build_items.slide_feature_id)
    return NormalisedMedia(kind="slide", paths=[], sha256s=[fingerprint["sha256"]], width=width, height=height,
                           meta={"fingerprint": fingerprint,
                                 "feature_root": "the out dir of `breastgpt slides extract`",
                                 "assumed_mpp": mpp})


# ---- content-addressed storage ----------------------------------------------------------------------------

# Media are PNG with each row "Sub"-filtered and deflated at zlib level 1. The pixels are the same at any setting;
# this one encodes a mammogram about 4x faster than PIL's default (adaptive filter per row, level 6) and 2x faster
# than PIL at level 1, for files within a fifth of PIL's default size (benchmarks/corpus_build.py records both).
# Media are named by the sha256 of these bytes, so nothing may order or split by media file names (the demo
# orders by record id).
PNG_COMPRESS_LEVEL = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(image: Image.Image) -> bytes:
    """PNG bytes of an image; 8-bit grey and RGB are written here (Sub filter), other modes by PIL."""
    if image.mode not in ("L", "RGB") or 0 in image.size:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue()
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    step = 1 if pixels.ndim == 2 else 3  # bytes per pixel: "Sub" takes each byte minus the same byte one pixel left
    rows = pixels.reshape(height, width * step)
    filtered = np.empty((height, width * step + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # the row's filter type: Sub
    filtered[:, 1:step + 1] = rows[:, :step]
    np.subtract(rows[:, step:], rows[:, :-step], out=filtered[:, step + 1:])  # uint8: modulo 256, as PNG defines
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if step == 1 else 2, 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), PNG_COMPRESS_LEVEL)) + _chunk(b"IEND", b""))


def _npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array=array)
    return buffer.getvalue()


def _store(out_dir: Path, data: bytes, suffix: str) -> tuple[str, str]:
    """Write bytes once under media/<sha[:2]>/<sha><suffix> (atomically); return (relative path, sha256).

    Not fsynced: the corpus manifest re-hashes every media file, so a file torn by a power cut fails
    `verify_build` instead of passing silently, and thousands of fsyncs would slow every build."""
    digest = hashlib.sha256(data).hexdigest()
    rel = Path("media") / digest[:2] / f"{digest}{suffix}"
    target = out_dir / rel
    if not target.is_file():
        atomic_write_bytes(target, data, durable=False)
    return rel.as_posix(), digest
