"""Recipe registry: a recipe is a small Python function returning a ``TrainConfig``.

The recipe functions live in the repository's top-level ``recipes/`` folder, one module per recipe
(torchtitan style), and register themselves with ``@recipe("name")``. The folder is found next to this
checkout, or through ``BREASTGPT_RECIPES`` / ``--recipes-dir`` for an installed package or your own recipes.
Modules are imported from that folder only; no recipe is ever named by a path inside a data file.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Callable

from breastgpt.train.config import ConfigError, TrainConfig

RecipeFn = Callable[[], TrainConfig]
_REGISTRY: dict[str, RecipeFn] = {}
_LOADED: set[Path] = set()
PACKAGE = "breastgpt_recipes"


def recipe(name: str) -> Callable[[RecipeFn], RecipeFn]:
    """Decorator registering ``fn`` under ``name``; a second recipe with the same name is an error."""

    def register(fn: RecipeFn) -> RecipeFn:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != fn.__qualname__:
            raise ConfigError(f"recipe {name!r} is registered twice ({existing.__module__} and {fn.__module__})")
        _REGISTRY[name] = fn
        return fn

    return register


def default_recipes_dir() -> Path:
    env = os.environ.get("BREASTGPT_RECIPES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "recipes"


def load_recipes(folder: str | Path | None = None) -> dict[str, RecipeFn]:
    """Import every ``*.py`` in the recipes folder once; returns the registry."""
    folder = Path(folder) if folder else default_recipes_dir()
    if not folder.is_dir():
        raise ConfigError(f"recipes folder {folder} not found; pass --recipes-dir or set BREASTGPT_RECIPES")
    package = _recipes_package(folder)
    for path in sorted(folder.glob("*.py")):
        path = path.resolve()
        if path in _LOADED or path.name.startswith("_"):
            continue
        importlib.import_module(f"{package.__name__}.{path.stem}")
        _LOADED.add(path)
    return dict(_REGISTRY)


def _recipes_package(folder: Path) -> types.ModuleType:
    """A namespace package ``breastgpt_recipes`` over the folder, so recipes can import one another."""
    package = sys.modules.get(PACKAGE)
    if package is None:
        package = types.ModuleType(PACKAGE)
        package.__path__ = []
        sys.modules[PACKAGE] = package
    if str(folder.resolve()) not in package.__path__:
        package.__path__.append(str(folder.resolve()))
    return package


def get_recipe(name: str, folder: str | Path | None = None) -> TrainConfig:
    registry = load_recipes(folder)
    if name not in registry:
        raise ConfigError(f"unknown recipe {name!r}; available: {sorted(registry)}")
    config = registry[name]()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"recipe {name!r} returned {type(config).__name__}, not TrainConfig")
    return config


__all__ = ["default_recipes_dir", "get_recipe", "load_recipes", "recipe"]
