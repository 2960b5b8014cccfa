"""What a nequip >= 0.7 model is (``inspect_nequip_modern``): the model
loaded from its source (``load.py`` for files), its module tree split
(``network.py``), its types mapped to KIM species (``species.py``), its
cutoff, dtype and versions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Union

import torch

from ... import contract
from ...errors import KimGnnError, UnsupportedModelError
from . import load
from .network import _model_dtype, _unwrap, class_name, is_modern_module, split_network
from .species import _species_order, _zbl_elements, choose_type_map

Source = Union[str, "os.PathLike[str]", torch.nn.Module]


@dataclass
class ModernModelInfo:
    source_file: str
    sha256: str
    artifact: str  # package | checkpoint | compiled | in-memory
    model: str  # NequIP | Allegro
    nequip_version: str
    r_max: float
    type_names: List[str]
    species: List[str]
    type_map: Dict[str, str]  # element -> type name
    type_map_source: str
    num_layers: int
    model_dtype: torch.dtype
    per_edge_type_cutoff: str
    pair_potentials: List[str]
    num_parameters: int
    details: Dict[str, str] = field(default_factory=dict)

    @property
    def influence_distance(self) -> float:
        return self.r_max * self.num_layers


def _load(source: Source):
    """(graph model, artifact kind, metadata, source file, sha256, training species map)."""
    if isinstance(source, torch.nn.Module):
        if not is_modern_module(source):
            raise UnsupportedModelError(
                f"an in-memory {type(source).__name__} is not a nequip >= 0.7 GraphModel"
            )
        metadata = {}
        if not isinstance(source, torch.jit.ScriptModule):
            try:
                metadata = dict(source.metadata)
            except Exception:
                metadata = {}
        return source, "in-memory", metadata, "", "", {}
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise KimGnnError(f"no such file: {path}")
    model, kind, metadata = load.load_any(path)
    trained: Dict[str, str] = {}
    if kind == "package":
        trained = load.trained_species_map(load.package_config(path))
    elif kind == "checkpoint":
        trained = load.trained_species_map(load.checkpoint_info(path))
    return model, kind, metadata, os.path.basename(path), contract.file_sha256(path), trained


def _type_names(graph_model, metadata: Dict[str, str]) -> List[str]:
    names = str(metadata.get("type_names", "") or "").split()
    if not names:
        names = [str(t) for t in (getattr(graph_model, "type_names", None) or [])]
    if not names:
        raise UnsupportedModelError("the model carries no type_names")
    return names


def _r_max(graph_model, metadata: Dict[str, str], func) -> float:
    value = metadata.get("r_max")
    if value:
        return float(value)
    for _, module in func.named_modules() if not isinstance(func, torch.jit.ScriptModule) else func.named_children():
        if class_name(module) == "EdgeLengthNormalizer":
            return float(module.r_max)
    raise UnsupportedModelError("cannot tell the model's cutoff r_max (no metadata, no EdgeLengthNormalizer)")


def _nequip_version(kind: str) -> str:
    version = load.nequip_version() or ""
    if kind == "compiled" and not load.is_modern_version(version):
        return ">=0.7"
    return version


def _inspect(source: Source, type_map=None):
    graph_model, kind, metadata, source_file, sha, trained = _load(source)
    func = _unwrap(graph_model)
    model_kind, node, edge, layers, readout, pair = split_network(func)
    type_names = _type_names(graph_model, metadata)
    mapping, map_source = choose_type_map(type_names, type_map, trained, _zbl_elements(func, type_names))
    species = _species_order(mapping, type_names)
    model_dtype = _model_dtype(graph_model, metadata)
    info = ModernModelInfo(
        source_file=source_file,
        sha256=sha,
        artifact=kind,
        model=model_kind,
        nequip_version=_nequip_version(kind),
        r_max=_r_max(graph_model, metadata, func),
        type_names=type_names,
        species=species,
        type_map=mapping,
        type_map_source=map_source,
        num_layers=max(1, len(layers)),
        model_dtype=model_dtype,
        per_edge_type_cutoff=str(metadata.get("per_edge_type_cutoff", "") or ""),
        pair_potentials=pair,
        num_parameters=sum(p.numel() for p in graph_model.parameters()),
    )
    return info, graph_model, (node, edge, layers, readout)


def inspect_nequip_modern(source: Source, type_map=None) -> ModernModelInfo:
    """What a nequip >= 0.7 model is, without converting it."""
    return _inspect(source, type_map)[0]
