"""lmms-eval 0.7.3's OpenAI-compatible client (`--model openai`) runs a local task against `breastgpt serve`.

The server runs the scripted engine of tests/serve (its answer is "<images> <volumes> <slides> | <QUESTION>"), so
each expected answer proves that lmms-eval's images and question arrived: up to 12 images per request, more than
the 10 video frames lmms-eval sends by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.interop.conftest import run_tool
from tests.serve.fakes import API_KEY, ScriptedEngine, running_server

HERE = Path(__file__).resolve().parent
TASK = """task: breastgpt_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function breastgpt_local_utils.doc_to_visual
doc_to_text: !function breastgpt_local_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
process_results: !function breastgpt_local_utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def write_task(folder: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    docs = []
    for index, count in enumerate([1, 3, 12]):
        paths = []
        for image in range(count):
            path = folder / f"doc{index}_{image}.png"
            Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        question = f"finding {index}?"
        docs.append({"images": paths, "question": question, "answer": f"{count} 0 0 | {question.upper()}"})
    (folder / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "breastgpt_local.yaml").write_text(TASK.format(data=folder / "data.jsonl"))
    shutil.copy(HERE / "lmms_task" / "breastgpt_local_utils.py", folder)
    return docs


def test_lmms_eval_openai_client_runs_a_local_task_against_the_server(interop_bin: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    docs = write_task(task)
    with running_server(ScriptedEngine(), tmp_path) as url:
        run_tool([str(interop_bin / "lmms-eval"), "eval", "--model", "openai", "--model_args",
                  f"model=breastgpt,base_url={url}/v1,api_key={API_KEY},max_retries=1,num_concurrent=2",
                  "--tasks", "breastgpt_local", "--include_path", str(task), "--batch_size", "1",
                  "--output_path", str(tmp_path / "out"), "--log_samples"], tmp_path,
                 HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    (results_file,) = (tmp_path / "out").rglob("*_results.json")
    results = json.loads(results_file.read_text())["results"]["breastgpt_local"]
    assert results["exact_match,none"] == 1.0
    (samples_file,) = (tmp_path / "out").rglob("*_samples_breastgpt_local.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert sorted(s["target"] for s in samples) == sorted(d["answer"] for d in docs)
