"""kim-gnn: periodic GNN interatomic potentials as staged, local KIM models.

    from kim_gnn import convert_nequip, convert_mace, verify, StagedCalculator, write_portable_model

The core (contract, staged graphs, executor, export, harness) needs neither
e3nn nor an architecture package; adapters import theirs when used.
"""

from ._version import __version__
from .errors import KimGnnError, UnsupportedModelError


def __getattr__(name):
    # Lazy: importing kim_gnn must stay cheap and must not import ASE/torch
    # pieces that a caller does not use.
    if name == "convert_nequip":
        from .nequip import convert_nequip

        return convert_nequip
    if name == "convert_mace":
        from .mace import convert_mace

        return convert_mace
    if name == "verify":
        from .verify import verify

        return verify
    if name == "StagedCalculator":
        from .calculator import StagedCalculator

        return StagedCalculator
    if name == "write_portable_model":
        from .export import write_portable_model

        return write_portable_model
    if name == "build_staged_graphs":
        from .graphs import build_staged_graphs

        return build_staged_graphs
    if name == "convert":
        from .convert import convert

        return convert
    raise AttributeError(f"module 'kim_gnn' has no attribute {name!r}")


__all__ = [
    "__version__", "KimGnnError", "UnsupportedModelError", "convert_nequip", "convert_mace", "verify",
    "StagedCalculator", "write_portable_model", "build_staged_graphs", "convert",
]
