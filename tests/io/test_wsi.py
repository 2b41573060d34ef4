"""Slide reading on the real sample slides, synthetic slides and damaged files."""

from __future__ import annotations

import os

import json
from pathlib import Path

import numpy as np
import pytest

from breastgpt.io.errors import CorruptFileError, LimitExceededError, MissingMetadataError, UnsupportedFormatError
from breastgpt.io.limits import ReadLimits
from breastgpt.io.wsi import _to_rgb, open_slide, slide_fingerprint
from breastgpt.pathology.synthetic import SyntheticScene, write_large_jpeg, write_pyramidal_tiff, write_svs_like
from tests.pathology.slides import CMU, TCGA, break_tile_offsets, garble_tile, small_slide, tile_index_at

# Outside CI a missing sample folder skips; in CI (CI=true) the real-slide tests must run.
needs_real = pytest.mark.skipif(not CMU.is_file() and not os.environ.get("CI"), reason="real sample slides not present")


@needs_real
def test_cmu_geometry_mpp_and_safe_description() -> None:
    with open_slide(CMU) as slide:
        assert slide.reader == "openslide"
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        assert slide.mpp == (0.499, 0.499)
        assert slide.mpp_source == "file"
        assert slide.objective_power == 20.0
        assert slide.vendor == "aperio"
        info = slide.describe()
    assert info["format"] == "svs" and info["kind"] == "slide"
    assert info["associated_images"] == ["label", "macro", "thumbnail"]
    assert info["levels"] == [{"dimensions": [2220, 2967], "downsample": 1.0}]
    text = json.dumps(info)
    # The SVS header names the scanner user (a UUID) and the original file; neither may leak.
    assert "b414003d" not in text and "CMU-1" not in text and "ScanScope" not in text


@needs_real
def test_cmu_pixels_match_openslide_and_outside_is_white() -> None:
    import openslide

    raw = np.asarray(openslide.OpenSlide(str(CMU)).read_region((1000, 1200), 0, (64, 48)))
    with open_slide(CMU) as slide:
        ours = slide.read_region((1000, 1200), 0, (64, 48))
        assert ours.shape == (48, 64, 3) and ours.dtype == np.uint8
        assert np.array_equal(ours, raw[..., :3])  # fully opaque inside the slide
        edge = slide.read_region((2200, -10), 0, (40, 30))
        assert (edge[:10] == 255).all() and (edge[:, 20:] == 255).all()
        assert np.array_equal(edge[10:, :20], np.asarray(
            openslide.OpenSlide(str(CMU)).read_region((2200, 0), 0, (20, 20)))[..., :3])
        assert slide.thumbnail(300).shape == (300, 224, 3)


@needs_real
def test_tcga_jpeg2000_needs_mpp_then_decodes_with_both_readers() -> None:
    with pytest.raises(MissingMetadataError, match="--mpp"):
        open_slide(TCGA)
    with open_slide(TCGA, mpp=0.25) as slide:
        assert slide.reader == "openslide"
        assert slide.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.mpp_source == "user"
        first = slide.read_region((2000, 1500), 0, (128, 128))
    assert 40 < first.mean() < 235 and first.std() > 10  # real pixels, neither black nor white
    with open_slide(TCGA, mpp=0.25, readers=("tiffslide",)) as slide:
        assert slide.reader == "tiffslide"
        second = slide.read_region((2000, 1500), 0, (128, 128))
    assert np.abs(first.astype(int) - second.astype(int)).mean() < 3.0


def test_synthetic_formats_resolve_mpp(tmp_path: Path) -> None:
    scene = SyntheticScene.random(1200, 800, mpp=0.25, seed=3)
    with open_slide(write_pyramidal_tiff(tmp_path / "a.tif", scene, downsamples=(1, 4)).path) as slide:
        assert (slide.reader, slide.vendor, slide.format) == ("openslide", "generic-tiff", "tiff")
        assert slide.mpp == pytest.approx((0.25, 0.25), rel=1e-6)
        assert slide.level_downsamples == (1.0, 4.0)
    with open_slide(write_svs_like(tmp_path / "a.svs", scene, downsamples=(1, 4)).path) as slide:
        assert (slide.vendor, slide.format, slide.objective_power) == ("aperio", "svs", 20.0)
        assert slide.mpp == pytest.approx((0.25, 0.25), rel=1e-6)
        assert np.array_equal(slide.read_region((0, 0), 0, (8, 8))[0, 0] > 200, [True, True, True])
    jpeg = write_large_jpeg(tmp_path / "a.jpg", scene).path
    with pytest.raises(MissingMetadataError, match="--mpp"):
        open_slide(jpeg)
    with open_slide(jpeg, mpp=0.25) as slide:
        assert (slide.reader, slide.format, slide.dimensions, slide.level_count) == ("raster", "jpeg", (1200, 800), 1)
        assert slide.read_region((1190, 790), 0, (20, 20))[15, 15].tolist() == [255, 255, 255]


