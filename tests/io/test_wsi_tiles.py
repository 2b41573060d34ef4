"""Stored-tile reads (tifffile + imagecodecs) give exactly OpenSlide's pixels; tiles hash the same either way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from breastgpt.io.errors import CorruptFileError
from breastgpt.io.wsi import open_slide
from breastgpt.pathology.synthetic import SyntheticScene, write_pyramidal_tiff
from breastgpt.pathology.tiling import SlideSource, TilingConfig, build_grid, iter_tile_batches
from breastgpt.pathology.tissue import tissue_mask_for_slide
from tests.pathology.slides import CMU, TCGA, garble_tile, small_slide, tile_index_at

needs_real = pytest.mark.skipif(not CMU.is_file() and not os.environ.get("CI"), reason="real sample slides not present")


def _tile_hashes(path: Path, stored_tiles: bool, config: TilingConfig = TilingConfig(min_tissue_fraction=0.0),
                 mpp: float | None = None, workers: int = 0) -> list[str]:
    with open_slide(path, mpp=mpp) as slide:
        mask, _ = tissue_mask_for_slide(slide)
        grid = build_grid(slide, mask, config)
    source = SlideSource(str(path), mpp=mpp, stored_tiles=stored_tiles)
    return [hashlib.sha256(tile.tobytes()).hexdigest()
            for _, batch in iter_tile_batches(source, grid, batch_size=5, workers=workers) for tile in batch]


@pytest.mark.parametrize(("tile", "mpp", "kwargs"), [
    (512, 0.5, {}),  # stored tiles = grid tiles: decoded in place
    (256, 0.5, {"svs_description": True, "resolution_tags": False}),  # Aperio layout, 4 stored tiles per grid tile
    (240, 0.499, {}),  # 513 px grid steps over 240 px stored tiles: reads straddle and share stored tiles
    (256, 0.5, {"compression": "zlib"}),  # lossless
])
def test_every_tile_hashes_as_through_openslide(tmp_path: Path, tile: int, mpp: float, kwargs: dict) -> None:
    path = small_slide(tmp_path / "s.tif", seed=3, width=2600, height=1900, mpp=mpp, tile=tile, **kwargs).path
    with open_slide(path) as slide:
        assert slide.reader == "openslide" and slide.stored_tile_levels == (0, 1, 2)
        assert slide.describe()["stored_tile_decoder"].startswith("tifffile")
    direct = _tile_hashes(path, True)
    assert len(direct) == 6 * 4  # the whole grid, edge tiles (partly outside the slide) included
    assert direct == _tile_hashes(path, False)
    assert direct == _tile_hashes(path, True, workers=2)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_regions_equal_openslide_at_every_level(tmp_path: Path, level: int) -> None:
    path = small_slide(tmp_path / "s.tif", seed=5, width=2600, height=1900, tile=256).path
    rng = np.random.default_rng(level)
    with open_slide(path) as direct, open_slide(path, stored_tiles=False) as reference:
        ds = int(direct.level_downsamples[level])
        lw, lh = direct.level_dimensions[level]
        regions = [((0, 0), (lw, lh)), ((-37 * ds, -5 * ds), (90, 70)), (((lw - 10) * ds, (lh - 3) * ds), (64, 64))]
        regions += [((int(rng.integers(0, lw)) * ds, int(rng.integers(0, lh)) * ds),
                     (int(rng.integers(1, 400)), int(rng.integers(1, 400)))) for _ in range(12)]
        for location, size in regions:
            assert np.array_equal(direct.read_region(location, level, size),
                                  reference.read_region(location, level, size)), (location, size)
        batch = np.array([loc for loc, _ in regions[3:]])
        got = direct.read_regions(batch, level, (50, 40))
        assert got.shape == (len(batch), 40, 50, 3)
        for i, location in enumerate(batch):
            assert np.array_equal(got[i], reference.read_region(tuple(location), level, (50, 40)))


def test_non_integer_level_position_goes_to_openslide(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "s.tif", seed=5, tile=256).path
    with open_slide(path) as direct, open_slide(path, stored_tiles=False) as reference:
        assert np.array_equal(direct.read_region((6, 10), 1, (30, 30)), reference.read_region((6, 10), 1, (30, 30)))


def test_garbled_stored_tile_is_a_corrupt_file(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "bad.tif", seed=2, tile=256).path
    garble_tile(path, tile_index_at(path, 300, 300))
    with open_slide(path) as slide:
        slide.read_region((0, 0), 0, (256, 256))  # an intact tile still reads
        with pytest.raises(CorruptFileError, match="tile"):
            slide.read_region((256, 256), 0, (256, 256))


def test_read_region_out_is_checked(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "s.tif", seed=1, tile=256).path
    with open_slide(path) as slide:
        with pytest.raises(ValueError, match="out must be"):
            slide.read_region((0, 0), 0, (10, 10), out=np.empty((10, 11, 3), np.uint8))


@needs_real
def test_real_aperio_tiles_hash_as_through_openslide() -> None:
    with open_slide(CMU) as slide:
        assert slide.stored_tile_levels == (0,)
    direct = _tile_hashes(CMU, True)
    assert len(direct) == 5 * 6
    assert direct == _tile_hashes(CMU, False)


@needs_real
def test_jpeg2000_levels_stay_with_openslide() -> None:
    with open_slide(TCGA, mpp=0.25) as slide:
        assert slide.stored_tile_levels == ()
        assert slide.describe()["stored_tile_decoder"] is None


def test_tiffslide_reader_is_unchanged(tmp_path: Path) -> None:
    scene = SyntheticScene.random(900, 700, mpp=0.5, seed=4)
    path = write_pyramidal_tiff(tmp_path / "t.tif", scene, downsamples=(1, 4), tile=256).path
    with open_slide(path, readers=("tiffslide",)) as slide:
        assert slide.reader == "tiffslide" and slide.stored_tile_levels == ()
