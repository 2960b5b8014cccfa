"""Lazy public names for packages that must import cheaply (no torch)."""

import importlib
from typing import Callable, Dict


def lazy_getattr(package: str, names: Dict[str, str], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``names[name]`` (a module path
    relative to ``package``, optionally ``module:attribute`` where the
    attribute is named differently) on first access of ``name`` and keeps the
    result in ``namespace`` (the package's globals)."""

    def __getattr__(name: str):
        if name in names:
            module, _, attribute = names[name].partition(":")
            value = getattr(importlib.import_module(module, package), attribute or name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
