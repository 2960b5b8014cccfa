"""Padding atoms and staged graphs, exactly as the KIM side builds them.

A KIM model never sees a cell: periodic images arrive as explicit padding
particles out to the influence distance, and the TorchML driver turns one
neighbor list into L staged edge lists (``contract.py``,
``torchml-contract.md``). This module reproduces both steps from an ASE
``Atoms`` so that a converted model can be run, tested and compared in Python
exactly as the driver would run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from . import contract
from .errors import KimGnnError


@dataclass
class PaddedStructure:
    """Contributing atoms followed by their periodic images (padding atoms).

    ``image_of[p]`` is the index of the original atom that particle ``p`` is
    (an image of); -1 for the driver's dummy particle.
    """

    positions: np.ndarray  # [N, 3] float64
    species: np.ndarray  # [N] int64, index into the model's species list
    contributions: np.ndarray  # [N] int64, contract.CONTRIBUTING / NOT_CONTRIBUTING
    image_of: np.ndarray  # [N] int64
    num_contributing: int

    @property
    def num_particles(self) -> int:
        return len(self.positions)


@dataclass
class StagedGraphs(PaddedStructure):
    """A padded structure with the driver's staged edge lists.

    ``edge_index[k]`` is ``edge_index_k`` of the contract: ``edge_index[0]``
    the smallest (edges touching contributing atoms), ``edge_index[L-1]`` the
    largest. Every edge is present in both directions, no self-loops.
    """

    edge_index: List[np.ndarray]  # L arrays [2, E_k] int64


def species_indices(symbols: Sequence[str], species: Sequence[str]) -> np.ndarray:
    """Map chemical symbols to indices into the model's species list."""
    index = {s: i for i, s in enumerate(species)}
    unknown = sorted({s for s in symbols if s not in index})
    if unknown:
        raise KimGnnError(
            f"structure contains species {', '.join(unknown)} that the model does not have "
            f"(model species: {' '.join(species)})"
        )
    return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))


def check_structure(atoms) -> None:
    """Refuse structures that no model can be evaluated on."""
    if len(atoms) == 0:
        raise KimGnnError("structure is empty: it has no atoms")
    positions = np.asarray(atoms.positions, dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise KimGnnError(f"structure has non-finite (NaN or inf) coordinates for atom(s) {bad[:10].tolist()}")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        if not np.all(np.isfinite(cell)):
            raise KimGnnError("structure has a non-finite cell")
        lengths = np.linalg.norm(cell, axis=1)
        if np.any(lengths[pbc] < 1e-8):
            raise KimGnnError("structure is periodic along a direction whose cell vector is zero")
        if abs(np.linalg.det(cell)) < 1e-8:
            raise KimGnnError("structure is periodic but its cell has zero volume")


def _neighbor_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float, quantities: str):
    from vesin import NeighborList

    return NeighborList(cutoff=float(cutoff), full_list=True).compute(
        points=positions, box=cell, periodic=pbc, quantities=quantities, copy=True
    )


