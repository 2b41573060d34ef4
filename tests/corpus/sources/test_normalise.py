"""normalise_media: crop/flip/scale keep boxes on their findings; MONOCHROME1 and VOI honoured; ultrasound keeps the
imaging region only; label maps keep exactly their label set; slides are referenced, not decoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastgpt.corpus.normalise import normalise_media
from breastgpt.corpus.sources import SourceSample
from tests.corpus.fixtures import discovered
from breastgpt.preprocessing import Preprocessing
from breastgpt.synth.cases import SynthConfig


def _png(out: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(out / rel))


def _box_pixels(image: np.ndarray, box: list[int]) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(v / 1000 * s) for v, s in zip(box, (w, h, w, h)))
    return image[y1:y2, x1:x2]


@pytest.mark.parametrize("photometric_side", [0, 1, 2, 3])
def test_mammogram_box_follows_the_finding(tmp_path, photometric_side):
    from breastgpt.synth.mammo_dicom import gen_vindr_mammo

    gen_vindr_mammo(tmp_path / "src", SynthConfig(patients=8, seed=photometric_side))
    samples = [s for s in discovered("vindr_mammo", tmp_path / "src") if s.labels.get("boxes")]
    assert samples
    for sample in samples:
        media = normalise_media(sample, tmp_path / "corpus", limits=Preprocessing(image_long_side=300))
        image = _png(tmp_path / "corpus", media.paths[0])
        assert max(image.shape) <= 300 and (media.width, media.height) == (image.shape[1], image.shape[0])
        inside = _box_pixels(image, media.boxes_norm1000[0]["box"])
        assert inside.max() > np.percentile(image[image > 0], 60)  # the bright finding is inside its box
        third = image.shape[1] // 3
        assert image[:, :third].mean() > image[:, -third:].mean()  # chest wall on the left after orientation
        assert media.meta["flipped"] == (sample.labels["laterality"] == "R")


def test_monochrome1_is_inverted_for_display(tmp_path):
    from breastgpt.synth.render import render_mammogram
    from breastgpt.synth.writers import write_dicom

    image, _ = render_mammogram(np.random.default_rng(0), 128, 96, "L", "B")
    outputs = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        path = write_dicom(tmp_path / f"{photometric}.dcm", image, key=photometric, photometric=photometric,
                           window=(1500, 3000))
        sample = SourceSample("t", photometric, "p", "s", "mammography", "image", [path], {})
        media = normalise_media(sample, tmp_path / "corpus")
        outputs[photometric] = _png(tmp_path / "corpus", media.paths[0])
        out = outputs[photometric]
        assert out[:, :5].mean() > 40 and out[:4, -4:].mean() < 15  # tissue bright at the chest wall, air dark
    assert outputs["MONOCHROME1"].shape == outputs["MONOCHROME2"].shape
    assert np.abs(outputs["MONOCHROME1"].astype(int) - outputs["MONOCHROME2"].astype(int)).max() <= 1


def test_ultrasound_keeps_imaging_region(tmp_path):
    from breastgpt.synth.ultrasound import gen_busi

    gen_busi(tmp_path / "src", SynthConfig(patients=6, seed=1))
    for sample in discovered("busi", tmp_path / "src"):
        media = normalise_media(sample, tmp_path / "corpus")
        assert media.meta["crop"] == [38, 19, 288, 225]  # the rendered region; burnt-in marks excluded
        for entry, norm in zip(sample.labels["boxes"], media.boxes_norm1000):
            x1, y1, x2, y2 = entry["box"]
            assert norm["box"] == [round((x1 - 38) / 250 * 1000), round((y1 - 19) / 206 * 1000),
                                   round((x2 - 38) / 250 * 1000), round((y2 - 19) / 206 * 1000)]
        assert len(media.mask_paths) == len(sample.masks)


def test_volume_label_map_keeps_its_label_set(tmp_path):
    from breastgpt.synth.writers import write_nifti

    rng = np.random.default_rng(0)
    labels = np.zeros((30, 50, 70), np.uint8)
    labels[5:12, 10:20, 10:25] = 1
    labels[20:26, 30:44, 40:60] = 2
    labels[14, 25, 33] = 7  # a single voxel label must not vanish into interpolated values
    image = write_nifti(tmp_path / "img.nii.gz", rng.normal(300, 20, labels.shape).astype(np.float32), (2.0, 1.0, 1.0))
    mask = write_nifti(tmp_path / "mask.nii.gz", labels, (2.0, 1.0, 1.0))
    sample = SourceSample("t", "v", "p", "s", "mri", "volume", [image], {}, masks=[mask])
    media = normalise_media(sample, tmp_path / "corpus", limits=Preprocessing(volume_inplane=35, volume_depth=9))
    assert (media.depth, media.height, media.width) == (8, 25, 35)
    stored = np.load(tmp_path / "corpus" / media.mask_paths[0])["array"]
    assert set(np.unique(stored)) <= {0, 1, 2, 7} and {1, 2} <= set(np.unique(stored))
    frames = np.load(tmp_path / "corpus" / media.paths[0])["array"]
    assert frames.dtype == np.uint8 and frames.shape == (8, 25, 35)
    assert [b["label"] for b in media.boxes_norm1000][:2] == ["label_1", "label_2"]
    assert all(len(b["box"]) == 6 for b in media.boxes_norm1000)


def test_ct_window_is_hounsfield_based(tmp_path):
    from breastgpt.synth.writers import write_nifti

    hu = np.full((4, 8, 8), -1000, np.int16)
    hu[:, :, 4:] = 40  # soft tissue at the soft-tissue window centre
    path = write_nifti(tmp_path / "ct.nii.gz", hu, (2.0, 1.0, 1.0))
    sample = SourceSample("t", "c", "p", "s", "ct", "volume", [path], {})
    media = normalise_media(sample, tmp_path / "corpus", limits=Preprocessing(ct_preset="ct-soft-tissue"))
    frames = np.load(tmp_path / "corpus" / media.paths[0])["array"]
    assert frames[:, :, 0].max() == 0 and abs(int(frames[0, 0, 6]) - 128) <= 2
    wide = normalise_media(sample, tmp_path / "corpus")  # the default: -1000..1000 HU
    frames = np.load(tmp_path / "corpus" / wide.paths[0])["array"]
    assert wide.meta["window"] == "ct-wide" and frames[:, :, 0].max() == 0 and int(frames[0, 0, 6]) == 133


def test_slide_is_referenced_with_its_feature_file(tmp_path):
    from breastgpt.synth.slides import gen_tcga_brca

    gen_tcga_brca(tmp_path / "src", SynthConfig(patients=1, seed=0))
    (sample,) = discovered("tcga_brca", tmp_path / "src")
    media = normalise_media(sample, tmp_path / "corpus")
    assert media.kind == "slide" and media.paths == [] and (media.width, media.height) == (768, 768)
    assert media.feature_path is None  # the build names it with a keyed id
    assert not (tmp_path / "corpus").exists()


def test_outputs_are_content_addressed(tmp_path):
    from breastgpt.synth.mammo_raster import gen_mias

    gen_mias(tmp_path / "src", SynthConfig(patients=1, seed=0))
    sample = next(iter(discovered("mias", tmp_path / "src")))
    first = normalise_media(sample, tmp_path / "corpus")
    second = normalise_media(sample, tmp_path / "corpus")
    assert first.paths == second.paths
    import hashlib

    data = (tmp_path / "corpus" / first.paths[0]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == first.sha256s[0] and first.paths[0].endswith(first.sha256s[0] + ".png")
    Image.open(io.BytesIO(data)).verify()


def test_png_writer_round_trips_grey_and_rgb():
    """The corpus's own PNG writer: PIL decodes exactly the pixels written, for grey and RGB of any size."""
    import io as _io

    import torch
    from torchvision.io import decode_png

    from breastgpt.corpus.normalise import _png

    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 7), (9, 1), (37, 53), (256, 199)]
    checked = 0
    for shape in shapes:
        for pixels in (rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, (*shape, 3), dtype=np.uint8)):
            data = _png(Image.fromarray(pixels))
            decoded = Image.open(_io.BytesIO(data))
            decoded.load()
            assert decoded.mode == ("L" if pixels.ndim == 2 else "RGB")
            assert np.array_equal(np.asarray(decoded), pixels)
            # and libpng (through torchvision), a second decoder
            tensor = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            assert np.array_equal(tensor.permute(1, 2, 0).numpy().reshape(pixels.shape), pixels)
            checked += 1
    assert checked == 2 * len(shapes)
    odd = Image.fromarray(rng.integers(0, 65535, (5, 6), dtype=np.uint16))  # other modes: PIL writes them
    assert np.array_equal(np.asarray(Image.open(_io.BytesIO(_png(odd)))), np.asarray(odd))
