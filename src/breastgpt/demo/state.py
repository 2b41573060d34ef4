"""Per-stage manifests: a demo stage is skipped on a re-run only when its manifest verifies.

`OUT/stages/<stage>.json` is an `artifacts.Manifest` rooted at OUT: the sha256 of each output file the stage
vouches for, plus the stage's input key (settings, upstream manifests, code version) and the figures it
reported. "Done" means the key is the same and the manifest verifies — never that a file merely exists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from breastgpt.artifacts import Manifest, ManifestError, sha256_file


def stage_key(*parts: Any) -> str:
    from breastgpt import __version__

    payload = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def source_digest(package: str) -> str:
    """sha256 over a package's Python sources: a stage whose output a generator's code decides (the synthetic
    pixels) is redone when that code changes, not only when the version number does."""
    import importlib

    root = Path(importlib.import_module(package).__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\x00" + path.read_bytes())
    return digest.hexdigest()


def _manifest_path(out: Path, stage: str) -> Path:
    return Path(out) / "stages" / f"{stage.replace(' ', '_')}.json"


def load_done(out: Path, stage: str, key: str) -> dict[str, Any] | None:
    """The stage's recorded figures when its manifest verifies, else None (the stage must run)."""
    try:
        manifest = Manifest.read(_manifest_path(out, stage))
    except ManifestError:
        return None
    if manifest.meta.get("key") != key or manifest.problems(out):
        return None
    return manifest.meta.get("figures", {})


def save_done(out: Path, stage: str, key: str, outputs: list[Path], figures: dict[str, Any]) -> None:
    names = [Path(p).relative_to(out).as_posix() for p in sorted(outputs)]
    Manifest.of_files(out, names, stamp=False, stage=stage, key=key, figures=figures).write(
        _manifest_path(out, stage))


def manifest_sha(out: Path, stage: str) -> str:
    """sha256 of a finished stage's manifest (an input of the stages after it)."""
    path = _manifest_path(out, stage)
    return sha256_file(path) if path.is_file() else ""


def forget_other_runs(run_dir: Path, key: str) -> None:
    """Keep `run_dir` only if it was started for this very stage key, else empty it.

    Training resumes from the checkpoints in its folder and the bench from its answer cache; a folder left by
    another model init or other settings would otherwise be resumed into this run (checkpoint tensors have the
    same shapes) or refused (a bench folder holds one model's answers).
    """
    import shutil

    marker = Path(run_dir) / "demo_stage_key.txt"
    if Path(run_dir).exists() and (not marker.is_file() or marker.read_text().strip() != key):
        shutil.rmtree(run_dir)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


__all__ = ["forget_other_runs", "load_done", "manifest_sha", "save_done", "source_digest", "stage_key"]
