"""nequip >= 0.7 adapter (tested with nequip 0.19.1 and nequip-allegro 0.8.3):
NequIP GNN and Allegro models from ``.nequip.zip`` packages, training
``.ckpt`` files, compiled TorchScript ``.nequip.pth`` files and in memory.

Recognising a file needs nothing but the standard library; converting an
eager model (package, checkpoint, in memory) needs nequip >= 0.7 and e3nn 0.6
(the modern environment, ``scripts/setup_modern.sh``).
"""

from .convert import ARCHITECTURE, convert_nequip_modern, inspect_nequip_modern, is_modern_module
from .load import artifact_kind

__all__ = ["ARCHITECTURE", "convert_nequip_modern", "inspect_nequip_modern", "is_modern_module", "artifact_kind"]
