"""Training checkpoints without pickle: safetensors + JSON, a manifest, atomic publication, keep-last-k.

Layout of ``OUT/checkpoints/step-00000040/``::

    model.safetensors          trainable parameters (all of them for a full fine-tune)
    optimizer.json/.safetensors  optimizer state (per rank, ``optimizer-rank{r}``, when it is sharded)
    scheduler.json             LR scheduler state
    rng-rank{r}.json/.safetensors  Python, NumPy, torch CPU (and CUDA) generator states of each process
    trainer_state.json         global step, data position, loss history
    manifest.json              sha256 of every file, config, data-manifest hash, code version

Every file is written into ``.tmp-step-…`` first; the folder is renamed into place only when all files and
the manifest are complete, so a process killed mid-save leaves the previous checkpoint intact and loadable.
``OUT/checkpoints/latest`` names the newest complete checkpoint. With several processes the output folder
must be on a file system all of them share.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import breastgpt
from breastgpt.artifacts import sha256_file
from breastgpt.train.state_io import load_state, save_state

MANIFEST = "manifest.json"
LATEST = "latest"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not match this run."""


@dataclass
class Dist:
    """What the checkpoint code needs from the process group (an ``Accelerator`` provides all of it)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def code_version() -> dict[str, Any]:
    out: dict[str, Any] = {"breastgpt": breastgpt.__version__, "torch": torch.__version__}
    repo = Path(breastgpt.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        out["git_commit"] = head
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out




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
    tmp = root / f".tmp-{step_dir_name(step)}"
    if dist.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a killed save: never part of a published checkpoint
        tmp.mkdir(parents=True)
    dist.barrier()
    _write_rank_files(tmp, content, dist)
    dist.barrier()
    if dist.is_main:
        _write_main_files(tmp, content)
        write_manifest(tmp, content, step)
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_latest(root, final.name)
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
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {
        "format_version": FORMAT_VERSION, "step": step, "files": files, "config": content.config,
        "data_manifest_sha256": content.data_manifest_sha256, "code_version": code_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for p in folder.iterdir():
        _fsync_file(p)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, root / LATEST)


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
    """Check every file against the manifest; returns the manifest."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is listed in the manifest but missing; the checkpoint is damaged")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{folder}: {name} does not match its sha256 in the manifest; the file changed "
                                  "or is corrupt — resume from an earlier checkpoint")
    return manifest


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
    "CheckpointContent", "CheckpointError", "Dist", "code_version", "list_checkpoints", "load_model_state",
    "load_optimizer_state", "load_rng_state", "load_scheduler_state", "load_trainer_state", "prune",
    "resolve_checkpoint", "rng_state", "save_checkpoint", "set_rng_state", "verify_checkpoint",
]
