"""MACE adapter: MACE / ScaleShiftMACE models (mace-torch 0.3.x) as staged KIM models.

Registered through ``adapter.py``; the functions below import torch (and
mace) on first use.
"""

_LAZY = {"convert_mace": ".convert", "inspect_mace": ".convert", "load_mace_model": ".convert"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
