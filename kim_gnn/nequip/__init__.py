"""NequIP adapters: 0.5.x / 0.6.x deployed TorchScript models here, nequip
>= 0.7 (NequIP GNN, Allegro) in ``kim_gnn.nequip_modern``.

``convert_nequip`` takes either and tells them apart itself
(``kim_gnn.nequip_modern.dispatch``). Registered through ``adapter.py``; the
functions below import torch on first use.
"""

from .._lazy import lazy_getattr

_LAZY = {
    "convert_nequip": "..nequip_modern.dispatch",
    "is_modern": "..nequip_modern.dispatch",
    "convert_nequip_legacy": ".convert:convert_nequip",
    "inspect_nequip": ".convert",
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
__all__ = list(_LAZY)
