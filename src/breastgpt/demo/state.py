"""Per-stage manifests: a demo stage is skipped on a re-run only when its manifest verifies.

`OUT/stages/<stage>.json` holds the stage's input key (settings, upstream manifests, code version), the sha256
of each output file it vouches for, and the figures it reported. "Done" means the key is the same and every
listed file still has its hash — never that a file merely exists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from breastgpt.artifacts import atomic_write_json, sha256_file


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
    path = _manifest_path(out, stage)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("key") != key:
        return None
    for rel, digest in manifest.get("outputs", {}).items():
        file = Path(out) / rel
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return manifest.get("figures", {})


def save_done(out: Path, stage: str, key: str, outputs: list[Path], figures: dict[str, Any]) -> None:
    files = {str(Path(p).relative_to(out)): sha256_file(p) for p in sorted(outputs)}
    atomic_write_json(_manifest_path(out, stage), {"stage": stage, "key": key, "outputs": files,
                                                   "figures": figures})


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
