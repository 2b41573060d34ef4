"""One preprocessing for training and inference: the settings a corpus is normalised with, and the functions
that apply them.

`corpus build` normalises every image and volume with a `Preprocessing` and stores it as `preprocessing.json`
beside the records; training copies that file into the checkpoint it exports; `ask`, `serve`, `predict` and a
local `bench run` read it back from the checkpoint, so the model sees a raw file exactly as it saw that file's
corpus record in training. The same functions do the work on both sides:

- `read_image_pixels`: a 2-D file (DICOM through its display pipeline, or a raster) as uint8 grey or RGB;
- `prepare_image`: modality-specific crop, background masking, orientation and size limit;
- `prepare_volume`: resampling to the size limits and the modality's intensity window;
- `model_image` / `model_frames`: the arrays the processor receives (three channels; an even frame count).

A checkpoint without `preprocessing.json` (made by `model init`, or trained on records that did not come from a
corpus build) is run with `Preprocessing()` — the defaults below, listed in docs/inference.md — and the tools
say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from breastgpt.config import ConfigError, StrictConfig
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

PREPROCESSING_FILE = "preprocessing.json"
FORMAT = "breastgpt-preprocessing"
VERSION = 1
# What `prepare_image` does per modality; any other value (e.g. "other", a CT or MRI key image) only limits size.
IMAGE_MODALITIES = ("mammography", "ultrasound", "other")
DICOM_MODALITY = {"MG": "mammography", "US": "ultrasound"}  # DICOM Modality (0008,0060) -> corpus modality
NO_SETTINGS_NOTICE = ("the checkpoint records no preprocessing (no preprocessing.json: not trained from a corpus "
                      "build, or made by `model init`); using the documented defaults (docs/inference.md)")


class PreprocessingError(ConfigError):
    """A preprocessing file or setting that is not valid; the message names the file or the setting."""


@dataclass(frozen=True)
class Preprocessing(StrictConfig):
    """How media are normalised for the model. Unknown keys are errors (`from_dict`)."""

    error = PreprocessingError
    section = "preprocessing"

    image_long_side: int = 1024  # 2-D images: long side at most this many pixels after cropping
    mammo_crop: bool = True  # mammograms: crop to the breast (largest bright component)
    mammo_mask_outside_breast: bool = True  # mammograms: zero every pixel not connected to the breast (burned-in
    # text such as "LCC", rulers, markers), so no answer can be read from a label instead of the anatomy
    # orient every breast as this side's image (chest wall left for "L"); "none": as stored
    mammo_flip_to: Literal["L", "R", "none"] = "L"
    ultrasound_crop: bool = True  # ultrasound: keep only the imaging region (drops the scanner's text panels)
    volume_inplane: int = 384  # volumes: in-plane long edge at most this
    volume_depth: int = 48  # volumes: at most this many slices, and an even count (temporal patch 2)
    ct_preset: str = "ct-wide"  # breastgpt.io.windowing preset for CT (-1000..1000 HU: lung and soft tissue)
    mri_preset: str = "mri-percentile"

    def validate(self) -> None:
        from breastgpt.io.windowing import WINDOW_PRESETS

        if min(self.image_long_side, self.volume_inplane, self.volume_depth) < 2:
            raise PreprocessingError("preprocessing sizes (image_long_side, volume_inplane, volume_depth) must be "
                                     "at least 2")
        for name in ("ct_preset", "mri_preset"):
            if getattr(self, name) not in WINDOW_PRESETS:
                raise PreprocessingError(f"{name} {getattr(self, name)!r} is not a window preset; choose one of "
                                         f"{sorted(WINDOW_PRESETS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **super().to_dict()}

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Strip the file's format/version envelope; a file a user writes may leave it out."""
        data = dict(data)
        if data.pop("format", FORMAT) != FORMAT or data.pop("version", VERSION) != VERSION:
            raise PreprocessingError(f"{where}: not a version-{VERSION} {FORMAT} file")
        return data

    def differences(self, other: Preprocessing) -> list[str]:
        """`name: mine != theirs` for every setting that differs."""
        return [f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}" for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]

    def window_for(self, modality: str) -> str:
        """The intensity window of a volume of this modality ("ct" or anything else, which is MRI-like)."""
        return self.ct_preset if modality == "ct" else self.mri_preset


def write_preprocessing(folder: str | Path, settings: Preprocessing) -> Path:
    """`folder/preprocessing.json`, written atomically."""
    from breastgpt.artifacts import atomic_write_json

    return atomic_write_json(Path(folder) / PREPROCESSING_FILE, settings.to_dict())


