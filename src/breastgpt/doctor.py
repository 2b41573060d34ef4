"""`breastgpt doctor`: what this installation can do, and what to fix when an essential piece is missing."""

from __future__ import annotations

import importlib
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

FIX = "run `make env` in the repository (or `pip install -c constraints.txt -e .`)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    essential: bool
    fix: str = ""


def _package(module: str, *, essential: bool, attribute: str = "__version__") -> Check:
    try:
        loaded = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken binary wheel raising anything
        return Check(module, False, f"not importable ({type(exc).__name__}: {exc})", essential, FIX)
    return Check(module, True, str(getattr(loaded, attribute, "installed")), essential)


def _distribution(name: str, purpose: str) -> Check:
    """Installed-or-not from package metadata, without importing (deepspeed's import is slow and chatty)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return Check(name, True, f"{version(name)} — {purpose}", False)
    except PackageNotFoundError:
        return Check(name, False, f"not installed — {purpose}", False, f"pip install {name}")


def _torchvision_ops() -> Check:
    """torchvision must match torch: a mismatched wheel imports but fails on its first operator."""
    try:
        import torch
        import torchvision

        torchvision.ops.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
    except Exception as exc:
        return Check("torchvision ops", False, f"{type(exc).__name__}: {exc}", True,
                     "install torch==2.14.1 with torchvision==0.29.1 together (see constraints.txt)")
    return Check("torchvision ops", True, "nms runs", True)


def _openslide() -> Check:
    try:
        import openslide

        return Check("openslide", True, f"python {openslide.__version__}, library {openslide.__library_version__}", False)
    except Exception as exc:
        return Check("openslide", False, f"unavailable ({exc}); tiffslide will be used", False,
                     "pip install openslide-bin openslide-python")


def _decoders() -> list[Check]:
    from breastgpt.io.dicom import decoder_status

    checks = []
    for uid, status in decoder_status().items():
        ok = bool(status["available"])
        checks.append(Check(f"DICOM {status['name']}", ok, ", ".join(status["available"]) or "no plugin", True,
                            "" if ok else "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"))
    return checks


def _gpu() -> Check:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("GPU", True, f"CUDA {torch.version.cuda}: {names}", False)
    return Check("GPU", False, "none (CPU only: training and inference run, slowly)", False)


def _disk(path: Path) -> Check:
    free_gb = shutil.disk_usage(path).free / 1024**3
    return Check("free disk", free_gb >= 5, f"{free_gb:.1f} GB free at {path}", False,
                 "" if free_gb >= 5 else "free some space: corpora, slides features and checkpoints are large")


def run_checks(path: Path = Path.cwd()) -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 11), platform.python_version(), True, "use Python 3.11 or newer")]
    for module in ("torch", "transformers", "peft", "accelerate", "pydicom", "SimpleITK", "nibabel", "h5py",
                   "tiffslide", "tifffile", "PIL", "fastapi", "openai", "typer"):
        checks.append(_package(module, essential=True))
    checks.append(_torchvision_ops())
    checks.append(_distribution("deepspeed", "multi-GPU ZeRO training (optional)"))
    checks.append(_openslide())
    checks.extend(_decoders())
    checks.append(_gpu())
    checks.append(_disk(path))
    return checks


def as_json(checks: list[Check]) -> dict:
    return {"ok": all(c.ok for c in checks if c.essential), "checks": [asdict(c) for c in checks]}