def test_tiff_without_resolution_needs_mpp(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "nores.tif", width=600, height=400, resolution_tags=False).path
    with pytest.raises(MissingMetadataError) as info:
        open_slide(path)
    assert str(path) in str(info.value) and "--mpp" in str(info.value)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)
    with open_slide(path, require_mpp=False) as slide:
        assert slide.mpp is None and slide.describe()["mpp"] is None


@pytest.mark.timeout(10)
def test_broken_tile_offsets_are_corrupt_quickly(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "broken.tif", width=1024, height=768, compression="zlib").path
    break_tile_offsets(path)
    with pytest.raises(CorruptFileError, match="past the end"):
        open_slide(path)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("readers", [("openslide",), ("tiffslide",)])
def test_garbled_tile_is_corrupt_on_read(tmp_path: Path, readers: tuple[str, ...]) -> None:
    path = small_slide(tmp_path / "garbled.tif", width=1024, height=768).path
    garble_tile(path, tile_index_at(path, 300, 300))
    with open_slide(path, readers=readers) as slide:
        assert slide.read_region((600, 600), 0, (16, 16)).shape == (16, 16, 3)
        with pytest.raises(CorruptFileError, match="cannot decode"):
            slide.read_region((256, 256), 0, (256, 256))


def test_empty_and_non_slide_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        open_slide(empty)
    text = tmp_path / "notes.svs"
    text.write_text("not a slide at all\n")
    with pytest.raises(UnsupportedFormatError):
        open_slide(text)
    with pytest.raises(UnsupportedFormatError, match="no such file"):
        open_slide(tmp_path / "missing.svs")
    import pydicom

    ct = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    with pytest.raises(UnsupportedFormatError):
        open_slide(ct)
    truncated = tmp_path / "trunc.tif"
    truncated.write_bytes(b"II*\x00" + b"\xff" * 4)
    with pytest.raises(CorruptFileError):
        open_slide(truncated)


def test_region_limit_and_bad_arguments(tmp_path: Path) -> None:
    path = small_slide(tmp_path / "s.tif", width=600, height=400).path
    with open_slide(path, limits=ReadLimits(max_region_pixels=100)) as slide:
        with pytest.raises(LimitExceededError, match="100 pixels"):
            slide.read_region((0, 0), 0, (11, 10))
        assert slide.read_region((0, 0), 0, (10, 10)).shape == (10, 10, 3)
        with pytest.raises(ValueError):
            slide.read_region((0, 0), 5, (4, 4))
    with pytest.raises(ValueError, match="plausible"):
        open_slide(path, mpp=0.0)


def test_alpha_composited_on_white() -> None:
    rgba = np.array([[[100, 50, 0, 0], [100, 50, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    assert _to_rgb(rgba).tolist() == [[[255, 255, 255], [100, 50, 0], [127, 127, 127]]]
    assert _to_rgb(np.array([[7]], dtype=np.uint8)).tolist() == [[[7, 7, 7]]]


def test_png_with_alpha_is_a_one_level_slide(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((20, 30, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:, :15, 3] = 255
    Image.fromarray(pixels).save(tmp_path / "p.png")
    with open_slide(tmp_path / "p.png", mpp=1.0) as slide:
        region = slide.read_region((0, 0), 0, (30, 20))
    assert region[0, 0].tolist() == [200, 0, 0] and region[0, 20].tolist() == [255, 255, 255]


def test_fingerprint_full_and_partial(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "bytes.bin"
    path.write_bytes(bytes(range(256)) * 10)
    full = slide_fingerprint(path)
    assert full == {"method": "sha256", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": 2560}
    partial = slide_fingerprint(path, full_hash_max_bytes=100, chunk=16)
    assert partial["method"] == "partial-sha256" and partial["sha256"] != full["sha256"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert slide_fingerprint(path, full_hash_max_bytes=100, chunk=16)["sha256"] != partial["sha256"]