def read_preprocessing(folder: str | Path) -> Preprocessing | None:
    """The settings recorded in `folder/preprocessing.json`, or None when the folder has none."""
    path = Path(folder) / PREPROCESSING_FILE
    return read_preprocessing_file(path) if path.is_file() else None


def read_preprocessing_file(path: str | Path) -> Preprocessing:
    """Settings from a JSON file (a corpus's or checkpoint's `preprocessing.json`, or one a user writes with only
    the keys to change)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreprocessingError(f"{path}: unreadable preprocessing settings ({exc}); fix the file, or rebuild "
                                 "the corpus / re-export the checkpoint that wrote it") from exc
    if not isinstance(data, dict):
        raise PreprocessingError(f"{path}: expected a JSON object")
    return Preprocessing.from_dict(data, str(path))


# ---- 2-D images -------------------------------------------------------------------------------------------


def read_image_pixels(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A 2-D image file as uint8 grey (H, W) or RGB (H, W, 3): DICOM through its display pipeline (VOI LUT or
    window, MONOCHROME1 inverted; the first frame of a multi-frame object), rasters as stored (16-bit scaled by
    their own maximum, alpha dropped). Raises `MedicalFileError` subclasses."""
    from breastgpt.io.inspect import sniff_format

    path = Path(path)
    if sniff_format(path, limits) == "dicom":
        from breastgpt.io.dicom import read_dicom_image

        array = np.asarray(read_dicom_image(path, limits=limits).display())
        if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] != 3):
            array = array[0]
    else:
        from breastgpt.io.raster import read_raster

        array = np.asarray(read_raster(path, limits=limits))
        if array.ndim == 3 and array.shape[-1] in (2, 4):  # grey+alpha, RGBA
            array = array[..., 0] if array.shape[-1] == 2 else array[..., :3]
    if array.dtype != np.uint8:
        top = float(array.max()) or 1.0
        array = np.round(np.clip(array.astype(np.float64), 0, None) / top * 255).astype(np.uint8)
    return array


def dicom_image_modality(path: str | Path, *, limits: ReadLimits = DEFAULT_LIMITS) -> str | None:
    """The corpus modality a DICOM file's Modality tag names (MG, US), or None (a raster, another modality)."""
    from breastgpt.io.inspect import inspect_path

    info = inspect_path(path, limits=limits)
    if info.get("format") != "dicom":
        return None
    return DICOM_MODALITY.get(str(info.get("modality") or "").upper())


@dataclass
class PreparedImage:
    """The normalised pixels and the geometry that made them (applied to masks and boxes by the corpus)."""

    pixels: np.ndarray  # uint8, grey (H, W) or RGB (H, W, 3)
    crop: tuple[int, int, int, int]  # (x1, y1, x2, y2) in source pixels
    flipped: bool  # mirrored left-right after cropping
    scale: float  # output size / cropped size
    size: tuple[int, int]  # (width, height) of `pixels`
    masked_pixels: int = 0  # source pixels zeroed as not breast (mammograms)


def largest_component(foreground: np.ndarray) -> np.ndarray | None:
    """The largest connected component (4-connected) of a boolean image, or None when there is no foreground;
    the first such component on a tie."""
    labels, count = ndimage.label(foreground)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels == int(np.argmax(sizes)) + 1


