"""Named registries: ``@OBJECTIVES.register("cvrl")`` and ``OBJECTIVES.get("cvrl")``.

Discovery is by explicit import (each package's ``__init__`` imports its modules) or, for code
outside ssvrl, by the ``plugins:`` list of an experiment and the ``ssvrl.<kind>`` entry-point
groups. An unknown name raises :class:`RegistryError` listing the known names and the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate most similar to ``name`` (difflib ratio >= 0.5), or None."""
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return found[0] if found else None


class Registry(Generic[T]):
    """A mapping from names to classes or factories of one kind (objectives, backbones, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a second object under the same name raises."""

        def add(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            hint = closest(name, self.names())
            did_you_mean = f" Did you mean {hint!r}?" if hint else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{did_you_mean} Known: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
