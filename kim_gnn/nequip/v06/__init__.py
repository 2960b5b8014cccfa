"""NequIP 0.5.x / 0.6.x adapter: ``deployed.pth`` files as staged KIM models.

Registered through ``adapter.py``; the scalar-only last layer and the
original model use nequip 0.6 and e3nn 0.4.4 (the legacy environment,
``scripts/setup.sh``). ``kim_gnn.nequip.convert_nequip`` takes these and
nequip >= 0.7 models alike.
"""

from ..._lazy import lazy_getattr

_LAZY = {"convert_nequip": ".convert", "inspect_nequip": ".convert"}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
__all__ = list(_LAZY)
