"""Training checkpoints without pickle: safetensors + JSON, a manifest, atomic publication, keep-last-k.

Layout of ``OUT/checkpoints/step-00000040/``::

    model.safetensors          trainable parameters (all of them for a full fine-tune)
    optimizer.json/.safetensors  optimizer state (per rank, ``optimizer-rank{r}``, when it is sharded)
    scheduler.json             LR scheduler state
    rng-rank{r}.json/.safetensors  Python, NumPy, torch CPU (and CUDA) generator states of each process
    trainer_state.json         global step, data position, loss history
    manifest.json              sha256 of every file, config, data-manifest hash, code version (`artifacts.Manifest`)

Every process writes its files into the shared staging folder ``.step-….tmpdir`` (`artifacts.staging_dir`); the
main process renames it into place (`artifacts.publish_dir`) only when all files and the manifest are complete,
so a process killed mid-save leaves the previous checkpoint intact and loadable.
``OUT/checkpoints/latest`` names the newest complete checkpoint. With several processes the output folder
must be on a file system all of them share.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from breastgpt.artifacts import (
    CheckpointError,
    Manifest,
    ManifestError,
    atomic_write_text,
    publish_dir,
    shared_staging_path,
    staging_dir,
    verify_artifact,
)
from breastgpt.train.state_io import load_state, save_state

MANIFEST = "manifest.json"
LATEST = "latest"
FORMAT_VERSION = 1


@dataclass
class Dist:
    """What the checkpoint code needs from the process group (an ``Accelerator`` provides all of it)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# ---- RNG ---------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- save --------------------------------------------------------------------------------------------------


@dataclass
class CheckpointContent:
    model_state: dict[str, torch.Tensor] | None  # main process: the trainable tensors
    optimizer_state: Any  # per process when sharded, else main process only
    optimizer_sharded: bool
    scheduler_state: dict[str, Any] | None
    trainer_state: dict[str, Any]
    config: dict[str, Any]
    data_manifest_sha256: str


def save_checkpoint(root: Path, step: int, content: CheckpointContent, dist: Dist, keep_last: int) -> Path:
    """Write the checkpoint for ``step`` under ``root`` atomically; returns its final folder."""
    root = Path(root)
    final = root / step_dir_name(step)
    if dist.is_main:
        staging_dir(final, shared=True)  # a leftover of a killed save is cleared: never part of a checkpoint
    dist.barrier()
    tmp = shared_staging_path(final)
    _write_rank_files(tmp, content, dist)
    dist.barrier()
    if dist.is_main:
        _write_main_files(tmp, content)
        write_manifest(tmp, content, step)
        publish_dir(tmp, final)
        atomic_write_text(root / LATEST, final.name + "\n")
        prune(root, keep_last)
    dist.barrier()
    return final


def _write_rank_files(tmp: Path, content: CheckpointContent, dist: Dist) -> None:
    save_state(rng_state(), tmp, f"rng-rank{dist.rank}")
    if content.optimizer_sharded:
        save_state(content.optimizer_state, tmp, f"optimizer-rank{dist.rank}")


def _write_main_files(tmp: Path, content: CheckpointContent) -> None:
    model_state = {k: v.detach().cpu().contiguous() for k, v in (content.model_state or {}).items()}
    save_file(model_state, str(tmp / "model.safetensors"), metadata={"format": "pt", "subset": "trainable"})
    if not content.optimizer_sharded:
        save_state(content.optimizer_state, tmp, "optimizer")
    save_state(content.scheduler_state or {}, tmp, "scheduler")
    (tmp / "trainer_state.json").write_text(json.dumps(content.trainer_state, indent=1, sort_keys=True) + "\n")


def write_manifest(folder: Path, content: CheckpointContent, step: int) -> None:
    """The manifest as `artifacts.Manifest`; ``torch`` is recorded beside ``code_version`` because the optimizer
    and RNG states it holds are torch's."""
    Manifest.of_folder(folder, format_version=FORMAT_VERSION, step=step, config=content.config,
                       data_manifest_sha256=content.data_manifest_sha256,
                       torch=torch.__version__).write(folder / MANIFEST, indent=1)


def list_checkpoints(root: Path) -> list[Path]:
    """Published checkpoints (complete folders), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / MANIFEST).is_file())


def prune(root: Path, keep_last: int) -> None:
    if keep_last < 1:
        return
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old)


# ---- load --------------------------------------------------------------------------------------------------


def resolve_checkpoint(resume: str, output_dir: Path) -> Path | None:
    """``auto``: the newest complete checkpoint under OUT/checkpoints (None when there is none); else a folder."""
    if resume == "auto":
        root = Path(output_dir) / "checkpoints"
        latest = root / LATEST
        if latest.is_file():
            named = root / latest.read_text().strip()
            if (named / MANIFEST).is_file():
                return named
        found = list_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / MANIFEST).is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {MANIFEST}); pick a step-* folder that has one")
    return path


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint's manifest as a dict once every file it lists matches (`artifacts.verify_artifact`);
    raises `CheckpointError`, a `ManifestError`, otherwise."""
    try:
        manifest = verify_artifact(folder, hint="resume from an earlier checkpoint")
    except ManifestError as exc:
        raise CheckpointError(str(exc)) from exc
    return manifest.to_dict()


def load_model_state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def load_optimizer_state(folder: Path, rank: int, sharded: bool) -> Any:
    stem = f"optimizer-rank{rank}" if sharded else "optimizer"
    if not (folder / f"{stem}.json").is_file():
        raise CheckpointError(f"{folder}: no {stem}.json; was it saved with another number of processes?")
    return load_state(folder, stem)


def load_rng_state(folder: Path, rank: int) -> dict[str, Any] | None:
    if not (folder / f"rng-rank{rank}.json").is_file():
        return None
    return load_state(folder, f"rng-rank{rank}")


def load_scheduler_state(folder: Path) -> dict[str, Any]:
    return load_state(folder, "scheduler")


def load_trainer_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))


__all__ = [
    "CheckpointContent", "CheckpointError", "Dist", "list_checkpoints", "load_model_state",
    "load_optimizer_state", "load_rng_state", "load_scheduler_state", "load_trainer_state", "prune",
    "resolve_checkpoint", "rng_state", "save_checkpoint", "set_rng_state", "verify_checkpoint",
]
