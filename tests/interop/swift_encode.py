"""Run inside the interoperability environment (ms-swift installed): load dataset files with ms-swift's own
`load_dataset` and encode every row with the `qwen3_vl` template of a model folder; print a JSON summary per file.

    python swift_encode.py MODEL_DIR DATASET=WORKDIR [DATASET=WORKDIR ...]

Each dataset is loaded with WORKDIR as the current folder (relative media paths are read from there). One process
for all files: importing ms-swift is most of the cost.
"""

from __future__ import annotations

import json
import os
import sys


def main(model_dir: str, datasets: list[str]) -> None:
    from swift.dataset import load_dataset
    from swift.model import get_model_processor
    from swift.template import get_template

    _, processor = get_model_processor(model_dir, load_model=False, model_type="qwen3_vl")
    template = get_template(processor, template_type="qwen3_vl")
    template.set_mode("train")
    for spec in datasets:
        dataset_path, workdir = spec.rsplit("=", 1)
        os.chdir(workdir)
        print(f"SUMMARY {dataset_path} " + json.dumps(encode_all(template, load_dataset, dataset_path)))


def encode_all(template, load_dataset, dataset_path: str) -> dict:
    dataset, _ = load_dataset([dataset_path], strict=True, load_from_cache_file=False)
    summary = {"rows_loaded": len(dataset), "encoded": 0, "image_rows": 0, "video_rows": 0, "video_frames": 0,
               "rows_with_objects": 0, "media_tokens_match": 0, "failures": []}
    for index, row in enumerate(dataset):
        try:
            encoded = template.encode(row)
        except Exception as error:  # noqa: BLE001 — reported to the test, which fails on any
            summary["failures"].append([index, f"{type(error).__name__}: {error}"[:300]])
            continue
        summary["encoded"] += 1
        summary["image_rows"] += "image_grid_thw" in encoded
        summary["video_rows"] += "video_grid_thw" in encoded
        if "video_grid_thw" in encoded:
            summary["video_frames"] += int(encoded["video_grid_thw"][:, 0].sum()) * 2  # temporal patch of 2
        summary["rows_with_objects"] += bool(row.get("objects") and row["objects"].get("bbox"))
        summary["media_tokens_match"] += all(  # every <image>/<video> expanded to its grid's merged patches
            encoded["input_ids"].count(token_id) == int(encoded[grid].prod(dim=-1).sum()) // 4
            for token_id, grid in ((template.image_token_id, "image_grid_thw"), (template.video_token_id,
                                                                                 "video_grid_thw"))
            if grid in encoded)
    return summary


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
