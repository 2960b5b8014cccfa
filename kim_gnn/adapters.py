"""Which architecture a model is, and the adapter that handles it.

An adapter converts a model (``convert(source, **options)``), describes it
(``describe(path, **options)``) and evaluates the original periodic model
for the harness (``original(source, spec)``, where ``spec`` is the converted
model's spec, so that e.g. the same MACE head is evaluated). ``source`` is a
file path, or an in-memory module where ``detect_module`` accepts it.
``options`` names the conversion options the adapter takes (``head``,
``prune``).
The core never imports an architecture package; adapters import their own
dependencies lazily.
"""

import os
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .errors import KimGnnError, UnsupportedModelError


@dataclass(frozen=True)
class Adapter:
    name: str
    detect: Callable[[str], bool]
    convert: Callable[..., object]
    describe: Callable[..., Dict[str, object]]
    original: Callable[[object, object], object]
    options: Tuple[str, ...] = ()
    detect_module: Optional[Callable[[object], bool]] = None

    def check_options(self, options: Dict[str, object]) -> Dict[str, object]:
        """The options that were given (not None); refuse those this adapter does not take."""
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise KimGnnError(
                f"option(s) {', '.join('--' + k for k in unknown)} do not apply to {self.name} models"
            )
        return given


def _zip_names(path: str) -> List[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _is_nequip_deployed(path: str) -> bool:
    return any(name.endswith("/extra/nequip_version") for name in _zip_names(path))


def _nequip_convert(path, prune=True):
    from .nequip import convert_nequip

    return convert_nequip(path, prune=prune)


def _nequip_describe(path, **options):
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


def _nequip_original(path, spec=None):
    from .nequip.reference import NequIPOriginal

    return NequIPOriginal(path)


def _is_mace_file(path: str) -> bool:
    from .mace.convert import is_mace_file

    return is_mace_file(path)


def _is_mace_module(module) -> bool:
    return any(c.__module__.startswith("mace.") for c in type(module).__mro__)


def _mace_convert(source, head=None, prune=True):
    from .mace import convert_mace

    return convert_mace(source, head=head, prune=prune)


def _mace_describe(path, head=None):
    from .mace import inspect_mace

    info = inspect_mace(path, head=head)
    return {
        "architecture": "mace",
        "version": info.mace_version,
        "model_class": info.model_class,
        "layers": info.num_layers,
        "cutoff": info.r_max,
        "influence_distance": info.influence_distance,
        "species": info.species,
        "heads": info.heads,
        "head": info.head,
        "interactions": info.interactions,
        "readouts": info.readouts,
        "correlation": info.correlation,
        "max_ell": info.max_ell,
        "pair_repulsion": "ZBL" if info.pair_repulsion else "none",
        "distance_transform": info.distance_transform,
        "model_dtype": str(info.model_dtype).replace("torch.", ""),
        "parameters": info.num_parameters,
        "sha256": info.sha256,
    }


def _mace_original(source, spec=None):
    from .mace.reference import MACEOriginal

    head = (spec.details.get("head") if spec is not None else None) or None
    return MACEOriginal(source, head=head)


ADAPTERS = [
    Adapter("nequip", _is_nequip_deployed, _nequip_convert, _nequip_describe, _nequip_original,
            options=("prune",)),
    Adapter("mace", _is_mace_file, _mace_convert, _mace_describe, _mace_original,
            options=("head", "prune"), detect_module=_is_mace_module),
]


def adapter_named(name: str) -> Adapter:
    for adapter in ADAPTERS:
        if adapter.name == name:
            return adapter
    raise KimGnnError(f"no adapter for architecture {name!r} (known: {', '.join(a.name for a in ADAPTERS)})")


def detect_adapter(source) -> Adapter:
    """The adapter for a model file or in-memory module, or a clear error
    saying why there is none."""
    if not isinstance(source, (str, os.PathLike)):
        for adapter in ADAPTERS:
            if adapter.detect_module is not None and adapter.detect_module(source):
                return adapter
        raise UnsupportedModelError(
            f"an in-memory {type(source).__name__} is not a model of a supported architecture "
            f"(in memory: {', '.join(a.name for a in ADAPTERS if a.detect_module)}; or pass a model file)"
        )
    path = os.fspath(source)
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
