"""`ask` on raw files of every kind, determinism, and the explanation of selected tiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from breastgpt.cli import app
from breastgpt.infer.ask import AskInputs, build_conversation
from breastgpt.infer.engine import Conversation, Engine, GenerationParams
from breastgpt.infer.inputs import load_image, load_volume
from tests.io.dicom_factory import write_grey_dicom

runner = CliRunner()


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> Engine:
    return Engine.from_pretrained(tiny_checkpoint, device="cpu")


def ask(checkpoint: Path, *args: str) -> str:
    result = runner.invoke(app, ["ask", "--model", str(checkpoint), "--max-new-tokens", "6", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_ask_on_a_synthetic_dicom_mammogram(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mammogram = write_grey_dicom(tmp_path / "mg.dcm", rng.integers(0, 4096, (256, 208)), bits_stored=12,
                                 photometric="MONOCHROME1", WindowCenter=2048, WindowWidth=4096)
    first = ask(tiny_checkpoint, "--image", str(mammogram), "--stage", "screening", "What is the BI-RADS category?")
    second = ask(tiny_checkpoint, "--image", str(mammogram), "--stage", "screening", "What is the BI-RADS category?")
    assert first == second and first.strip()  # greedy: the same request gives the same answer


@pytest.mark.parametrize("relative", ["ultrasound/busi/benign_1.png", "ct/pydicom_CT_small.dcm"])
def test_ask_on_real_images(tiny_checkpoint: Path, realdata: Path, relative: str) -> None:
    assert ask(tiny_checkpoint, "--image", str(realdata / relative), "Describe the image.")


@pytest.mark.parametrize("relative", ["ct/totalseg_example_ct_dicom", "ct/totalseg_example_ct_sm.nii.gz",
                                      "mri/breast1_image.nrrd"])
def test_ask_on_real_volumes(tiny_checkpoint: Path, realdata: Path, relative: str) -> None:
    assert ask(tiny_checkpoint, "--volume", str(realdata / relative), "Any finding?")


def test_ask_on_a_real_slide_with_explanation(tiny_checkpoint: Path, realdata: Path, tmp_path: Path) -> None:
    out = tmp_path / "explain"
    answer = ask(tiny_checkpoint, "--slide", str(realdata / "wsi" / "CMU-1-Small-Region.svs"), "--encoder",
                 "tiny-random", "--explain", str(out), "--stage", "treatment planning", "Histologic type?")
    assert answer
    selection = json.loads((out / "selection.json").read_text())
    tiles = json.loads((out / "selected_tiles.json").read_text())["tile_indices"]
    assert len(selection["slides"]) == 1 and len(tiles) == len(selection["slides"][0]["rows"])
    geojson = json.loads((out / "selected_tiles.geojson").read_text())
    assert geojson["type"] == "FeatureCollection" and len(geojson["features"]) == len(tiles)


def test_ask_on_the_jpeg2000_slide_with_supplied_mpp(tiny_checkpoint: Path, realdata: Path) -> None:
    slide = str(realdata / "wsi" / "tcga-cr-7395-01a-01-ts1.svs")
    refused = runner.invoke(app, ["ask", "--model", str(tiny_checkpoint), "--slide", slide, "--encoder",
                                  "tiny-random", "?"])
    assert refused.exit_code == 2 and "mpp" in refused.output.lower()  # the file declares no µm/px
    assert ask(tiny_checkpoint, "--slide", slide, "--encoder", "tiny-random", "--mpp", "0.25", "Histologic type?")


def test_explanation_matches_the_kept_token_count(engine: Engine, realdata: Path) -> None:
    from breastgpt.infer.explain import selected_indices

    image = load_image(realdata / "ultrasound" / "busi" / "malignant_1.png")
    frames, preset = load_volume(realdata / "mri" / "breast1_image.nrrd")
    assert preset == "mri-percentile" and frames.shape[0] % 2 == 0
    conversation = Conversation([{"role": "user", "content": [{"type": "image", "image": image},
                                                              {"type": "volume", "volume": frames},
                                                              {"type": "text", "text": "?"}]}], stage="diagnosis")
    chosen = selected_indices(engine, conversation)
    assert len(chosen["images"]) == 1 and len(chosen["images"][0]["rows"]) <= engine.model.config.selection.image_budget
    frame_groups = frames.shape[0] // 2  # temporal patch 2
    assert len(chosen["volume_frames"]) == frame_groups
    kept = sum(len(block["rows"]) for block in chosen["volume_frames"])
    assert frame_groups <= kept <= engine.model.config.selection.volume_budget


def test_batched_generation_equals_one_at_a_time(engine: Engine, realdata: Path) -> None:
    inputs = [AskInputs(images=[realdata / "ultrasound" / "busi" / f"{name}.png"]) for name in ("benign_1", "normal_2")]
    conversations = [build_conversation(engine, "Lesion?", item, "diagnosis")[0] for item in inputs]
    params = GenerationParams(max_new_tokens=5)
    together = [g.text for g in engine.generate(conversations, params)]
    alone = [engine.generate([c], params)[0].text for c in conversations]
    assert together == alone


def test_stream_equals_generate(engine: Engine) -> None:
    conversation = Conversation([{"role": "user", "content": "hello"}], stage="screening")
    params = GenerationParams(max_new_tokens=8)
    assert "".join(engine.stream(conversation, params)) == engine.generate([conversation], params)[0].text


def test_a_stream_cancelled_while_waiting_for_the_engine_never_runs_the_model(engine: Engine,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    calls = []
    def generate(*args: object, streamer: Any, **kwargs: object) -> None:
        calls.append(1)
        streamer.end()

    monkeypatch.setattr(engine.model, "generate", generate)
    cancel = threading.Event()
    cancel.set()
    conversation = Conversation([{"role": "user", "content": "hello"}], stage="screening")
    assert list(engine.stream(conversation, GenerationParams(max_new_tokens=8), cancel=cancel)) == []
    assert calls == []


def test_bad_input_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "note.txt"
    bogus.write_text("not an image")
    result = runner.invoke(app, ["ask", "--model", str(tiny_checkpoint), "--image", str(bogus), "?"])
    assert result.exit_code == 2 and "unrecognised file type" in result.output
