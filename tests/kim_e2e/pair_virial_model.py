"""A hand-written TorchScript pair potential that implements the per-atom
virial interface (``energy_and_edge_vectors``, docs/per-atom-virials.md)
beside the contract's ``forward``, in float64, and its closed-form
per-atom virials on a periodic structure.

phi(r) = s_a s_b (rc - r)^3 (1 + r / 2) for r <= rc, with one strength s
per species; E = 1/2 sum_i sum_j phi(r_ij) (images included). The
edge-force decomposition gives atom i the virial (KIM's sign, sum x (x)
dE/dx) W_i = 1/2 sum_j phi'(r_ij) r_ij (x) r_ij / r_ij, whatever the
staging: that is what the driver's per-particle virial must equal.

Used by tests/kim_e2e/test_particle_virial.py and test_lammps_stress_atom.py
(and, as a model without the method, ``with_method=False``)."""

from __future__ import annotations

import linecache
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

STRENGTHS = (1.0, 1.3)  # per species index
CUTOFF = 3.2

SOURCE = textwrap.dedent('''\
    import torch
    from typing import List, Tuple


    class PairVirialModel(torch.nn.Module):
        def __init__(self, cutoff: float, strengths: List[float], nan_edge_forces: bool):
            super().__init__()
            self.cutoff = cutoff
            self.strengths = torch.tensor(strengths, dtype=torch.float64)
            self.nan_edge_forces = nan_edge_forces

        def _energy(self, species: torch.Tensor, coordinates: torch.Tensor, vectors: torch.Tensor,
                    edge_index: torch.Tensor, contributions: torch.Tensor) -> torch.Tensor:
            r = torch.sqrt((vectors * vectors).sum(dim=1))
            s = self.strengths[species]
            phi = s[edge_index[0]] * s[edge_index[1]] * (self.cutoff - r) ** 3 * (1.0 + 0.5 * r)
            half = torch.where(contributions[edge_index[0]] == 0, 0.5 * phi, torch.zeros_like(phi))
            # 0 * coordinates: the energy is in the autograd graph even without edges
            energy = (0.0 * coordinates[:, 0]).index_add(0, edge_index[0], half)
            if self.nan_edge_forces:  # a finite energy whose edge forces are NaN
                energy = energy + 0.0 * torch.sqrt(((vectors - vectors.detach()) ** 2).sum())
            return torch.where(contributions == 0, energy, torch.zeros_like(energy))

        def forward(self, species: torch.Tensor, coordinates: torch.Tensor, edge_index_0: torch.Tensor,
                    contributions: torch.Tensor) -> torch.Tensor:
            vectors = coordinates[edge_index_0[1]] - coordinates[edge_index_0[0]]
            return self._energy(species, coordinates, vectors, edge_index_0, contributions)
    ''')

METHOD = textwrap.dedent('''\

        @torch.jit.export
        def energy_and_edge_vectors(self, species: torch.Tensor, coordinates: torch.Tensor,
                                    graphs: List[torch.Tensor], contributions: torch.Tensor
                                    ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
            edge_index = graphs[0]
            vectors = coordinates[edge_index[1]] - coordinates[edge_index[0]]
            return self._energy(species, coordinates, vectors, edge_index, contributions), [vectors], [edge_index]
    ''')


def write_pair_model(directory, name: str, *, with_method: bool = True, nan_edge_forces: bool = False,
                     cutoff: float = CUTOFF, strengths: Sequence[float] = STRENGTHS) -> Path:
    """Script the pair potential and save it as ``directory/name.pt``."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = SOURCE + (textwrap.indent(METHOD, "    ") if with_method else "")
    path = directory / f"{name}.py"
    path.write_text(source)
    linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))  # TorchScript reads it
    namespace = {}
    exec(compile(source, str(path), "exec"), namespace)
    module = torch.jit.script(namespace["PairVirialModel"](float(cutoff), [float(s) for s in strengths],
                                                           bool(nan_edge_forces)))
    pt = directory / f"{name}.pt"
    module.save(str(pt))
    return pt


def param_text(species=("Si", "C"), cutoff: float = CUTOFF) -> str:
    from kim_gnn import contract

    return contract.render_param_file(contract.StagedModelSpec(species=list(species), cutoff=cutoff, num_layers=1))


def closed_form(atoms, species=("Si", "C"), cutoff: float = CUTOFF, strengths: Sequence[float] = STRENGTHS):
    """(energy, per-atom energies, forces, per-atom virials [n, 6] in KIM's
    Voigt order xx yy zz yz xz xy and sign) on the periodic structure."""
    from ase.neighborlist import neighbor_list

    s = np.array([strengths[list(species).index(sym)] for sym in atoms.get_chemical_symbols()])
    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff)
    keep = d <= cutoff
    i, j, d, vec = i[keep], j[keep], d[keep], vec[keep]
    a = s[i] * s[j]
    phi = a * (cutoff - d) ** 3 * (1.0 + 0.5 * d)
    dphi = a * (-3.0 * (cutoff - d) ** 2 * (1.0 + 0.5 * d) + 0.5 * (cutoff - d) ** 3)
    n = len(atoms)
    energies = np.zeros(n)
    np.add.at(energies, i, 0.5 * phi)
    forces = np.zeros((n, 3))
    np.add.at(forces, i, (dphi / d)[:, None] * vec)  # F_i = sum_j phi' r_ij / r (r_ij = x_j - x_i)
    outer = 0.5 * (dphi / d)[:, None, None] * vec[:, :, None] * vec[:, None, :]
    voigt = np.stack([outer[:, 0, 0], outer[:, 1, 1], outer[:, 2, 2], outer[:, 1, 2], outer[:, 0, 2],
                      outer[:, 0, 1]], axis=1)
    virials = np.zeros((n, 6))
    np.add.at(virials, i, voigt)
    return float(energies.sum()), energies, forces, virials
