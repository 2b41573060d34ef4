"""One preprocessing: a raw DICOM through `ask` reaches the model as exactly the tensor training built from that
DICOM's corpus record, with the settings carried corpus → checkpoint → inference; a checkpoint without settings
says so and uses the documented defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.corpus.build import BuildConfig, SourceSpec, build_corpus
from breastgpt.corpus.sources.base import SourceSample
from breastgpt.infer.ask import AskInputs, build_conversation
from breastgpt.infer.engine import Engine
from breastgpt.preprocessing import PREPROCESSING_FILE, Preprocessing, read_preprocessing
from breastgpt.train.config import DataConfig
from breastgpt.train.data import MediaLoader, collate, encode_sample, read_samples, resolve_roots
from tests.clitext import words
from tests.io.dicom_factory import write_grey_dicom

SECRET_ENV = "PARITY_TEST_SECRET"
# Not the defaults, so a setting lost on the way from corpus to inference shows up as a different tensor.
SETTINGS = Preprocessing(image_long_side=160, volume_inplane=48, volume_depth=6, ct_preset="ct-lung")
CT_LABELS = {"ct_abnormalities": {"lung_nodule": True, "emphysema": False, "pleural_effusion": True,
                                  "atelectasis": False, "consolidation": False, "lung_opacity": True}}


def write_marked_mammogram(path: Path) -> Path:
    """A 12-bit MONOCHROME1 right CC (chest wall on the right) with a burned-in "RCC" label in the air, as films
    carry them, in the corner away from the breast."""
    from breastgpt.synth.render import render_mammogram

    image, _ = render_mammogram(np.random.default_rng(3), 420, 300, "R", "C", abnormality="mass")
    label = Image.new("L", (300, 420), 0)
    ImageDraw.Draw(label).text((12, 10), "RCC", fill=255, font_size=36)
    image = np.where(np.asarray(label) > 0, 4000.0, image)
    stored = 4095 - np.clip(np.round(image), 0, 4095).astype(np.uint16)  # MONOCHROME1: high values display dark
    return write_grey_dicom(path, stored, bits_stored=12, photometric="MONOCHROME1", WindowCenter=2048,
                            WindowWidth=4096)


class RawFilesAdapter:
    """One mammogram DICOM and one real CT DICOM series, as an adapter yields them."""

    name = "raw"
    modality = "mammography"

    def __init__(self, mammogram: Path, ct_series: Path) -> None:
        self.mammogram, self.ct_series = mammogram, ct_series

    def discover(self, root: Path) -> Iterator[SourceSample]:
        yield SourceSample("raw", "mg1", "patient-a", "study-a", "mammography", "image", [self.mammogram],
                           {"laterality": "R", "view": "CC", "density": "C", "birads": 4, "abnormality": "mass"})
        yield SourceSample("raw", "ct1", "patient-b", "study-b", "ct", "volume", [self.ct_series], CT_LABELS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, realdata: Path) -> dict[str, Any]:
    """A corpus built from the raw files with SETTINGS, and a tiny model trained on it for one step."""
    from breastgpt.train.config import (CheckpointConfig, LoggingConfig, ModelConfig, OptimConfig, ScheduleConfig,
                                        TrainConfig)
    from breastgpt.train.loop import train
    from tests.infer.checkpoint import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("parity")
    (root / "raw").mkdir()
    mammogram = write_marked_mammogram(root / "raw" / "mg.dcm")
    ct_series = realdata / "ct" / "totalseg_example_ct_dicom"
    monkey = pytest.MonkeyPatch()
    monkey.setenv(SECRET_ENV, "parity-secret-0123456789abcdef")
    try:
        config = BuildConfig(out=root / "corpus", sources=(SourceSpec("raw", root / "raw"),), secret_env=SECRET_ENV,
                             limits=SETTINGS)
        summary = build_corpus(config, adapters={"raw": RawFilesAdapter(mammogram, ct_series)})
    finally:
        monkey.undo()
    assert summary.discovered == 2 and summary.quarantined == 0 and summary.records > 0
    init = save_tiny_checkpoint(root / "init")
    result = train(TrainConfig(
        name="parity", seed=0, output_dir=str(root / "run"),
        data=DataConfig(train=str(root / "corpus" / "records.jsonl"), max_length=4096),
        model=ModelConfig(path=str(init)), optim=OptimConfig(lr=1e-3, weight_decay=0.0),
        schedule=ScheduleConfig(epochs=0, max_steps=1, scheduler="constant", warmup_ratio=0.0, micro_batch_size=2),
        checkpoint=CheckpointConfig(every_steps=0, keep_last=1),
        logging=LoggingConfig(tensorboard=False, progress=False)))
    assert result.final_dir is not None
    return {"corpus": root / "corpus", "final": result.final_dir, "mammogram": mammogram, "ct": ct_series,
            "init": init}


def training_tensors(corpus: Path, processor: Any, kind: str) -> dict[str, torch.Tensor]:
    """The batch training builds from the corpus record of the given media kind (`TrainDataset` + `collate`)."""
    data = DataConfig(train=str(corpus / "records.jsonl"))
    samples = [s for s in read_samples(data.train, "records") if [k for k, _ in s.media] == [kind]]
    assert samples, f"no corpus record with one {kind}"
    encoded = encode_sample(samples[0], processor, MediaLoader(*resolve_roots(data))) | {"sample_id": samples[0].id}
    return collate([encoded], processor)


def ask_tensors(engine: Engine, inputs: AskInputs) -> dict[str, torch.Tensor]:
    """What `ask` gives the model for raw files (`build_conversation`, then the engine's own batching)."""
    conversation, _ = build_conversation(engine, "Describe the case.", inputs, "screening")
    return engine._inputs([conversation])


def test_training_carries_the_corpus_settings_into_the_checkpoint(trained: dict[str, Any]) -> None:
    assert read_preprocessing(trained["corpus"]) == SETTINGS
    assert read_preprocessing(trained["final"]) == SETTINGS
    manifest = json.loads((trained["final"] / "manifest.json").read_text())
    assert PREPROCESSING_FILE in manifest["files"]
    engine = Engine.from_pretrained(trained["final"], device="cpu")
    assert engine.preprocessing == SETTINGS and engine.preprocessing_recorded


def test_a_raw_dicom_mammogram_through_ask_is_the_training_tensor(trained: dict[str, Any]) -> None:
    engine = Engine.from_pretrained(trained["final"], device="cpu")
    train_side = training_tensors(trained["corpus"], engine.processor, "image")
    ask_side = ask_tensors(engine, AskInputs(images=[trained["mammogram"]]))
    assert train_side["pixel_values"].numel() > 0
    assert torch.equal(ask_side["pixel_values"], train_side["pixel_values"])
    assert torch.equal(ask_side["image_grid_thw"], train_side["image_grid_thw"])
    # the raw film is 420 x 300: the model saw it cropped and limited to the corpus's 160 px
    record = [s for s in read_samples(trained["corpus"] / "records.jsonl", "records") if s.media[0][0] == "image"][0]
    assert max(Image.open(trained["corpus"] / record.media[0][1]).size) == 160


def test_a_raw_dicom_ct_series_through_ask_is_the_training_tensor(trained: dict[str, Any]) -> None:
    engine = Engine.from_pretrained(trained["final"], device="cpu")
    train_side = training_tensors(trained["corpus"], engine.processor, "volume")
    ask_side = ask_tensors(engine, AskInputs(volume=trained["ct"]))
    assert train_side["pixel_values_videos"].numel() > 0
    assert torch.equal(ask_side["pixel_values_videos"], train_side["pixel_values_videos"])
    assert torch.equal(ask_side["video_grid_thw"], train_side["video_grid_thw"])
    # the checkpoint's window (ct-lung), not the documented default (ct-wide), made these frames
    default = ask_tensors(Engine(engine.model, engine.processor), AskInputs(volume=trained["ct"]))
    assert not torch.equal(default["pixel_values_videos"], train_side["pixel_values_videos"])


def test_serve_decodes_a_raw_dicom_as_training_did(trained: dict[str, Any], tmp_path: Path) -> None:
    import base64

    from breastgpt.serve.config import ServeConfig
    from breastgpt.serve.media import MediaResolver
    from breastgpt.serve.schemas import ImagePart

    engine = Engine.from_pretrained(trained["final"], device="cpu")
    url = "data:application/dicom;base64," + base64.b64encode(trained["mammogram"].read_bytes()).decode()
    resolver = MediaResolver(ServeConfig(model_dir=trained["final"], api_keys=("k" * 24,)), tmp_path,
                             preprocessing=engine.preprocessing)
    served = resolver.part(ImagePart(type="image_url", image_url={"url": url}))["image"]
    record = [s for s in read_samples(trained["corpus"] / "records.jsonl", "records") if s.media[0][0] == "image"][0]
    stored = np.asarray(Image.open(trained["corpus"] / record.media[0][1]))
    assert np.array_equal(served, np.repeat(stored[..., None], 3, axis=-1))


def test_a_checkpoint_without_settings_says_so_and_uses_the_defaults(trained: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(trained["final"], bare)
    (bare / PREPROCESSING_FILE).unlink()
    engine = Engine.from_pretrained(bare, device="cpu")
    assert engine.preprocessing == Preprocessing() and not engine.preprocessing_recorded
    default = ask_tensors(engine, AskInputs(volume=trained["ct"]))
    recorded = ask_tensors(Engine.from_pretrained(trained["final"], device="cpu"), AskInputs(volume=trained["ct"]))
    assert not torch.equal(default["pixel_values_videos"], recorded["pixel_values_videos"])
    result = CliRunner().invoke(app, ["ask", "--model", str(bare), "--max-new-tokens", "2", "--volume",
                                      str(trained["ct"]), "Any finding?"])
    assert result.exit_code == 0, result.output
    assert "records no preprocessing" in words(result.stderr) and "ct-wide" in words(result.stderr)
    quiet = CliRunner().invoke(app, ["ask", "--model", str(trained["final"]), "--max-new-tokens", "2", "--volume",
                                     str(trained["ct"]), "Any finding?"])
    assert quiet.exit_code == 0 and "records no preprocessing" not in words(quiet.stderr)
    assert "ct-lung" in words(quiet.stderr)


def test_corpus_media_sent_by_bench_run_reach_a_server_unchanged(trained: dict[str, Any], tmp_path: Path) -> None:
    """`bench run` against `breastgpt serve` sends corpus PNGs and windowed volumes (`identity`): the server's
    preprocessing leaves them as the local path reads them."""
    from breastgpt.bench.clients import MediaEncoder
    from breastgpt.serve.config import ServeConfig
    from breastgpt.serve.media import MediaResolver
    from breastgpt.serve.schemas import ImagePart, VolumePart

    engine = Engine.from_pretrained(trained["final"], device="cpu")
    samples = read_samples(trained["corpus"] / "records.jsonl", "records")
    media = {kind: rel for s in samples for kind, rel in s.media}
    assert set(media) == {"image", "volume"}
    loader = MediaLoader(trained["corpus"], trained["corpus"])
    encoder = MediaEncoder(trained["corpus"], breastgpt_server=True)
    resolver = MediaResolver(ServeConfig(model_dir=trained["final"], api_keys=("k" * 24,)), tmp_path,
                             preprocessing=engine.preprocessing)
    image_part = ImagePart.model_validate(encoder.parts("image", media["image"])[0])
    assert np.array_equal(resolver.part(image_part)["image"], loader.part("image", media["image"])["image"])
    volume_part = VolumePart.model_validate(encoder.parts("volume", media["volume"])[0])
    assert np.array_equal(resolver.part(volume_part)["volume"], loader.part("volume", media["volume"])["volume"])


def test_ask_tiles_a_slide_with_the_checkpoints_encoder(tiny_checkpoint: Path, realdata: Path) -> None:
    result = CliRunner().invoke(app, ["ask", "--model", str(tiny_checkpoint), "--max-new-tokens", "2", "--slide",
                                      str(realdata / "wsi" / "CMU-1-Small-Region.svs"), "Histologic type?"])
    assert result.exit_code == 0, result.output
    assert "with tiny-random" in words(result.stderr)  # the checkpoint's slide_config.encoder_id


def test_the_encoder_objective_reads_the_built_corpus_as_it_is(trained: dict[str, Any], tmp_path: Path) -> None:
    """objective=encoders on a `corpus build` output as it is (every split and question type in records.jsonl, a real
    CT series among the media). Its training split is one patient, so every closed template has a single answer:
    nothing for a head to tell apart, which the run says at start instead of training on a loss of zero."""
    from breastgpt.config import ConfigError
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.train.config import ModelConfig, ScheduleConfig, TrainConfig
    from breastgpt.train.data import of_split
    from breastgpt.train.encoder_objective import encoder_task
    from breastgpt.train.loop import train

    corpus = trained["corpus"]
    rows = list(iter_jsonl(corpus / "records.jsonl"))
    task = encoder_task(of_split(rows, "train", "records.jsonl"))
    closed = [r for r in rows if r["split"] == "train" and "options" in (r.get("label") or {}) and r["media"]]
    assert closed and task.records == 0 and task.skipped["template with one answer"] == len(closed)
    assert task.skipped["open question"] > 0
    config = TrainConfig(name="encoders", objective="encoders", output_dir=str(tmp_path / "run"),
                         data=DataConfig(train=str(corpus / "records.jsonl")),
                         model=ModelConfig(path=str(trained["init"]), trainable="encoders"),
                         schedule=ScheduleConfig(epochs=0, max_steps=2))
    with pytest.raises(ConfigError, match="nothing to learn in data.train: no closed single-study record of a "
                                          "template with two or more answers"):
        train(config)
