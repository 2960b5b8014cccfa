"""Which architecture a model file is, and the adapter that handles it.

An adapter converts a file (``convert``), describes it (``describe``) and
evaluates the original periodic model for the harness (``original``). The
core never imports an architecture package; adapters import their own
dependencies lazily.
"""

import os
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, List

from .errors import KimGnnError, UnsupportedModelError


@dataclass(frozen=True)
class Adapter:
    name: str
    detect: Callable[[str], bool]
    convert: Callable[[str], object]
    describe: Callable[[str], Dict[str, object]]
    original: Callable[[str], object]


def _zip_names(path: str) -> List[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _is_nequip_deployed(path: str) -> bool:
    return any(name.endswith("/extra/nequip_version") for name in _zip_names(path))


def _nequip_convert(path):
    from .nequip import convert_nequip

    return convert_nequip(path)


def _nequip_describe(path):
    from .nequip import inspect_nequip

    info = inspect_nequip(path)
    return {
        "architecture": "nequip",
        "version": info.nequip_version,
        "layers": info.num_layers,
        "cutoff": info.r_max,
        "influence_distance": info.influence_distance,
        "species": info.species,
        "type_names": info.type_names,
        "model_dtype": str(info.model_dtype).replace("torch.", ""),
        "default_dtype": str(info.default_dtype).replace("torch.", ""),
        "parameters": info.num_parameters,
        "sha256": info.sha256,
    }


def _nequip_original(path):
    from .nequip.reference import NequIPOriginal

    return NequIPOriginal(path)


ADAPTERS = [
    Adapter("nequip", _is_nequip_deployed, _nequip_convert, _nequip_describe, _nequip_original),
]


def detect_adapter(path) -> Adapter:
    """The adapter for a model file, or a clear error saying why there is none."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise KimGnnError(f"no such file: {path}")
    if os.path.isdir(path):
        raise KimGnnError(f"{path} is a directory, not a model file")
    for adapter in ADAPTERS:
        if adapter.detect(path):
            return adapter
    if not zipfile.is_zipfile(path):
        raise KimGnnError(f"{path} is not a model file kim-gnn knows: not a TorchScript or PyTorch archive")
    names = _zip_names(path)
    if any(n.endswith("/extra/nequip_version") for n in names) or any(n.endswith("/code/__torch__") for n in names):
        raise UnsupportedModelError(f"{path} is TorchScript, but not a model of a supported architecture")
    raise UnsupportedModelError(
        f"{path} is not a model of a supported architecture (supported: {', '.join(a.name for a in ADAPTERS)})"
    )
