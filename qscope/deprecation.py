"""Old import paths of names that moved keep working, with a `DeprecationWarning` that names the new home.

A module whose names moved ends with (PEP 562: Python calls a module's `__getattr__` only for names the module
does not define, `from old.module import OldName` included)

    __getattr__ = moved_names(__name__, {"OldName": "new.module", "old_name": "new.module:NewClass.method"})

The target is "module" (same name there) or "module:attribute.path". The new module is imported only when an
old name is used, so an alias costs nothing at import time.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_names(module: str, moves: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` serving `moves` (old name -> "new.module[:attribute.path]")."""

    def __getattr__(name: str) -> Any:
        target = moves.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, _, path = target.partition(":")
        path = path or name
        warnings.warn(f"{module}.{name} is deprecated: use {new_module}.{path}", DeprecationWarning, stacklevel=2)
        obj: Any = importlib.import_module(new_module)
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    return __getattr__
