"""The original NequIP model on the periodic structure, as NequIP runs it.

Nothing of kim_gnn's staged code is used here: the deployed file is called
with its own inputs (positions, cell, periodic edges with integer cell
shifts from ASE's neighbor list, as ``nequip.data.AtomicData.from_ase``
builds them), in the default dtype its metadata names.
"""

import os
from typing import Dict

import numpy as np
import torch

from ...errors import KimGnnError
from ...graphs import check_structure
from ...reference import OriginalResult, default_dtype
from ..outputs import original_result
from .convert import _dtype, _parse_config, load_deployed


def _nequip_type_mapper(type_names, config):
    """nequip 0.6's own ``TypeMapper``: built from the training config's
    ``chemical_symbol_to_type`` / ``chemical_symbols`` as nequip built it for
    training, else as nequip's ASE calculator does for a deployed model
    (type names taken as chemical symbols)."""
    import ase.data

    import warnings

    from .legacy_import import e3nn_importable

    try:
        # (e3nn 0.4.4 torch.loads its constants at import, which torch >= 2.6 refuses by default)
        with warnings.catch_warnings(), e3nn_importable():
            warnings.simplefilter("ignore")  # nequip warns about every torch 2.x at import
            from nequip.data.transforms import TypeMapper
    except ImportError:
        from ..environments import LEGACY_ENV_HINT

        raise KimGnnError(
            "evaluating an original NequIP 0.5/0.6 model uses nequip 0.6's own type mapping, and this environment "
            f"has no nequip 0.6; {LEGACY_ENV_HINT.replace('convert it', 'verify it')}"
        ) from None

    if isinstance(config.get("chemical_symbol_to_type"), dict):
        mapper = TypeMapper(chemical_symbol_to_type={str(k): int(v) for k, v in config["chemical_symbol_to_type"].items()})
    elif isinstance(config.get("chemical_symbols"), list):
        mapper = TypeMapper(chemical_symbols=[str(s) for s in config["chemical_symbols"]])
    else:
        index = {n: i for i, n in enumerate(type_names)}
        mapper = TypeMapper(chemical_symbol_to_type={s: index[s] for s in ase.data.chemical_symbols if s in index})
    if list(mapper.type_names) != list(type_names):
        raise KimGnnError(
            f"nequip's type mapping ({mapper.chemical_symbol_to_type}) does not cover the model's types {type_names}"
        )
    return mapper


class NequIPOriginal:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.module, self.metadata = load_deployed(self.path)
        self.module.eval()
        self.r_max = float(self.metadata["r_max"])
        self.type_names = self.metadata["type_names"].split()
        self.default_dtype = _dtype(self.metadata.get("default_dtype", ""), torch.float64)
        self.type_mapper = _nequip_type_mapper(self.type_names, _parse_config(self.metadata.get("config", "")))
        self.species = sorted(self.type_mapper.chemical_symbol_to_type)

    def _inputs(self, atoms, symbols) -> Dict[str, torch.Tensor]:
        from ase.neighborlist import primitive_neighbor_list

        unknown = sorted(set(symbols) - set(self.species))
        if unknown:
            raise KimGnnError(f"structure contains species {', '.join(unknown)} that the model does not have")
        # nequip's own chemical symbol -> type mapping, not kim-gnn's species list
        types = self.type_mapper.transform(torch.as_tensor(np.asarray(atoms.numbers), dtype=torch.long)).numpy()
        positions = np.asarray(atoms.positions, dtype=np.float64)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        from ase.geometry import complete_cell

        i, j, shifts = primitive_neighbor_list(
            "ijS", atoms.pbc, complete_cell(cell), positions, cutoff=self.r_max, self_interaction=True, use_scaled_positions=False
        )
        keep = ~((i == j) & np.all(shifts == 0, axis=1))
        dtype = self.default_dtype
        return {
            "pos": torch.tensor(positions, dtype=dtype),
            "edge_index": torch.tensor(np.stack([i[keep], j[keep]]), dtype=torch.int64),
            "edge_cell_shift": torch.tensor(shifts[keep], dtype=dtype),
            "cell": torch.tensor(cell, dtype=dtype),
            "atom_types": torch.tensor(types).view(-1, 1),
        }

    def evaluate(self, atoms) -> OriginalResult:
        check_structure(atoms)
        with default_dtype(self.default_dtype):
            data = self._inputs(atoms, atoms.get_chemical_symbols())
            out = self.module(data)
        return original_result(out, atoms)
