"""NequIP 0.5.x / 0.6.x adapter (deployed TorchScript models).

Registered through ``adapter.py``; the functions below import torch on first use.
"""

from .._lazy import lazy_getattr

_LAZY = {"convert_nequip": ".convert", "inspect_nequip": ".convert"}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
__all__ = list(_LAZY)
