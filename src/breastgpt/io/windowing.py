"""Intensity windowing and resampling of volumes for the model's video path (SPEC §3.3).

CT uses real windows in Hounsfield units (never a whole-volume min–max, which lets air and metal decide the
contrast); MRI, whose intensities have no physical unit, uses robust percentiles. Label maps are resampled with
nearest-neighbour only, so a mask keeps exactly its label set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from breastgpt.io.volume import Volume, with_array


@dataclass(frozen=True)
class WindowPreset:
    name: str
    center: float | None = None  # HU, for fixed windows
    width: float | None = None
    low_percentile: float | None = None  # for percentile windows
    high_percentile: float | None = None


WINDOW_PRESETS: dict[str, WindowPreset] = {
    "ct-soft-tissue": WindowPreset("ct-soft-tissue", center=40.0, width=400.0),
    "ct-lung": WindowPreset("ct-lung", center=-600.0, width=1500.0),
    "ct-mediastinum": WindowPreset("ct-mediastinum", center=50.0, width=350.0),
    "ct-bone": WindowPreset("ct-bone", center=400.0, width=1800.0),
    # -1000..1000 HU: air to dense bone in one window, lung and mediastinal findings both visible (the clip
    # chest-CT foundation models trained on CT-RATE commonly use)
    "ct-wide": WindowPreset("ct-wide", center=0.0, width=2000.0),
    "mri-percentile": WindowPreset("mri-percentile", low_percentile=0.5, high_percentile=99.5),
    # Already-windowed 8-bit data (corpus volumes): values pass through unchanged.
    "identity": WindowPreset("identity", center=127.5, width=255.0),
}


def window_array(values: np.ndarray, preset: str | WindowPreset) -> np.ndarray:
    """Map values to uint8 through a fixed HU window or a percentile window."""
    if isinstance(preset, str):
        if preset not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; choose one of {sorted(WINDOW_PRESETS)}")
        preset = WINDOW_PRESETS[preset]
    if preset.center is not None and preset.width is not None:
        low, high = preset.center - preset.width / 2.0, preset.center + preset.width / 2.0
    else:
        low, high = (float(v) for v in np.percentile(values, [preset.low_percentile, preset.high_percentile]))
    span = high - low if high > low else 1.0
    unit = np.clip((values.astype(np.float32) - low) / span, 0.0, 1.0)
    return np.round(unit * 255.0).astype(np.uint8)


def window_volume(volume: Volume, preset: str | WindowPreset) -> np.ndarray:
    """The volume as uint8 (Z, Y, X) through a window preset."""
    return window_array(volume.array, preset)


def target_shape(volume: Volume, *, max_inplane: int = 384, max_depth: int = 48, even_depth: bool = True) -> tuple[int, int, int]:
    """(Z, Y, X) after limiting the in-plane long edge and the depth; the in-plane grid keeps its aspect ratio.

    Depth is made even (Qwen3-VL's temporal patch is 2): rounded up when that stays within `max_depth`, else down.
    """
    depth, height, width = volume.shape
    scale = min(1.0, max_inplane / max(height, width))
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    out_d = min(depth, max_depth)
    if even_depth and out_d % 2:
        out_d = out_d + 1 if out_d + 1 <= max_depth else out_d - 1
    return max(out_d, 2 if even_depth else 1), out_h, out_w


def resample_volume(volume: Volume, shape: tuple[int, int, int], *, is_label: bool = False) -> Volume:
    """Resample to a (Z, Y, X) grid covering the same physical extent; nearest-neighbour for label maps."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing((volume.spacing[2], volume.spacing[1], volume.spacing[0]))
    extent = [n * s for n, s in zip(volume.shape, volume.spacing)]
    new_spacing = tuple(e / n for e, n in zip(extent, shape))  # (z, y, x)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(shape[2]), int(shape[1]), int(shape[0])])
    resampler.SetOutputSpacing((new_spacing[2], new_spacing[1], new_spacing[0]))
    # Align voxel edges (not centres) so the resampled grid covers exactly the original extent.
    resampler.SetOutputOrigin(tuple(
        (ns - os) / 2.0 for ns, os in zip((new_spacing[2], new_spacing[1], new_spacing[0]),
                                          (volume.spacing[2], volume.spacing[1], volume.spacing[0]))))
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0 if is_label else float(np.min(volume.array)))
    resampled = sitk.GetArrayFromImage(resampler.Execute(image))
    return with_array(volume, resampled, (new_spacing[0], new_spacing[1], new_spacing[2]))
