"""NequIP 0.5.x / 0.6.x adapter (deployed TorchScript models).

Registered through ``adapter.py``; the functions below import torch on first use.
"""

_LAZY = {"convert_nequip": ".convert", "inspect_nequip": ".convert"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
