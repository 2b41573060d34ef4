"""Corpus records as an ms-swift dataset (`swift sft` / `swift infer` with the `qwen3_vl` template).

Each row holds `messages`, `images`, `videos` and, for 2-D boxes, `objects`, in forms ms-swift reads:
* a volume (a windowed uint8 `.npz` in the corpus) becomes a list of PNG frames, ms-swift's "video as frame
  list", written once under `<corpus>/swift_frames/<volume file stem>/`;
* boxes go to `objects` as ms-swift's `norm1` (0–1); 3-D boxes (x1, y1, x2, y2, z1, z2) have no ms-swift form,
  so such rows keep the box in the answer text and carry no `objects`;
* rows with a slide are left out: ms-swift has no input for a slide's tile-feature file.
Media paths are relative to the corpus root (run ms-swift there, or set `ROOT_IMAGE_DIR` to it) or absolute.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breastgpt.artifacts import atomic_write_bytes, atomic_write_json
from breastgpt.corpus.records import Record, write_jsonl

FRAMES_DIR = "swift_frames"
SLIDE_ROWS = "rows with a slide: ms-swift has no input for a slide's tile-feature file (train them with breastgpt train)"
BOX_3D_ROWS = "rows with 3-D boxes: kept with the box in the answer text, without `objects` (ms-swift boxes are 2-D)"


@dataclass
class SwiftExport:
    written: int = 0
    left_out: Counter = field(default_factory=Counter)  # reason -> rows not written
    changed: Counter = field(default_factory=Counter)  # reason -> rows written in another form
    frames_written: int = 0


def volume_frames(corpus_root: Path, volume: str) -> tuple[list[str], int]:
    """Root-relative PNG frame paths of a corpus volume, written when not there yet; (paths, frames written)."""
    import numpy as np
    from PIL import Image

    from breastgpt.io.volume import read_corpus_volume

    folder = Path(FRAMES_DIR) / Path(volume).stem
    marker = corpus_root / folder / "frames.json"
    if marker.is_file():
        names = json.loads(marker.read_text())["frames"]
        if all((corpus_root / folder / name).is_file() for name in names):
            return [str(folder / name) for name in names], 0
    array = read_corpus_volume(corpus_root / volume)
    names = [f"{index:04d}.png" for index in range(array.shape[0])]
    for name, frame in zip(names, array):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG")
        atomic_write_bytes(corpus_root / folder / name, buffer.getvalue())
    atomic_write_json(marker, {"volume": volume, "frames": names})  # last: the folder is complete
    return [str(folder / name) for name in names], len(names)


def _objects(objects: dict[str, Any] | None) -> dict[str, Any] | None:
    """ms-swift's `objects` for 2-D boxes on our 0–1000 grid; None when there are none or any box is 3-D."""
    if not objects or not objects.get("bbox") or any(len(box) != 4 for box in objects["bbox"]):
        return None
    return {"ref": list(objects.get("ref", [])), "bbox": [[v / 1000 for v in box] for box in objects["bbox"]],
            "bbox_type": "norm1"}


def swift_row(record: Record, corpus_root: Path, summary: SwiftExport, absolute: bool) -> dict[str, Any] | None:
    """One ms-swift row, or None (counted in `summary.left_out`) when the record has no ms-swift form."""
    if record.slides:
        summary.left_out[SLIDE_ROWS] += 1
        return None
    place = (lambda rel: str(corpus_root.resolve() / rel)) if absolute else str
    videos = []
    for volume in record.videos:
        frames, written = volume_frames(corpus_root, volume)
        summary.frames_written += written
        videos.append([place(frame) for frame in frames])
    row: dict[str, Any] = {"messages": [dict(m) for m in record.messages],
                           "images": [place(path) for path in record.images], "videos": videos}
    objects = _objects(record.objects)
    if objects is not None:
        row["objects"] = objects
    elif record.objects and record.objects.get("bbox"):
        summary.changed[BOX_3D_ROWS] += 1
    return row


def export_swift(records: Iterable[Record], corpus_root: Path, out: Path, *, absolute: bool = False,
                 progress: Callable[[int], None] | None = None) -> SwiftExport:
    """Write `out` (JSONL, atomically) and the volume frames; the summary says what was left out or changed."""
    summary, rows = SwiftExport(), []
    for done, record in enumerate(records, 1):
        row = swift_row(record, Path(corpus_root), summary, absolute)
        if row is not None:
            rows.append(row)
        if progress is not None:
            progress(done)
    write_jsonl(Path(out), rows)
    summary.written = len(rows)
    return summary
