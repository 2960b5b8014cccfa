"""The original nequip >= 0.7 model on the periodic structure, as nequip
runs it.

Nothing of kim_gnn's staged code or species handling is used: the structure
goes through nequip's own ``from_ase``, its ``ChemicalSpeciesToAtomTypeMapper``
(chemical symbol -> the model's type) and its ``NeighborListTransform``
(periodic edges with cell shifts, per-edge-type cutoffs pruned as nequip
prunes them), exactly as nequip's ASE calculator builds the input, and the
model (eager, or the compiled TorchScript file) is called on it.
"""

from __future__ import annotations

import os
from typing import Dict

import torch

from ...errors import KimGnnError
from ...graphs import check_structure
from ...reference import OriginalResult
from ..outputs import original_result
from . import load
from .info import _r_max, _type_names
from .network import _unwrap, is_modern_module
from .species import parse_type_map


class NequIPModernOriginal:
    def __init__(self, source, spec=None):
        load.import_nequip(need_allegro=not isinstance(source, torch.nn.Module) and load._mentions_allegro(os.fspath(source)))
        with load.restore_torch_state():
            self._setup(source, spec)

    def _setup(self, source, spec) -> None:
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
        from nequip.nn.embedding.utils import cutoff_str_to_fulldict
        from nequip.utils.global_state import set_global_state

        set_global_state()
        trained: Dict[str, str] = {}
        if isinstance(source, torch.nn.Module):
            if not is_modern_module(source):
                raise KimGnnError(f"an in-memory {type(source).__name__} is not a nequip >= 0.7 GraphModel")
            model = source
            metadata = dict(model.metadata) if not isinstance(model, torch.jit.ScriptModule) else {}
        else:
            path = os.fspath(source)
            model, kind, metadata = load.load_any(path)
            if kind == "package":
                trained = load.trained_species_map(load.package_config(path))
            elif kind == "checkpoint":
                trained = load.trained_species_map(load.checkpoint_info(path))
        model.eval()
        self.model = model
        func = _unwrap(model)
        type_names = _type_names(model, metadata)
        self.r_max = _r_max(model, metadata, func)
        # The element -> type map: the one recorded at conversion only when the
        # user chose it (or it came from the model's ZBL term); otherwise nequip's
        # own default (training data map, else type names as chemical symbols).
        details = getattr(spec, "details", {}) or {}
        if details.get("type_map_source") in ("given", "ZBL chemical species"):
            mapping = parse_type_map(details["type_map"])
        elif {e: t for e, t in trained.items() if t in type_names}:
            mapping = {e: t for e, t in trained.items() if t in type_names}
        else:
            from nequip.integrations.utils import handle_chemical_species_map

            mapping = handle_chemical_species_map(True, type_names)
        self.mapping = mapping
        self.type_mapper = ChemicalSpeciesToAtomTypeMapper(
            model_type_names=type_names, chemical_species_to_atom_type_map=mapping
        )
        cutoffs = metadata.get("per_edge_type_cutoff") or None
        if cutoffs:
            self.neighbors = NeighborListTransform(
                r_max=self.r_max, per_edge_type_cutoff=cutoff_str_to_fulldict(str(cutoffs), type_names),
                type_names=type_names, backend="ase",
            )
        else:
            self.neighbors = NeighborListTransform(r_max=self.r_max, backend="ase")

    def _data(self, atoms):
        from nequip.data import from_ase

        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.mapping))
        if unknown:
            raise KimGnnError(f"structure contains species {', '.join(unknown)} that the model does not have")
        data = from_ase(atoms)
        data = self.type_mapper(data)
        return self.neighbors(data)

    def evaluate(self, atoms) -> OriginalResult:
        check_structure(atoms)
        with load.restore_torch_state():
            torch.set_default_dtype(torch.float64)  # nequip's global dtype, as its own tools run
            out = self.model(self._data(atoms))
        return original_result(out, atoms)