def bounding_box(mask: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of a mask's pixels; the whole image when there is no mask."""
    if mask is None:
        return 0, 0, shape[1], shape[0]
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# Binary morphology with scipy.ndimage's default 2-D structure (the 4-neighbour cross) and border value 0, written
# as shifted boolean ANDs/ORs: the same pixels as `ndimage.binary_erosion/dilation/opening/closing/fill_holes`
# (tests compare them on random masks) at a fraction of the time on whole mammograms.


def _shifted(mask: np.ndarray, combine: Any, edge: bool) -> np.ndarray:
    out = mask.copy()
    combine(out[1:], mask[:-1], out=out[1:])
    combine(out[:-1], mask[1:], out=out[:-1])
    combine(out[:, 1:], mask[:, :-1], out=out[:, 1:])
    combine(out[:, :-1], mask[:, 1:], out=out[:, :-1])
    if edge:  # erosion: the pixels outside the image count as background
        out[0], out[-1], out[:, 0], out[:, -1] = False, False, False, False
    return out


def binary_erosion(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    for _ in range(iterations):
        mask = _shifted(mask, np.logical_and, True)
    return mask


def binary_dilation(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    for _ in range(iterations):
        mask = _shifted(mask, np.logical_or, False)
    return mask


def binary_opening(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return binary_dilation(binary_erosion(mask, iterations), iterations)


def binary_closing(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return binary_erosion(binary_dilation(mask, iterations), iterations)


def binary_fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` plus every background component (4-connected) that touches no image edge."""
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[labels]


def breast_region(grey: np.ndarray) -> np.ndarray | None:
    """The breast: pixels above a low threshold (a fraction of the bright range), opened to cut thin bridges,
    largest component, holes filled (dark fat inside the breast stays) and grown by two pixels (the skin line)."""
    level = max(8.0, 0.08 * float(np.percentile(grey, 99)))
    region = largest_component(binary_opening(grey > level, iterations=2))
    if region is None:
        return None
    return binary_dilation(binary_fill_holes(region), iterations=2)


def imaging_region(grey: np.ndarray) -> np.ndarray | None:
    """Ultrasound imaging region: the largest non-dark component after closing speckle gaps."""
    return largest_component(binary_closing(grey > 12, iterations=3) & binary_opening(grey > 4, iterations=2))


def chest_wall_on_right(grey: np.ndarray) -> bool:
    """The chest wall is the image edge the breast is attached to: the side with more tissue."""
    third = max(1, grey.shape[1] // 3)
    return float(grey[:, -third:].mean()) > float(grey[:, :third].mean())


def prepare_image(pixels: np.ndarray, modality: str, settings: Preprocessing) -> PreparedImage:
    """Normalise a decoded 2-D image: mammograms cropped to the breast, everything else in the crop zeroed,
    oriented; ultrasound cropped to the imaging region; then the long side limited (bilinear)."""
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    region = None
    if modality == "mammography" and (settings.mammo_crop or settings.mammo_mask_outside_breast):
        region = breast_region(grey)
    elif modality == "ultrasound" and settings.ultrasound_crop:
        region = imaging_region(grey)
    x1, y1, x2, y2 = bounding_box(region, grey.shape)
    if modality == "mammography" and not settings.mammo_crop:
        x1, y1, x2, y2 = 0, 0, grey.shape[1], grey.shape[0]
    out = pixels[y1:y2, x1:x2]
    masked = 0
    if modality == "mammography" and settings.mammo_mask_outside_breast and region is not None:
        outside = ~region[y1:y2, x1:x2]
        masked = int(np.count_nonzero(outside & (grey[y1:y2, x1:x2] > 0)))
        out = np.where(outside[..., None] if out.ndim == 3 else outside, 0, out).astype(np.uint8)
    flip = (modality == "mammography" and settings.mammo_flip_to != "none"
            and chest_wall_on_right(grey[y1:y2, x1:x2]) == (settings.mammo_flip_to == "L"))
    if flip:
        out = out[:, ::-1]
    h, w = out.shape[:2]
    scale = min(1.0, settings.image_long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = Image.fromarray(np.ascontiguousarray(out))
    if size != (w, h):
        image = image.resize(size, Image.BILINEAR)
    return PreparedImage(np.asarray(image), (x1, y1, x2, y2), flip, scale, size, masked)


def model_image(pixels: np.ndarray) -> np.ndarray:
    """The processor's image input: (H, W, 3) uint8 (grey repeated, alpha dropped), writeable."""
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    elif pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"image of shape {pixels.shape} is neither grey nor RGB")
    # A read-only array (a decoded cache entry, a stored thumbnail) makes torch warn at every conversion.
    return pixels if pixels.flags.writeable else pixels.copy()


# ---- volumes ----------------------------------------------------------------------------------------------


def prepare_volume(volume: Any, modality: str, settings: Preprocessing, *,
                   shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A `breastgpt.io.volume.Volume` resampled to `shape` (default: the settings' size limits, even depth) and
    windowed for its modality: uint8 (Z, Y, X)."""
    from breastgpt.io.windowing import resample_volume, target_shape, window_volume

    shape = shape or target_shape(volume, max_inplane=settings.volume_inplane, max_depth=settings.volume_depth)
    resampled = resample_volume(volume, shape) if shape != volume.shape else volume
    return window_volume(resampled, settings.window_for(modality))


def model_frames(grey: np.ndarray) -> np.ndarray:
    """The processor's volume input: (T, H, W, 3) uint8 with T even (temporal patch 2: the last slice is
    repeated rather than anatomy dropped)."""
    if grey.shape[0] % 2:
        grey = np.concatenate([grey, grey[-1:]], axis=0)
    return np.repeat(grey[..., None], 3, axis=-1)


__all__ = ["IMAGE_MODALITIES", "NO_SETTINGS_NOTICE", "PREPROCESSING_FILE", "PreparedImage", "Preprocessing",
           "PreprocessingError", "breast_region", "chest_wall_on_right", "dicom_image_modality", "imaging_region",
           "model_frames", "model_image", "prepare_image", "prepare_volume", "read_image_pixels",
           "read_preprocessing", "read_preprocessing_file", "write_preprocessing"]
