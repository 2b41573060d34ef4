"""Per-modality normalisation of a `SourceSample`'s media into content-addressed corpus files.

- Mammography: pixels through the DICOM VOI LUT / window with MONOCHROME1 inverted (`breastgpt.io`), breast
  region cropped (threshold + largest component), chest wall moved to one side (flip), long side limited; the
  same crop/flip/scale applies to masks and boxes.
- Ultrasound: only the imaging region (largest non-dark component) is kept.
- Volumes: windowed (CT preset in HU, MRI percentiles), resampled to in-plane ≤ limit and even depth ≤ limit;
  label maps nearest-neighbour only.
- Slides: not decoded; fingerprinted (the build names the feature file `breastgpt slides extract` writes).
Boxes come back on the 0–1000 grid of the normalised image ([x1, y1, x2, y2], volumes add z1, z2).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from breastgpt.corpus.sources.base import NormalisedMedia, NormaliseLimits, SourceSample
from breastgpt.corpus.sources.media import RASTER_SUFFIXES

__all__ = ["NormalisedMedia", "NormaliseLimits", "normalise_media", "breast_crop", "imaging_region_crop"]


def normalise_media(sample: SourceSample, out_dir: Path, *, limits: NormaliseLimits = NormaliseLimits()) -> NormalisedMedia:
    """Write the sample's normalised media under `out_dir/media/` and describe it. Raises MedicalFileError."""
    if sample.kind == "slide":
        return _slide(sample)
    if sample.kind == "volume":
        return _volume(sample, Path(out_dir), limits)
    return _image(sample, Path(out_dir), limits)


# ---- 2-D images -------------------------------------------------------------------------------------------

def _read_grey_or_rgb(path: Path) -> np.ndarray:
    if path.suffix.lower() in RASTER_SUFFIXES:
        from breastgpt.io.raster import read_raster

        array = np.asarray(read_raster(path))
        if array.dtype != np.uint8:  # 16-bit rasters: scale by their own range
            top = float(array.max()) or 1.0
            array = (array.astype(np.float32) / top * 255).astype(np.uint8)
        return array
    from breastgpt.io.dicom import read_display_image

    return np.asarray(read_display_image(path))


def _read_mask(path: Path) -> np.ndarray:
    from breastgpt.corpus.sources.media import read_pixels

    mask = read_pixels(path)
    return (mask.max(axis=2) if mask.ndim == 3 else mask) > 0


def largest_component(foreground: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of the largest connected foreground component, or None."""
    labels, count = ndimage.label(foreground)
    if count == 0:
        return None
    sizes = ndimage.sum_labels(foreground, labels, index=np.arange(1, count + 1))
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def breast_crop(grey: np.ndarray) -> tuple[int, int, int, int]:
    """Breast bounding box: pixels above a low threshold (a fraction of the bright range), largest component."""
    level = max(8.0, 0.08 * float(np.percentile(grey, 99)))
    region = largest_component(ndimage.binary_opening(grey > level, iterations=2))
    return region or (0, 0, grey.shape[1], grey.shape[0])


def imaging_region_crop(grey: np.ndarray) -> tuple[int, int, int, int]:
    """Ultrasound imaging region: the largest non-dark component after closing speckle gaps."""
    region = largest_component(ndimage.binary_closing(grey > 12, iterations=3) & ndimage.binary_opening(grey > 4, iterations=2))
    return region or (0, 0, grey.shape[1], grey.shape[0])


def chest_wall_on_right(grey: np.ndarray) -> bool:
    """The chest wall is the image edge the breast is attached to: the side with more tissue."""
    third = max(1, grey.shape[1] // 3)
    return float(grey[:, -third:].mean()) > float(grey[:, :third].mean())


def _image(sample: SourceSample, out_dir: Path, limits: NormaliseLimits) -> NormalisedMedia:
    pixels = _read_grey_or_rgb(sample.media[0])
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    masks = [_read_mask(m) for m in sample.masks]
    boxes = [dict(b) for b in sample.labels.get("boxes", [])]
    if sample.modality == "mammography":
        x1, y1, x2, y2 = breast_crop(grey)
    elif sample.modality == "ultrasound":
        x1, y1, x2, y2 = imaging_region_crop(grey)
    else:
        x1, y1, x2, y2 = 0, 0, grey.shape[1], grey.shape[0]
    pixels, masks = pixels[y1:y2, x1:x2], [m[y1:y2, x1:x2] for m in masks]
    boxes = [_shift_clip(b, x1, y1, x2 - x1, y2 - y1) for b in boxes]
    flip = sample.modality == "mammography" and chest_wall_on_right(grey[y1:y2, x1:x2]) == (limits.mammo_flip_to == "L")
    if flip:
        pixels, masks = pixels[:, ::-1], [m[:, ::-1] for m in masks]
        boxes = [_flip_box(b, x2 - x1) for b in boxes]
    h, w = pixels.shape[:2]
    scale = min(1.0, limits.image_long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image_bytes = _png(Image.fromarray(np.ascontiguousarray(pixels)).resize(size, Image.BILINEAR))
    mask_bytes = [_png(Image.fromarray(np.ascontiguousarray(m).astype(np.uint8) * 255).resize(size, Image.NEAREST))
                  for m in masks]
    path, digest = _store(out_dir, image_bytes, ".png")
    stored_masks = [_store(out_dir, b, ".png")[0] for b in mask_bytes]
    return NormalisedMedia(kind="image", paths=[path], sha256s=[digest], width=size[0], height=size[1],
                           boxes_norm1000=[_norm1000(b, w, h) for b in boxes], mask_paths=stored_masks,
                           meta={"crop": [x1, y1, x2, y2], "flipped": flip, "scale": scale})


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

def _volume(sample: SourceSample, out_dir: Path, limits: NormaliseLimits) -> NormalisedMedia:
    from breastgpt.io.volume import read_volume
    from breastgpt.io.windowing import resample_volume, target_shape, window_volume

    preset = limits.ct_preset if sample.modality == "ct" else limits.mri_preset
    paths, digests, shape = [], [], None
    for media in sample.media:
        volume = read_volume(media)
        shape = shape or target_shape(volume, max_inplane=limits.volume_inplane, max_depth=limits.volume_depth)
        resampled = resample_volume(volume, shape) if shape != volume.shape else volume
        path, digest = _store(out_dir, _npz(window_volume(resampled, preset)), ".npz")
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
                           meta={"window": preset})


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

def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _npz(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, array=array)
    return buffer.getvalue()


def _store(out_dir: Path, data: bytes, suffix: str) -> tuple[str, str]:
    """Write bytes once under media/<sha[:2]>/<sha><suffix> (temp + rename); return (relative path, sha256)."""
    digest = hashlib.sha256(data).hexdigest()
    rel = Path("media") / digest[:2] / f"{digest}{suffix}"
    target = out_dir / rel
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return rel.as_posix(), digest
