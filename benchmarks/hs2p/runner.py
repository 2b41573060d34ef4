"""hs2p side of benchmarks/tiling.py. Runs inside hs2p's own environment (scripts/ensure_hs2p_env.sh), never
imports breastgpt, and answers one JSON request per stdin line with one JSON line on stdout, so the parent can
interleave hs2p rounds with its own in one run while this process stays warm.

Requests:
  {"op": "info"}                                     → hs2p version and the settings used
  {"op": "own"}                                      → hs2p's segmentation + coordinates + reading its own tiles
  {"op": "same", "coords": "/tmp/x.npy"}             → hs2p's reader over the given level-0 tile corners
  {"op": "hash", "coords": "/tmp/x.npy"}             → sha256 of every tile hs2p reads there, keyed "x,y"
Every timed answer carries tiles and seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import hs2p
    from hs2p.wsi.streaming.stream import iter_tile_arrays_from_result, iter_tile_records_from_result

    slide, spacing, tile_size, min_tissue, backend = (Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]),
                                                     float(sys.argv[4]), sys.argv[5])
    tiling = hs2p.TilingConfig(requested_spacing_um=spacing, requested_tile_size_px=tile_size, tolerance=0.05,
                               overlap=0.0, backend=backend)
    segmentation = hs2p.SegmentationConfig(method="hsv")
    masks = dataclasses.replace(hs2p.DEFAULT_MASK_SAMPLING, min_coverage={"tissue": min_tissue})
    spec = hs2p.SlideSpec(sample_id=slide.stem, image_path=slide)

    def plan():  # noqa: ANN202
        return hs2p.tile_slide(spec, tiling=tiling, segmentation=segmentation, masks=masks, num_workers=1)

    reference = plan()

    def with_coords(path: str):  # noqa: ANN202
        coords = np.load(path)
        tiles = dataclasses.replace(reference.tiles, x=coords[:, 0].astype(np.int64), y=coords[:, 1].astype(np.int64),
                                    tissue_fractions=np.ones(len(coords), dtype=np.float32), tile_index=None)
        return dataclasses.replace(reference, tiles=tiles)

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        started = time.perf_counter()
        if op == "info":
            answer = {"hs2p_version": hs2p.__version__, "backend": str(reference.backend),
                      "requested_backend": backend, "read_level": int(reference.tiles.read_level),
                      "read_tile_size_px": int(reference.tiles.read_tile_size_px),
                      "tile_size_lv0": int(reference.tiles.tile_size_lv0),
                      "requested_spacing_um": spacing, "requested_tile_size_px": tile_size, "tolerance": 0.05,
                      "overlap": 0.0, "segmentation": "hsv (hs2p defaults)", "min_tissue_fraction": min_tissue,
                      "own_tiles": int(len(reference.tiles.x)),
                      "own_coords": np.stack([reference.tiles.x, reference.tiles.y], axis=1).tolist()}
        elif op == "own":
            result = plan()
            planned = time.perf_counter() - started
            count = sum(1 for _ in iter_tile_arrays_from_result(result=result))
            answer = {"tiles": count, "seconds": time.perf_counter() - started, "plan_seconds": planned}
        elif op == "same":
            count = sum(1 for _ in iter_tile_arrays_from_result(result=with_coords(request["coords"])))
            answer = {"tiles": count, "seconds": time.perf_counter() - started}
        elif op == "hash":
            hashes = {f"{int(r.x)},{int(r.y)}": hashlib.sha256(np.ascontiguousarray(r.tile_arr[..., :3]).tobytes())
                      .hexdigest() for r in iter_tile_records_from_result(result=with_coords(request["coords"]))}
            answer = {"tiles": len(hashes), "hashes": hashes}
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
