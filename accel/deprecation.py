"""Old import paths that keep working for one release after a move, with a ``DeprecationWarning``.

A module whose contents moved keeps a module-level ``__getattr__ = moved_names(__name__, {...})``;
each access warns once per call site and returns the object from its new home. The moves and the
release that drops them are listed in CHANGELOG.md.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

#: The release in which the old paths stop working.
REMOVED_IN = "0.3.0"


def moved_names(old_module: str, new_homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves each name of ``new_homes`` (name -> new module) with a warning."""

    def __getattr__(name: str) -> Any:
        if name not in new_homes:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new_module = new_homes[name]
        warnings.warn(
            f"{old_module}.{name} moved to {new_module}.{name}; the old path goes away in accel {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), name)

    __getattr__.new_homes = dict(new_homes)  # type: ignore[attr-defined]  (read by the layer test)
    return __getattr__
