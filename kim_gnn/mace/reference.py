"""The original MACE model on the periodic structure, as MACE runs it.

Nothing of kim_gnn's staged code is used here: the structure goes through
mace's own data pipeline (``config_from_atoms``, ``AtomicData.from_config``
with its periodic neighbour list, cell shifts and head, batched as its
calculator batches it) into the model's own ``forward``, in the model's
dtype as default dtype (as MACE's calculator runs it).
"""

import os
import warnings
from typing import Optional

import numpy as np
import torch

from ..errors import KimGnnError
from ..graphs import check_structure
from ..reference import OriginalResult, default_dtype
from .convert import _info, import_mace, load_mace_model


class MACEOriginal:
    def __init__(self, model_or_path, head: Optional[str] = None):
        if isinstance(model_or_path, torch.nn.Module):
            self.model = model_or_path
        else:
            self.model = load_mace_model(os.fspath(model_or_path))
        self.info = _info(self.model, head)
        self.model.eval()
        self.head = self.info.head
        self.dtype = self.info.model_dtype
        self.r_max = self.info.r_max

    def _batch(self, atoms):
        import_mace()
        from mace import data as mace_data
        from mace.tools import AtomicNumberTable, torch_geometric

        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.info.species))
        if unknown:
            raise KimGnnError(f"structure contains species {', '.join(unknown)} that the model does not have")
        z_table = AtomicNumberTable(self.info.atomic_numbers)
        config = mace_data.config_from_atoms(atoms, key_specification=mace_data.KeySpecification(), head_name=self.head)
        graph = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=self.r_max, heads=self.info.heads)
        batch = torch_geometric.batch.Batch.from_data_list([graph])
        return batch.to_dict()

    def evaluate(self, atoms) -> OriginalResult:
        check_structure(atoms)
        periodic = bool(np.all(atoms.pbc))
        with default_dtype(self.dtype), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = self._batch(atoms)
            out = self.model(data, training=False, compute_force=True, compute_stress=periodic)
        stress = None
        if periodic and out.get("stress") is not None:
            stress = out["stress"].detach().double().numpy().reshape(3, 3)
        return OriginalResult(
            energy=float(out["energy"].detach().double().sum()),
            energies=out["node_energy"].detach().double().numpy().reshape(-1),
            forces=out["forces"].detach().double().numpy().reshape(-1, 3),
            stress=stress,
        )
