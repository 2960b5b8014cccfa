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


#: Modules that moved into kim_gnn/verification/ (issue 19), importable
#: under their old paths for code written against them. No file stands at an
#: old path (so that git follows the moves); an import of one returns the
#: module itself, not a copy. To be removed once nothing imports them.
_MOVED = {f"kim_gnn.{name}": f"kim_gnn.verification.{name}" for name in ("harness", "check", "structures", "plots")}


class _MovedModules:
    """Import finder and loader for ``_MOVED``'s old paths."""

    def find_spec(self, name, path=None, target=None):
        if name not in _MOVED:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        import importlib
        import sys

        # the import system returns what sys.modules holds under the name
        sys.modules[module.__name__] = importlib.import_module(_MOVED[module.__name__])


def _install_moved_modules():
    import sys

    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())


_install_moved_modules()


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
