"""Strict configuration dataclasses: one parser for every config file, section and nested setting.

A config class is a dataclass that derives from `StrictConfig`. `Cls.from_dict(data, where=...)` refuses unknown
keys (naming the known ones), reports missing required keys, checks every value against the field's declared type
and converts what a JSON/YAML file cannot spell directly: lists to tuples, nested mappings to nested config
dataclasses, strings to `Path`. A `Literal[...]` field only takes its listed values, whether the object comes
from a file or is built in code (`__post_init__` checks it). `to_dict()` is the inverse: plain JSON data that
`from_dict` reads back to an equal object.

Domain rules (ranges, fields that must agree) live in each class's `validate()`, which `__post_init__` calls.
Each class names the error it raises (`error`, a `ConfigError` subclass of its module) and what a message calls
it (`section`, e.g. "split config"), so its users keep catching the type they caught before.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = ["ConfigError", "StrictConfig", "literal_values"]


class ConfigError(ValueError):
    """A configuration (file, section or setting) that cannot be used as given; the message says where and why."""


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class StrictConfig:
    """Base of the configuration dataclasses (see the module docstring)."""

    error: ClassVar[type[ConfigError]] = ConfigError
    section: ClassVar[str] = ""  # how messages name this config; "" uses the class name
    # Accept strings for bool/int/float/list fields ("true", "2e-5", "0.9,0.95"): for configs set from a command
    # line (`--set key=value`), where every value arrives as text.
    parse_strings: ClassVar[bool] = False
    # Fields that are runtime settings, never read from or written to a file (e.g. read limits).
    runtime_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            allowed = literal_values(hints[f.name])
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise self.error(_literal_message(f"{self._name()}.{f.name}", getattr(self, f.name), allowed))
        self.validate()

    def validate(self) -> None:
        """Domain checks of a subclass (ranges, fields that must agree); raise `self.error`."""

    @classmethod
    def _name(cls) -> str:
        return cls.section or cls.__name__

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Hook: adjust raw data before strict parsing (strip a file envelope, derive a default). Returns a copy."""
        return dict(data)

    @classmethod
    def known_keys(cls) -> list[str]:
        return sorted(f.name for f in dataclasses.fields(cls) if f.name not in cls.runtime_fields)  # type: ignore

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Any:
        """Build from plain data (a parsed file or section). `where` names it in messages (a path, a section)."""
        where = where or cls._name()
        if not isinstance(data, dict):
            raise cls.error(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        data = cls.prepare(data, where)
        known = cls.known_keys()
        unknown = sorted(set(data) - set(known), key=str)
        if unknown:
            raise cls.error(f"{where}: unknown key(s) {unknown}; known keys are {known}. "
                            "Fix the spelling or remove them.")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f)]  # type: ignore
        if missing:
            raise cls.error(f"{where}: missing required key(s) {missing}; add them (known keys are {known}).")
        hints = _hints(cls)
        kwargs = {name: _coerce(cls, hints[name], value, _key_path(where, name)) for name, value in data.items()}
        try:
            return cls(**kwargs)
        except ConfigError as exc:  # a domain rule: say which file or section broke it
            if where == cls._name() or str(exc).startswith(where):
                raise
            raise type(exc)(f"{where}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise cls.error(f"{where}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists for tuples, strings for paths, dicts for nested configs); `from_dict` inverts it."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if f.name not in self.runtime_fields}


def literal_values(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of `Literal[...]` (also inside `Optional`: None is then allowed), else None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [literal_values(arg) for arg in typing.get_args(tp) if arg is not type(None)]
        if len(inner) == 1 and inner[0] is not None:
            return (*inner[0], None)
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _key_path(where: str, name: str) -> str:
    """'run.json: seed' for a key of a file, 'train.optim.lr' for a key of a section."""
    return f"{where}: {name}" if where.endswith(_FILE_SUFFIXES) else f"{where}.{name}"


_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".toml")


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _literal_message(path: str, value: Any, allowed: tuple[Any, ...]) -> str:
    return f"{path}={value!r} is not one of {list(allowed)}"


def _plain(value: Any) -> Any:
    if isinstance(value, StrictConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(owner: type[StrictConfig], tp: Any, value: Any, path: str) -> Any:
    """Check one value against a declared type, converting lists, nested mappings and (if allowed) strings."""
    error = owner.error
    if tp is Any:
        return value
    allowed = literal_values(tp)
    if allowed is not None:
        if value not in allowed:
            raise error(_literal_message(path, value, allowed) + "; use one of them")
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) != 1:
            raise error(f"{path}: a union of {args} cannot be parsed; declare one type (optionally with None)")
        return _coerce(owner, args[0], value, path)
    if origin in (list, tuple):
        return _sequence(owner, tp, value, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{path}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp) or (str, Any)
        return {k: _coerce(owner, inner, v, _key_path(path, str(k))) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _nested(owner, tp, value, path)
    return _scalar(owner, tp, value, path)


def _sequence(owner: type[StrictConfig], tp: Any, value: Any, path: str) -> Any:
    if isinstance(value, str) and owner.parse_strings:
        value = _parse_list(owner, value, path)
    if not isinstance(value, (list, tuple)):
        raise owner.error(f"{path}: expected a list, got {value!r}")
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list or (len(args) == 2 and args[1] is Ellipsis) or not args:
        inner = args[0] if args else Any
        items = [_coerce(owner, inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    else:  # a fixed-length tuple such as tuple[int, int]
        if len(value) != len(args):
            raise owner.error(f"{path}: expected {len(args)} values, got {len(value)} ({value!r})")
        items = [_coerce(owner, a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
    return items if typing.get_origin(tp) is list else tuple(items)


def _nested(owner: type[StrictConfig], tp: type, value: Any, path: str) -> Any:
    if isinstance(value, tp):
        return value
    if issubclass(tp, StrictConfig):
        return tp.from_dict(value, path)
    names = [f.name for f in dataclasses.fields(tp)]
    if isinstance(value, (list, tuple)) and len(value) == len(names):  # a small record written positionally
        value = dict(zip(names, value))
    if not isinstance(value, dict):
        raise owner.error(f"{path}: expected a mapping with keys {names}, got {value!r}")
    unknown = sorted(set(value) - set(names), key=str)
    if unknown:
        raise owner.error(f"{path}: unknown key(s) {unknown}; known keys are {names}")
    hints = _hints(tp)
    try:
        return tp(**{k: _coerce(owner, hints[k], v, _key_path(path, k)) for k, v in value.items()})
    except (TypeError, ValueError) as exc:
        raise owner.error(f"{path}: {exc}") from exc


def _parse_list(owner: type[StrictConfig], text: str, path: str) -> list[Any]:
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise owner.error(f"{path}: {text!r} is not a JSON list ({exc.msg})") from exc
    return [part.strip() for part in text.split(",") if part.strip()]


def _scalar(owner: type[StrictConfig], tp: Any, value: Any, path: str) -> Any:
    text = isinstance(value, str) and owner.parse_strings
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text:
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text:
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    else:
        raise owner.error(f"{path}: unsupported field type {tp!r} in {owner.__name__}")
    raise owner.error(f"{path}: {value!r} is not a valid {tp.__name__}")
