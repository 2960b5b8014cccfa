"""nequip >= 0.7 adapter (tested with nequip 0.19.1 and nequip-allegro 0.8.3):
NequIP GNN and Allegro models from ``.nequip.zip`` packages, training
``.ckpt`` files, compiled TorchScript ``.nequip.pth`` files and in memory.

Importing this package is cheap (no torch); recognising a file needs only
the standard library; converting an eager model (package, checkpoint, in
memory) needs nequip >= 0.7 and e3nn 0.6 (the modern environment,
``scripts/setup_modern.sh``); a compiled ``.nequip.pth`` needs only torch.
"""

import importlib

_LAZY = {
    "convert_nequip_modern": ".convert",
    "inspect_nequip_modern": ".info",
    "is_modern_module": ".network",
    "artifact_kind": ".load",
    "convert_nequip": "..dispatch",
}
ARCHITECTURE = "nequip-modern"


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHITECTURE", *_LAZY]
