"""Tiling throughput on one synthetic 40,000 × 40,000 pyramidal JPEG TIFF at 0.5 µm/px (512 px stored tiles),
tiles of 512 px at 0.5 µm/px, tissue fraction ≥ 0.25, in interleaved rounds against:

* hs2p (its own environment, scripts/ensure_hs2p_env.sh; version and settings recorded): its own segmentation and
  tiles end to end (`hs2p_own`), and its reader over exactly our tissue tiles (`hs2p_same_tiles`);
* the naive loop over the same tissue tiles: OpenSlide `read_region` per tile, `.convert("RGB")`;
* our own pipeline with every pixel read through OpenSlide (`stored_tiles=False`, the reading path before stored
  tiles were decoded directly).

"ours" is end to end: open, tissue mask, grid, read every tile (`iter_tile_batches`, batches of 32);
"ours_read" reads the same tissue tiles only, like the naive loop and `hs2p_same_tiles`. The pixel data
of every tile is hashed (sha256 per tile) for ours, ours through OpenSlide, the naive loop and hs2p's reader, and
the hash lists are compared. Threads of numeric libraries are pinned to 1 per process; the load average is
recorded each round and the result marked noisy when it exceeds the core count.

    python benchmarks/tiling.py [--slide /tmp/bench_40k.tif] [--size 40000] [--rounds 3] [--no-hs2p]

Writes benchmarks/results/tiling.json. The slide is generated once into /tmp, never into the repository.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_record, time_interleaved, write_result  # noqa: E402

from breastgpt.io.wsi import open_slide  # noqa: E402
from breastgpt.pathology.synthetic import SyntheticScene, write_pyramidal_tiff  # noqa: E402
from breastgpt.pathology.tiling import (SlideSource, TileGrid, TilingConfig, build_grid,  # noqa: E402
                                        iter_tile_batches)
from breastgpt.pathology.tissue import tissue_mask_for_slide  # noqa: E402

CONFIG = TilingConfig(target_mpp=0.5, tile_size=512, min_tissue_fraction=0.25)
BATCH = 32


def ensure_slide(path: Path, size: int) -> Path:
    if path.is_file():
        return path
    started = time.time()
    scene = SyntheticScene.random(size, size, mpp=0.5, seed=40, n_blobs=3)
    write_pyramidal_tiff(path, scene, downsamples=(1, 4, 16, 64), tile=512)
    print(f"generated {path} in {time.time() - started:.0f} s", flush=True)
    return path


def plan(path: Path, stored_tiles: bool = True) -> TileGrid:
    with open_slide(path, stored_tiles=stored_tiles) as slide:
        mask, _ = tissue_mask_for_slide(slide)
        return build_grid(slide, mask, CONFIG)


def ours(path: Path, workers: int, stored_tiles: bool = True) -> int:
    """End to end: tissue mask, grid, every tile read; returns the tile count."""
    grid = plan(path, stored_tiles)
    source = SlideSource(str(path), stored_tiles=stored_tiles)
    return sum(len(pixels) for _, pixels in iter_tile_batches(source, grid, batch_size=BATCH, workers=workers))


def ours_read(path: Path, grid: TileGrid, workers: int) -> int:
    """Reading only, over the given grid (like the naive loop and hs2p_same_tiles)."""
    source = SlideSource(str(path))
    return sum(len(pixels) for _, pixels in iter_tile_batches(source, grid, batch_size=BATCH, workers=workers))


def ours_hashes(path: Path, grid: TileGrid, stored_tiles: bool) -> list[str]:
    source = SlideSource(str(path), stored_tiles=stored_tiles)
    return [_digest(tile) for _, pixels in iter_tile_batches(source, grid, batch_size=BATCH, workers=0)
            for tile in pixels]


def naive(path: Path, coords: np.ndarray, hashes: list[str] | None = None) -> int:
    """The loop many pipelines start with, over the given tissue tiles: one OpenSlide read per tile."""
    import openslide

    size = (CONFIG.tile_size, CONFIG.tile_size)
    with openslide.OpenSlide(str(path)) as slide:
        for x, y in coords:
            tile = np.asarray(slide.read_region((int(x), int(y)), 0, size).convert("RGB"))
            if hashes is not None:
                hashes.append(_digest(tile))
    return len(coords)


def _digest(tile: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tile).tobytes()).hexdigest()


class Hs2p:
    """hs2p in its own environment, kept warm across rounds; one JSON request per line (benchmarks/hs2p/runner.py)."""

    def __init__(self, python: str, path: Path) -> None:
        args = [python, str(ROOT / "benchmarks" / "hs2p" / "runner.py"), str(path), str(CONFIG.target_mpp),
                str(CONFIG.tile_size), str(CONFIG.min_tissue_fraction), "tifffile"]
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env=os.environ | {"WANDB_MODE": "disabled"})

    def ask(self, request: dict) -> dict:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"hs2p runner exited with code {self._process.wait()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"hs2p runner: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=60)


def hs2p_python() -> str:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_hs2p_env.sh")], check=True, capture_output=True,
                          text=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slide", type=Path, default=Path("/tmp/bench_40k.tif"))
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-hs2p", action="store_true", help="skip hs2p (its environment cannot be built)")
    args = parser.parse_args()
    path = ensure_slide(args.slide, args.size)
    loads = [os.getloadavg()[0]]
    grid = plan(path)
    coords = grid.coords
    workdir = Path(tempfile.mkdtemp(prefix="bench_tiling_"))
    np.save(workdir / "coords.npy", coords)
    hs2p = None if args.no_hs2p else Hs2p(hs2p_python(), path)

    functions: dict[str, Callable[[], object]] = {
        "ours_workers_0": lambda: ours(path, 0),
        "ours_workers_2": lambda: ours(path, 2),
        "ours_read_workers_0": lambda: ours_read(path, grid, 0),
        "ours_read_workers_2": lambda: ours_read(path, grid, 2),
        "ours_openslide_workers_2": lambda: ours(path, 2, stored_tiles=False),
        "naive_same_tiles": lambda: naive(path, coords),
    }
    hs2p_answers: dict[str, list[dict]] = {"hs2p_own": [], "hs2p_same_tiles": []}
    if hs2p is not None:
        functions["hs2p_own"] = lambda: hs2p_answers["hs2p_own"].append(hs2p.ask({"op": "own"}))
        functions["hs2p_same_tiles"] = lambda: hs2p_answers["hs2p_same_tiles"].append(
            hs2p.ask({"op": "same", "coords": str(workdir / "coords.npy")}))

    def with_load(function: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            result = function()
            loads.append(os.getloadavg()[0])
            return result
        return run

    timings = time_interleaved({name: with_load(f) for name, f in functions.items()}, rounds=args.rounds)
    counts = {name: len(coords) for name in functions}
    if hs2p is not None:
        counts["hs2p_own"] = hs2p_answers["hs2p_own"][-1]["tiles"]
        counts["hs2p_same_tiles"] = hs2p_answers["hs2p_same_tiles"][-1]["tiles"]
    contenders = {}
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        contenders[name] = {"tiles": counts[name], "seconds": [round(s, 3) for s in seconds],
                            "median_seconds": round(median, 3), "tiles_per_s": round(counts[name] / median, 1)}
    if hs2p is not None:  # hs2p's own clock, inside its process (no request round trip)
        for name in ("hs2p_own", "hs2p_same_tiles"):
            inner = statistics.median(a["seconds"] for a in hs2p_answers[name][-args.rounds:])
            contenders[name]["tiles_per_s_inside_hs2p"] = round(counts[name] / inner, 1)

    keys = [f"{int(x)},{int(y)}" for x, y in coords]
    hashes = {"ours": ours_hashes(path, grid, True), "ours_openslide": ours_hashes(path, grid, False)}
    hashes["naive_same_tiles"] = []
    naive(path, coords, hashes["naive_same_tiles"])
    hs2p_info = None
    if hs2p is not None:
        # hs2p yields tiles grouped by its read blocks, not in grid order: matched by corner.
        by_corner = hs2p.ask({"op": "hash", "coords": str(workdir / "coords.npy")})["hashes"]
        hashes["hs2p_same_tiles"] = [by_corner.get(key, "missing") for key in keys]
        hs2p_info = hs2p.ask({"op": "info"})
        own = {tuple(c) for c in hs2p_info.pop("own_coords")}
        ours_set = {tuple(int(v) for v in c) for c in coords}
        hs2p_info["own_tiles_shared_with_ours"] = len(own & ours_set)
        hs2p.close()
    loads.append(os.getloadavg()[0])
    reference = hashes["ours_openslide"]
    identical = {name: values == reference for name, values in hashes.items()}

    rate = {name: c["tiles_per_s"] for name, c in contenders.items()}
    ratios = {
        "ours_workers_2_vs_naive_same_tiles": round(rate["ours_workers_2"] / rate["naive_same_tiles"], 2),
        "ours_read_workers_2_vs_naive_same_tiles": round(rate["ours_read_workers_2"] / rate["naive_same_tiles"], 2),
        "ours_read_workers_0_vs_naive_same_tiles": round(rate["ours_read_workers_0"] / rate["naive_same_tiles"], 2),
        "ours_workers_0_vs_naive_same_tiles": round(rate["ours_workers_0"] / rate["naive_same_tiles"], 2),
        "ours_workers_2_vs_ours_openslide_workers_2": round(rate["ours_workers_2"] / rate["ours_openslide_workers_2"],
                                                            2),
    }
    if hs2p is not None:
        ratios["ours_workers_2_vs_hs2p_own"] = round(rate["ours_workers_2"] / rate["hs2p_own"], 2)
        ratios["ours_workers_2_vs_hs2p_same_tiles"] = round(rate["ours_workers_2"] / rate["hs2p_same_tiles"], 2)
        ratios["ours_read_workers_2_vs_hs2p_same_tiles"] = round(rate["ours_read_workers_2"] / rate["hs2p_same_tiles"],
                                                                 2)
        ratios["ours_read_workers_0_vs_hs2p_same_tiles"] = round(rate["ours_read_workers_0"] / rate["hs2p_same_tiles"],
                                                                 2)
    with open_slide(path) as slide:
        slide_info = {"path": str(path), "dimensions": list(slide.dimensions), "mpp": list(slide.mpp or ()),
                      "levels": [round(d, 3) for d in slide.level_downsamples], "stored_tile": [512, 512],
                      "compression": "jpeg", "stored_tile_decoder": slide.describe()["stored_tile_decoder"]}
    payload = {
        "slide": slide_info,
        "tiling": {"target_mpp": CONFIG.target_mpp, "tile_size": CONFIG.tile_size,
                   "min_tissue_fraction": CONFIG.min_tissue_fraction, "batch_size": BATCH,
                   "tiles": int(len(coords)), "level": grid.level, "read_size": list(grid.read_size)},
        "rounds": args.rounds, "threads_per_process": 1,
        "timing": "wall clock per contender, end to end where named 'own'/'ours' (mask + grid + reads); "
                  "same_tiles contenders read the given tissue tiles only",
        "contenders": contenders, "ratios": ratios,
        "hs2p": hs2p_info,
        "identical_tiles": {"reference": "ours_openslide (every pixel through OpenSlide)", **identical,
                            "tiles_hashed": len(reference)},
        "load": {"samples": [round(v, 2) for v in loads], **load_record(loads)},
    }
    target = write_result("tiling", payload)
    print(json.dumps({k: payload[k] for k in ("contenders", "ratios", "identical_tiles", "load")}, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
