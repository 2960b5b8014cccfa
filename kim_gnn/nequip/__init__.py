"""NequIP adapters: 0.5.x / 0.6.x deployed TorchScript models here, nequip
>= 0.7 (NequIP GNN, Allegro) in ``kim_gnn.nequip_modern``.

``convert_nequip`` takes either and tells them apart itself
(``kim_gnn.nequip_modern.dispatch``)."""

from ..nequip_modern.dispatch import convert_nequip, is_modern
from .convert import convert_nequip as convert_nequip_legacy
from .convert import inspect_nequip

__all__ = ["convert_nequip", "convert_nequip_legacy", "inspect_nequip", "is_modern"]
