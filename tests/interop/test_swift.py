"""The ms-swift round trip with ms-swift itself (4.6.0, in the interoperability environment): our export loads
with ms-swift's `load_dataset` and every row encodes with the `qwen3_vl` template; `swift sft` trains two steps on
it; a real `swift infer` result file comes back through `breastgpt bench import-swift`, matching every item."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastgpt.bench.items import load_responses
from breastgpt.bench.cli import app as bench_app
from breastgpt.corpus.cli import app as corpus_app
from breastgpt.model.cli import app as model_app
from tests.corpus.swift_corpus import write_swift_corpus
from tests.interop.conftest import Tool
from tests.interop.tiny_qwen import save_qwen_id_checkpoint

HERE = Path(__file__).resolve().parent
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swift")
    records = write_swift_corpus(root / "corpus")
    runs = {"relative": ["--out", str(root / "relative.jsonl")],
            "absolute": ["--out", str(root / "absolute.jsonl"), "--absolute"],
            "bench": ["--out", str(root / "bench.jsonl"), "--absolute", "--split", "bench"]}
    for args in runs.values():
        result = runner.invoke(corpus_app, ["export", str(root / "corpus"), *args])
        assert result.exit_code == 0, result.output
    save_qwen_id_checkpoint(root / "checkpoint")
    result = runner.invoke(model_app, ["export", str(root / "checkpoint"), "--format", "qwen3-vl",
                                 "--out", str(root / "qwen3-vl")])
    assert result.exit_code == 0, result.output
    assert len(records) > 60
    return {"root": root, "corpus": root / "corpus", "model": root / "qwen3-vl"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def swift(interop_bin: Path, exported: dict) -> Iterator[dict[str, Tool]]:
    """The module's three ms-swift runs, started together (each is mostly ms-swift importing its libraries on one
    core): the load-and-encode check of both exports in one process, two steps of `swift sft`, and `swift infer` on
    the bench export."""
    root = exported["root"]
    specs = {"relative": exported["corpus"], "absolute": root}
    common = ["--model", str(exported["model"]), "--model_type", "qwen3_vl", "--template", "qwen3_vl",
              "--torch_dtype", "float32"]
    tools = {
        "encode": Tool([str(interop_bin / "python"), str(HERE / "swift_encode.py"), str(exported["model"]),
                        *(f"{root / f'{name}.jsonl'}={cwd}" for name, cwd in specs.items())], root),
        "sft": Tool([str(interop_bin / "swift"), "sft", *common, "--dataset", str(root / "relative.jsonl"),
                     "--tuner_type", "full", "--max_steps", "2", "--per_device_train_batch_size", "1",
                     "--gradient_accumulation_steps", "1", "--output_dir", str(root / "sft"), "--save_strategy",
                     "no", "--report_to", "none", "--dataloader_num_workers", "0", "--logging_steps", "1",
                     "--split_dataset_ratio", "0", "--eval_strategy", "no",
                     "--check_model", "false"], exported["corpus"]),  # offline: no model-hub freshness check
        "infer": Tool([str(interop_bin / "swift"), "infer", *common, "--infer_backend", "transformers",
                       "--val_dataset", str(root / "bench.jsonl"), "--result_path", str(root / "result.jsonl"),
                       "--max_new_tokens", "3"], root),
    }
    try:
        yield tools
    finally:
        for tool in tools.values():
            tool.stop()


@pytest.fixture(scope="module")
def encoded(swift: dict[str, Tool]) -> dict[str, dict]:
    """ms-swift's load-and-encode summary of both exports; relative paths are read from the corpus folder, absolute
    ones from anywhere."""
    result = swift["encode"].result()
    summaries = {}
    for line in result.stdout.splitlines():
        if line.startswith("SUMMARY "):
            path, summary = line.removeprefix("SUMMARY ").split(" ", 1)
            summaries[Path(path).stem] = json.loads(summary)
    assert set(summaries) == {"relative", "absolute"}, result.stdout[-2000:]
    return summaries


@pytest.mark.parametrize("paths", ["relative", "absolute"])
def test_every_exported_row_loads_and_encodes_with_the_qwen3_vl_template(encoded: dict, exported: dict,
                                                                         paths: str) -> None:
    dataset = exported["root"] / f"{paths}.jsonl"
    summary = encoded[paths]
    written = rows(dataset)
    assert summary["failures"] == []
    assert summary["rows_loaded"] == summary["encoded"] == summary["media_tokens_match"] == len(written)
    assert summary["image_rows"] == sum(1 for r in written if r["images"])
    assert summary["video_rows"] == sum(1 for r in written if r["videos"]) > 0
    assert summary["video_frames"] == sum(len(v) for r in written for v in r["videos"])
    assert summary["rows_with_objects"] == sum(1 for r in written if "objects" in r) > 0


def test_swift_sft_trains_two_steps_on_the_export(swift: dict[str, Tool], exported: dict) -> None:
    swift["sft"].result()
    out = exported["root"] / "sft"
    (log,) = out.glob("*/logging.jsonl")
    steps = [entry for entry in map(json.loads, log.read_text().splitlines()) if "loss" in entry]
    assert [s["global_step/max_steps"] for s in steps] == ["1/2", "2/2"]
    assert all(math.isfinite(float(s["loss"])) for s in steps)


def test_a_swift_infer_result_file_imports_matching_every_item(swift: dict[str, Tool], exported: dict) -> None:
    swift["infer"].result()
    root = exported["root"]
    results = rows(root / "result.jsonl")
    assert len(results) == len(rows(root / "bench.jsonl")) > 0
    assert all("id" not in line for line in results)  # ms-swift drops it: lines are matched by content
    bench = [r for r in rows(exported["corpus"] / "records.jsonl") if r["split"] == "bench"]
    (root / "bench_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bench))
    imported = runner.invoke(bench_app, ["import-swift", str(root / "result.jsonl"), "--items",
                                   str(root / "bench_items.jsonl"), "--out", str(root / "run"), "--model", "tiny"])
    assert imported.exit_code == 0, imported.output
    responses = load_responses(root / "run" / "responses.jsonl")
    swift_able = [r for r in bench if not r["slides"]]
    assert len({r.item_id for r in responses}) == len(responses) == len(swift_able)
    assert {r.item_id for r in responses} == {r["id"] for r in swift_able}
    assert [r.response for r in responses] == [line["response"] for line in results]
