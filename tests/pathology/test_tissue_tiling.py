"""Tissue masks (Dice on synthetic truth) and tile grids at a physical resolution."""

from __future__ import annotations

import os

from pathlib import Path

import numpy as np
import pytest

from breastgpt.io.errors import CorruptFileError
from breastgpt.io.wsi import open_slide
from breastgpt.pathology.synthetic import SyntheticScene, write_large_jpeg, write_pyramidal_tiff, write_svs_like
from breastgpt.pathology.tiling import SlideSource, TilingConfig, build_grid, iter_tile_batches, read_tiles
from breastgpt.pathology.tissue import (TissueConfig, TissueMask, dice, otsu_threshold, remove_small_components,
                                        segment_tissue, tile_tissue_fraction, tissue_mask_for_slide)
from tests.pathology.slides import CMU, TCGA, garble_tile, small_slide, tile_index_at

# Outside CI a missing sample folder skips; in CI (CI=true) the real-slide tests must run.
needs_real = pytest.mark.skipif(not CMU.is_file() and not os.environ.get("CI"), reason="real sample slides not present")


def _mask_and_truth(path: Path, scene: SyntheticScene, mpp: float | None = None,
                    config: TissueConfig = TissueConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open_slide(path, mpp=mpp) as slide:
        mask, _ = tissue_mask_for_slide(slide, config)
    h, w = mask.mask.shape
    y, x = np.mgrid[0:h, 0:w]
    x, y = (x + 0.5) * mask.downsample[0], (y + 0.5) * mask.downsample[1]
    return mask.mask, scene.tissue_at(x, y), scene.pen_at(x, y)


@pytest.mark.parametrize("writer", ["tiff", "svs", "jpeg"])
def test_tissue_dice_on_synthetic_slides(tmp_path: Path, writer: str) -> None:
    scene = SyntheticScene.random(2400, 1800, mpp=0.5, seed=11, pen_mark=True)
    if writer == "tiff":
        slide, mpp = write_pyramidal_tiff(tmp_path / "s.tif", scene), None
    elif writer == "svs":
        slide, mpp = write_svs_like(tmp_path / "s.svs", scene), None
    else:
        slide, mpp = write_large_jpeg(tmp_path / "s.jpg", scene), 0.5
    mask, truth, _ = _mask_and_truth(slide.path, scene, mpp)
    assert dice(mask, truth) >= 0.9


def test_pen_removal_drops_the_stroke(tmp_path: Path) -> None:
    scene = SyntheticScene.random(2400, 1800, mpp=0.5, seed=5, pen_mark=True)
    path = write_pyramidal_tiff(tmp_path / "pen.tif", scene).path
    # No opening and a small minimum area, so only the pen rule can remove the thin stroke.
    mask, truth, pen = _mask_and_truth(path, scene, config=TissueConfig(min_component_um2=5_000, open_radius_um=0))
    assert pen.sum() > 50 and mask[pen].mean() == 0.0 and dice(mask, truth) >= 0.95
    kept, _, _ = _mask_and_truth(path, scene, config=TissueConfig(min_component_um2=5_000, open_radius_um=0, remove_pen=False))
    assert kept[pen].mean() > 0.5


def test_otsu_and_components_exact() -> None:
    values = np.array([0.1] * 50 + [0.8] * 50)
    threshold = otsu_threshold(values)
    assert 0.1 < threshold <= 0.8
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True  # 4 px
    mask[4, 4] = True  # 1 px
    assert remove_small_components(mask, 2).sum() == 4
    assert not remove_small_components(mask, 2)[4, 4]


def test_config_refuses_unknown_keys() -> None:
    assert TissueConfig.from_dict({"mask_mpp": 4.0}).mask_mpp == 4.0
    with pytest.raises(ValueError, match=r"TissueConfig: unknown key\(s\) \['otsu'\]"):
        TissueConfig.from_dict({"mask_mpp": 4.0, "otsu": True})
    with pytest.raises(ValueError, match=r"TilingConfig: unknown key\(s\) \['tile'\]"):
        TilingConfig.from_dict({"tile": 256})


def test_tile_tissue_fraction_exact() -> None:
    grid = np.zeros((4, 4), dtype=bool)
    grid[:2, :2] = True
    mask = TissueMask(grid, (10.0, 10.0), 5.0, 0.1, TissueConfig())
    coords = np.array([[0, 0], [20, 0], [10, 10], [30, 30]], dtype=np.int64)
    assert tile_tissue_fraction(mask, coords, (20, 20)).tolist() == [1.0, 0.0, 0.25, 0.0]


def test_segment_blank_image_is_empty() -> None:
    white = np.full((64, 64, 3), 245, dtype=np.uint8)
    assert not segment_tissue(white, 8.0).mask.any()


@needs_real
@pytest.mark.parametrize(("path", "mpp", "level", "footprint"), [(CMU, None, 0, 513), (TCGA, 0.25, 1, 1024)])
def test_real_slides_tile_at_256_um(path: Path, mpp: float | None, level: int, footprint: int) -> None:
    with open_slide(path, mpp=mpp) as slide:
        mask, _ = tissue_mask_for_slide(slide)
        grid = build_grid(slide, mask)
        tiles = read_tiles(slide, grid, grid.coords[:2])
    assert grid.footprint == (footprint, footprint) and grid.level == level
    assert grid.read_size == (512, 512) and not grid.resized
    assert grid.tile_um[0] == pytest.approx(256.0, rel=0.01) and grid.tile_um[1] == pytest.approx(256.0, rel=0.01)
    assert len(grid.coords) > 5 and (grid.tissue_fraction >= 0.25).all()
    assert grid.coords.dtype == np.int64 and (grid.coords % footprint == 0).all()
    assert tiles.shape == (2, 512, 512, 3) and tiles.dtype == np.uint8


def test_level_choice_and_resize(tmp_path: Path) -> None:
    # 0.3 µm/px with levels 1, 2, 8: 0.3 and 0.6 → only level 0 is ≤ 0.5; footprint 853 px, resized.
    path = small_slide(tmp_path / "s.tif", width=3000, height=2000, mpp=0.3, downsamples=(1, 2, 8)).path
    with open_slide(path) as slide:
        grid = build_grid(slide, None, TilingConfig(target_mpp=0.5, tile_size=512, min_tissue_fraction=0))
        assert (grid.level, grid.footprint, grid.read_size, grid.resized) == (0, (853, 853), (853, 853), True)
        assert grid.grid_shape == (4, 3) and len(grid.coords) == 12
        assert read_tiles(slide, grid, grid.coords[:1]).shape == (1, 512, 512, 3)
        coarse = build_grid(slide, None, TilingConfig(target_mpp=1.2, tile_size=256, min_tissue_fraction=0))
        assert (coarse.level, coarse.read_size, coarse.resized) == (1, (512, 512), True)
        exact = build_grid(slide, None, TilingConfig(target_mpp=0.6, tile_size=256, min_tissue_fraction=0))
        assert (exact.level, exact.read_size, exact.resized) == (1, (256, 256), False)


def test_worker_reading_matches_in_process(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "s.tif", seed=2).path
    with open_slide(path) as slide:
        mask, _ = tissue_mask_for_slide(slide)
        grid = build_grid(slide, mask)
    source = SlideSource(str(path))
    inline = list(iter_tile_batches(source, grid, batch_size=3, workers=0))
    pooled = list(iter_tile_batches(source, grid, batch_size=3, workers=2))
    assert len(inline) == len(pooled) == -(-len(grid.coords) // 3)
    for (c1, p1), (c2, p2) in zip(inline, pooled, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(p1, p2)


def test_worker_error_keeps_its_type(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "bad.tif", seed=2).path
    with open_slide(path) as slide:
        grid = build_grid(slide, None, TilingConfig(min_tissue_fraction=0))
    garble_tile(path, tile_index_at(path, 600, 600))
    with pytest.raises(CorruptFileError, match="cannot decode") as info:
        for _ in iter_tile_batches(SlideSource(str(path)), grid, batch_size=2, workers=1):
            pass
    assert info.value.path == str(path)


def _float_hsv_mask(rgb: np.ndarray, config: TissueConfig = TissueConfig()) -> tuple[np.ndarray, float]:
    """The mask before cleaning, from float HSV of every pixel: what `segment_tissue` must reproduce exactly."""
    from scipy import ndimage

    from breastgpt.pathology.tissue import disk, pen_mask, rgb_to_hsv

    hue, sat, val = rgb_to_hsv(rgb)
    excluded = ndimage.binary_dilation(pen_mask(hue, sat, val), structure=disk(1)) | (val < config.dark_value)
    threshold = max(otsu_threshold(sat[~excluded]), config.min_saturation)
    return (sat > threshold) & ~excluded, threshold


def test_integer_saturation_equals_float_hsv() -> None:
    from breastgpt.pathology.tissue import rgb_to_hsv, saturation_value

    a, b = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    mid = ((a.astype(np.int32) + b) // 2).astype(np.uint8)
    for order in ([a, b, mid], [mid, a, b], [b, mid, a]):
        rgb = np.stack(order, axis=-1)
        sat, val, code = saturation_value(rgb)
        _, ref_sat, ref_val = rgb_to_hsv(rgb)
        assert np.array_equal(sat, ref_sat) and np.array_equal(val, ref_val)
        assert np.array_equal(code >> 8, rgb.max(axis=2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tissue_mask_equals_float_hsv_mask(tmp_path: Path, seed: int) -> None:
    scene = SyntheticScene.random(3000, 2400, mpp=0.5, seed=seed, pen_mark=True)
    path = write_pyramidal_tiff(tmp_path / "pen.tif", scene, tile=256).path
    with open_slide(path) as slide:
        mask, rendering = tissue_mask_for_slide(slide, TissueConfig(close_radius_um=0, open_radius_um=0,
                                                                    min_component_um2=0, fill_holes=False))
    expected, threshold = _float_hsv_mask(rendering)
    assert mask.threshold == threshold
    assert np.array_equal(mask.mask, expected)
    # Random colours exercise every hue branch, ink included.
    rgb = np.random.default_rng(seed).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    got = segment_tissue(rgb, 8.0, TissueConfig(close_radius_um=0, open_radius_um=0, min_component_um2=0,
                                                fill_holes=False))
    expected, threshold = _float_hsv_mask(rgb)
    assert got.threshold == threshold and np.array_equal(got.mask, expected)


def test_worker_batch_buffers_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The buffers this process creates, recorded as they are made: other test processes may be reading slides into
    # buffers of their own in the same folder at the same time.
    import tempfile

    made: list[str] = []
    mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        handle, name = mkstemp(*args, **kwargs)
        if os.path.basename(name).startswith("breastgpt-tiles-"):
            made.append(name)
        return handle, name

    def present() -> list[str]:
        return [name for name in made if os.path.exists(name)]

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    path = small_slide(tmp_path / "s.tif", seed=2).path
    with open_slide(path) as slide:
        grid = build_grid(slide, None, TilingConfig(tile_size=256, min_tissue_fraction=0))
    batches = iter_tile_batches(SlideSource(str(path)), grid, batch_size=2, workers=2)
    coords, first = next(batches)
    assert len(present()) == len(made) == 4  # workers × prefetch shared buffers while reading
    kept = first.copy()
    rest = list(batches)
    assert np.array_equal(first, kept)  # a batch handed out is the caller's own, never overwritten by a later one
    assert sum(len(p) for _, p in rest) + len(first) == len(grid.coords)
    assert present() == []
    batches = iter_tile_batches(SlideSource(str(path)), grid, batch_size=2, workers=2)
    next(batches)
    assert len(made) == 8 and len(present()) == 4
    batches.close()  # a consumer that stops early
    assert present() == []
