"""Pickle-free storage of nested training state (optimizer, scheduler, RNG): tensors + a JSON skeleton.

``flatten_state`` walks dicts/lists/tuples; every tensor is replaced by ``{"__tensor__": key}`` and stored
under that key in a safetensors file, everything else must be a JSON scalar. Tuples and non-string dict
keys are tagged so the structure comes back exactly. Anything else (a function, a custom object) is an
error naming its place, because silently dropping it would make resume inexact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

_SCALARS = (str, int, float, bool, type(None))


def flatten_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    return _flatten(obj, "s", tensors), tensors


def _flatten(obj: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, (torch.Tensor, np.ndarray)) and where in tensors:
        raise ValueError(f"training state: two tensors map to the name {where}; rename the keys")
    if isinstance(obj, torch.Tensor):
        tensors[where] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": where}
    if isinstance(obj, np.ndarray):
        tensors[where] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
        return {"__ndarray__": where}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj:
            return {k: _flatten(v, f"{where}.{k}", tensors) for k, v in obj.items()}
        items = [[_key(k, where), _flatten(v, f"{where}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{where}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{where}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not np.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"training state at {where} is a {type(obj).__name__}, which cannot be stored without "
                    "pickle; extend breastgpt.train.state_io or keep such objects out of the state")


def _key(key: Any, where: str) -> Any:
    if isinstance(key, (str, int, float, bool)):
        return key
    raise TypeError(f"training state at {where} has a dict key of type {type(key).__name__}")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if set(skeleton) == {"__tensor__"}:
        return tensors[skeleton["__tensor__"]]
    if set(skeleton) == {"__ndarray__"}:
        return tensors[skeleton["__ndarray__"]].numpy()
    if set(skeleton) == {"__tuple__"}:
        return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    if set(skeleton) == {"__dict__"}:
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if set(skeleton) == {"__float__"}:
        return float(skeleton["__float__"])
    return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}


def save_state(obj: Any, folder: Path, stem: str) -> list[Path]:
    """Write ``<stem>.json`` (+ ``<stem>.safetensors`` when there are tensors); returns the files written."""
    skeleton, tensors = flatten_state(obj)
    files = [folder / f"{stem}.json"]
    files[0].write_text(json.dumps(skeleton, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    if tensors:
        files.append(folder / f"{stem}.safetensors")
        save_file(tensors, str(files[1]))
    return files


def load_state(folder: Path, stem: str) -> Any:
    skeleton = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    tensor_file = folder / f"{stem}.safetensors"
    tensors = load_file(str(tensor_file)) if tensor_file.is_file() else {}
    return unflatten_state(skeleton, tensors)


__all__ = ["flatten_state", "load_state", "save_state", "unflatten_state"]
