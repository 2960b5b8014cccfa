"""The NequIP family of adapters, side by side on what they share:

* ``v06/``: NequIP 0.5.x / 0.6.x deployed TorchScript models (adapter
  ``nequip``);
* ``modern/``: nequip >= 0.7 NequIP GNN and Allegro models (adapter
  ``nequip-modern``);
* shared at this level: the staged loop of a nequip ``SequentialGraphNetwork``
  and the layer forms both use (``graph_stages.py``), what both know of
  nequip's module trees (``module_tree.py``), the original's outputs as the
  harness reads them (``outputs.py``), the environment each converts in
  (``environments.py``) and ``convert_nequip``, which tells the two apart
  itself (``dispatch.py``).

Each adapter registers through its own ``adapter.py`` (the registry looks
one level into a family folder: ``kim_gnn/adapters.py``); the functions
below import torch on first use.
"""

from .._lazy import lazy_getattr

_LAZY = {
    "convert_nequip": ".dispatch",
    "is_modern": ".dispatch",
    "convert_nequip_legacy": ".v06.convert:convert_nequip",
    "inspect_nequip": ".v06.convert",
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())
__all__ = list(_LAZY)