def pad_periodic_images(atoms, species: Sequence[str], influence_distance: float, skin: float = 0.0) -> PaddedStructure:
    """Contributing atoms plus every periodic image within
    ``influence_distance + skin`` of a contributing atom, as padding atoms.

    Works for any combination of pbc, triclinic cells and cells smaller than
    the influence distance (an atom then has many images of itself).
    """
    check_structure(atoms)
    if influence_distance <= 0:
        raise KimGnnError("influence distance must be positive")
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    n = len(positions)
    species_idx = species_indices(atoms.get_chemical_symbols(), species)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        # vesin needs a box even along non-periodic directions; any vector
        # completing the cell serves since no image is taken along it.
        from ase.geometry import complete_cell

        cell = complete_cell(cell)
        i, j, shifts = _neighbor_pairs(positions, cell, pbc, influence_distance + skin, "ijS")
        images = shifts.any(axis=1)
        # One padding particle per distinct (atom, cell shift) that lies
        # within reach of some contributing atom.
        keys = np.concatenate([j[images, None].astype(np.int64), shifts[images].astype(np.int64)], axis=1)
        keys = np.unique(keys, axis=0)
        image_of = keys[:, 0]
        image_positions = positions[image_of] + keys[:, 1:].astype(np.float64) @ cell
    else:
        image_of = np.zeros(0, dtype=np.int64)
        image_positions = np.zeros((0, 3), dtype=np.float64)

    all_positions = np.concatenate([positions, image_positions], axis=0)
    all_image_of = np.concatenate([np.arange(n, dtype=np.int64), image_of])
    contributions = np.full(len(all_positions), contract.NOT_CONTRIBUTING, dtype=np.int64)
    contributions[:n] = contract.CONTRIBUTING
    return PaddedStructure(
        positions=all_positions,
        species=species_idx[all_image_of],
        contributions=contributions,
        image_of=all_image_of,
        num_contributing=n,
    )


def staged_edge_lists(positions: np.ndarray, contributions: np.ndarray, cutoff: float, num_layers: int) -> List[np.ndarray]:
    """The driver's staged graphs, vectorised.

    The driver's algorithm (``torchml-contract.md``)::

        S_0 = contributing atoms
        for k in 0 .. L-1:
            for i in S_k, j in neighbors(i) with |x_j - x_i|^2 <= rc^2:
                add (i, j) and (j, i) to E_k;  add j to S_{k+1}

    With a full (symmetric) neighbor list this is: E_k = pairs with an
    endpoint in S_k; S_{k+1} = neighbors of S_k.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    # Search slightly beyond rc, then apply the driver's own inclusive test on
    # raw coordinates so that a pair exactly at rc is kept as the driver keeps it.
    search = float(cutoff) * (1.0 + 1e-9) + 1e-12
    i, j = _neighbor_pairs(positions, np.zeros((3, 3)), np.zeros(3, dtype=bool), search, "ij")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    d = positions[j] - positions[i]
    keep = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2] <= float(cutoff) ** 2) & (i != j)
    i, j = i[keep], j[keep]

    in_stage = contributions == contract.CONTRIBUTING
    graphs = []
    for _ in range(num_layers):
        from_stage = in_stage[i]
        edges = from_stage | in_stage[j]
        graphs.append(np.stack([i[edges], j[edges]]).astype(np.int64))
        next_stage = np.zeros_like(in_stage)
        next_stage[j[from_stage]] = True
        in_stage = next_stage
    return graphs


def build_staged_graphs(atoms, species: Sequence[str], cutoff: float, num_layers: int, skin: float = 0.0) -> StagedGraphs:
    """Everything the driver hands a converted model for this structure:
    padding atoms out to ``num_layers * cutoff (+ skin)``, the contributions
    vector, the image map and the L staged edge lists.

    A single isolated atom gets the driver's dummy partner at
    ``contract.DUMMY_PARTICLE_POSITION`` (not contributing, no edges).
    """
    if num_layers < 1:
        raise KimGnnError("number of layers must be at least 1")
    padded = pad_periodic_images(atoms, species, cutoff * num_layers, skin)
    if padded.num_particles == 1:
        padded = PaddedStructure(
            positions=np.concatenate([padded.positions, np.array([contract.DUMMY_PARTICLE_POSITION])]),
            species=np.concatenate([padded.species, padded.species[:1]]),
            contributions=np.array([contract.CONTRIBUTING, contract.NOT_CONTRIBUTING], dtype=np.int64),
            image_of=np.array([0, -1], dtype=np.int64),
            num_contributing=1,
        )
    graphs = staged_edge_lists(padded.positions, padded.contributions, cutoff, num_layers)
    return StagedGraphs(
        positions=padded.positions,
        species=padded.species,
        contributions=padded.contributions,
        image_of=padded.image_of,
        num_contributing=padded.num_contributing,
        edge_index=graphs,
    )
