"""MACE adapter: MACE / ScaleShiftMACE models (mace-torch 0.3.x) as staged KIM models.

Registered through ``adapter.py``; the functions below import torch (and
mace) on first use.
"""

from .._lazy import lazy_getattr

_LAZY = {"convert_mace": ".convert", "inspect_mace": ".convert", "load_mace_model": ".convert"}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
__all__ = list(_LAZY)
