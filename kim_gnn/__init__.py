"""kim-gnn: periodic GNN interatomic potentials as staged, local KIM models.

    from kim_gnn import convert_nequip, convert_mace, verify, StagedCalculator, write_portable_model

The core (contract, staged graphs, executor, export, harness) needs neither
e3nn nor an architecture package; adapters import theirs when used.
"""

from ._version import __version__
from .errors import KimGnnError, UnsupportedModelError

#: Public name -> (submodule, attribute). Imported on first use: importing
#: kim_gnn stays cheap (no torch, no ASE). No public name may equal a
#: submodule's name: importing that submodule would rebind the package
#: attribute to the module (``kim_gnn.verify`` was once the module, not the
#: function, for that reason). The adapters add their own public names
#: (``convert_nequip``, ``convert_mace``, ...) through their ``exports``.
_LAZY = {
    "convert": (".adapters", "convert"),
    "register_adapter": (".adapters", "register_adapter"),
    "verify": (".verification.harness", "verify"),
    "StagedCalculator": (".calculator", "StagedCalculator"),
    "write_portable_model": (".export", "write_portable_model"),
    "build_staged_graphs": (".graphs", "build_staged_graphs"),
}


def _exports():
    from .adapters import public_exports

    return public_exports()


def _is_submodule(name: str) -> bool:
    """``from . import contract`` asks the package for ``contract`` before
    importing it: a submodule's name is answered without discovering adapters."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.isfile(os.path.join(here, name + ".py")) or os.path.isfile(os.path.join(here, name, "__init__.py"))


def __getattr__(name):
    import importlib

    if name == "__all__":
        return ["__version__", "KimGnnError", "UnsupportedModelError", *_LAZY, *_exports()]
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attribute)
    elif not name.startswith("_") and not _is_submodule(name) and name in _exports():
        module, attribute = _exports()[name].split(":")
        value = getattr(importlib.import_module(module), attribute)
    else:
        raise AttributeError(f"module 'kim_gnn' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_exports()))
