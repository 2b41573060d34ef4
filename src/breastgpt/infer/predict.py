"""Batched, resumable generation over corpus/bench records (`breastgpt predict`).

Output lines follow ms-swift's inference-result layout — the record's `messages`/`images`/`videos` plus
`response` (the model's answer) and `labels` (the reference answer) — with our `id` and generation parameters.
Lines are appended batch by batch and flushed to disk; a re-run skips ids already written, and a torn last line
left by a crash is discarded before appending.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breastgpt.corpus.records import Record, iter_jsonl
from breastgpt.infer.engine import Engine, GenerationParams
from breastgpt.infer.records import preparation, preprocessing_agreement, record_conversation
from breastgpt.model.configuration import slide_encoder_id


def completed_ids(out: Path) -> set[str]:
    """Ids already answered in `out`; a trailing partial line (crash mid-write) is cut off."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with out.open("r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    return {json.loads(line)["id"] for line in data.splitlines() if line.strip()}


def predict_records(engine: Engine, records_path: Path, out: Path, *, corpus_root: Path | None = None,
                    params: GenerationParams = GenerationParams(), batch_size: int = 4,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Answer every record not yet in `out`; returns counts (total, skipped, written) and how the records' media
    were normalised compared with the model's training corpus (`preprocessing`)."""
    root = corpus_root or records_path.parent
    agreement = preprocessing_agreement(engine, root)
    prepare = preparation(engine, agreement)
    records = [Record.from_dict(row) for row in iter_jsonl(records_path)]
    done = completed_ids(out)
    todo = [record for record in records if record.id not in done]
    slide_dim = getattr(engine.processor, "slide_feature_dim", None)
    encoder = slide_encoder_id(engine.model.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("a", encoding="utf-8") as handle:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            prepared = [record_conversation(record, root, slide_dim=slide_dim, slide_encoder=encoder, prepare=prepare)
                        for record in batch]
            results = engine.generate([p.conversation for p in prepared], params)
            for record, item, result in zip(batch, prepared, results):
                handle.write(json.dumps(_line(record, item.reference, result.text, result.finish_reason, params),
                                        ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            written += len(batch)
            if progress:
                progress(len(done) + written, len(records))
    return {"total": len(records), "skipped": len(done), "written": written, "preprocessing": agreement}


def _line(record: Record, reference: str, response: str, finish: str, params: GenerationParams) -> dict:
    swift = record.to_dict()
    return {"id": record.id, "messages": [m for m in swift["messages"] if m["role"] != "assistant"],
            "images": swift["images"], "videos": swift["videos"], "slides": swift["slides"],
            "response": response, "labels": reference, "finish_reason": finish,
            "generation": params.as_record(), "source": record.source, "task_family": record.task_family}
