"""Named registries for the things users add: metrics, bench clients, ablations.

A registry maps a name to one entry, filled by decorating the entry where it is defined::

    ABLATIONS = Registry("ablation")

    @ABLATIONS.register("no-image")
    def no_image_sets(records, seed): ...

Everything that lists the names (CLI choices, config checks, report columns) reads ``names()`` instead of
keeping its own copy, so adding an entry is one decorated definition in one module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """A name registered twice, or looked up but never registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`; a name already taken is refused."""
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry
        return add

    def add(self, name: str, entry: T) -> None:
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry

    def remove(self, name: str) -> T:
        """Take `name` out again (tests that register an entry of their own clean up with this)."""
        return self._entries.pop(self._known(name))

    def get(self, name: str) -> T:
        return self._entries[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries) or '(none)'}")
        return name

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


__all__ = ["Registry", "RegistryError"]
