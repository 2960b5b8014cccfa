"""Padding atoms and staged graphs, exactly as the KIM side builds them.

A KIM model never sees a cell: periodic images arrive as explicit padding
particles out to the influence distance, and the TorchML driver turns one
neighbor list into L staged edge lists (``contract.py``,
``docs/contract.md``). This module reproduces both steps from an ASE
``Atoms`` so that a converted model can be run, tested and compared in Python
exactly as the driver would run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

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


#: Atoms closer than this (Angstrom) are refused as overlapping: no
#: potential is meant to be evaluated there, and edge vectors of zero
#: length give NaN forces.
OVERLAP_DISTANCE = 1e-2

#: Refuse a structure that would need more particles than this once
#: padded out to the influence distance, or more edges in its largest
#: graph (a cell far smaller than the influence distance, or absurdly
#: dense): it would exhaust memory long before giving an answer.
MAX_PARTICLES = 5_000_000
MAX_EDGES = 50_000_000

#: Largest extent (Angstrom) of a structure or a periodic cell vector: the
#: neighbor-list library crashes the process (SIGFPE) on extents a few times
#: larger, so huge cells are refused with a message instead.
MAX_EXTENT = 1e5


def _periodic_heights(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Distance between lattice planes along each periodic direction."""
    from ase.geometry import complete_cell

    full = complete_cell(cell)
    volume = abs(np.linalg.det(full))
    heights = np.full(3, np.inf)
    for axis in np.flatnonzero(pbc):
        normal = np.cross(full[(axis + 1) % 3], full[(axis + 2) % 3])
        heights[axis] = volume / np.linalg.norm(normal)
    return heights


def check_structure(atoms, reach: float = 0.0, cutoff: Optional[float] = None) -> None:
    """Refuse structures that no model can be evaluated on: no atoms,
    non-finite coordinates or cell, a periodic direction without a cell
    vector, periodic cell vectors that span no lattice, overlapping atoms,
    and (with ``reach``, the distance padding must extend to, and the graph
    ``cutoff``) structures whose padding or graphs would not fit in memory.

    Non-periodic directions need no cell vector: a slab with pbc T,T,F and
    a zero third vector is valid.
    """
    if len(atoms) == 0:
        raise KimGnnError("structure is empty: it has no atoms")
    positions = np.asarray(atoms.positions, dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise KimGnnError(f"structure has non-finite (NaN or inf) coordinates for atom(s) {bad[:10].tolist()}")
    extent = float((positions.max(axis=0) - positions.min(axis=0)).max())
    if extent > MAX_EXTENT:
        raise KimGnnError(
            f"structure spans {extent:.3g} A: more than the {MAX_EXTENT:g} A kim-gnn handles (atoms flung far away?)"
        )
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if pbc.any():
        if not np.all(np.isfinite(cell)):
            raise KimGnnError("structure has a non-finite cell")
        lengths = np.linalg.norm(cell, axis=1)
        if np.any(lengths[pbc] < 1e-8):
            raise KimGnnError("structure is periodic along a direction whose cell vector is zero")
        if lengths[pbc].max() > MAX_EXTENT:
            raise KimGnnError(
                f"structure has a periodic cell vector {lengths[pbc].max():.3g} A long: more than the "
                f"{MAX_EXTENT:g} A kim-gnn handles"
            )
        directions = cell[pbc] / lengths[pbc, None]
        if np.linalg.svd(directions, compute_uv=False).min() < 1e-8:
            raise KimGnnError("structure is periodic but its periodic cell vectors are linearly dependent (zero volume)")
        heights = _periodic_heights(cell, pbc)
        if heights.min() < OVERLAP_DISTANCE:
            raise KimGnnError(
                f"structure has overlapping atoms: its periodic cell is {heights.min():.3g} A thick, so every atom "
                f"is closer than {OVERLAP_DISTANCE:g} A to its own periodic image"
            )
        if reach > 0:
            # The padding holds the images within ``reach`` of the cell: about
            # (h + 2 reach) / h times the atoms along each periodic direction
            # of height h; the graphs, the number density (the cell's height
            # along periodic directions, the atoms' extent, at least 1 A,
            # along the others) times the cutoff sphere per particle.
            particles = len(atoms) * np.prod([1.0 + 2.0 * reach / h if np.isfinite(h) else 1.0 for h in heights])
            rc = reach if cutoff is None else cutoff
            span = positions.max(axis=0) - positions.min(axis=0)
            density = len(atoms) / np.prod([h if np.isfinite(h) else max(float(span[axis]), 1.0)
                                            for axis, h in enumerate(heights)])
            edges = particles * density * 4.0 / 3.0 * np.pi * rc ** 3
            if particles > MAX_PARTICLES or edges > MAX_EDGES:
                raise KimGnnError(
                    f"structure would need about {particles:.3g} particles and {edges:.3g} edges once padded to "
                    f"{reach:g} A (periodic cell heights {', '.join(f'{h:.3g}' for h in heights[pbc])} A; limits "
                    f"{MAX_PARTICLES:g} particles, {MAX_EDGES:g} edges): use a larger cell"
                )
    _check_overlaps(positions, cell, pbc)


def _check_overlaps(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
    from ase.geometry import complete_cell

    if len(positions) < 2 and not pbc.any():
        return
    box = complete_cell(cell) if pbc.any() else np.zeros((3, 3))
    # Search at 1 A (a 0.01 A search makes the cell list enormous), keep the overlaps.
    i, j, d = _neighbor_pairs(positions, box, pbc, 1.0, "ijd")
    close = d < OVERLAP_DISTANCE
    i, j, d = i[close], j[close], d[close]
    if len(i):
        k = int(np.argmin(d))
        what = "its own periodic image" if i[k] == j[k] else f"atom {int(j[k])}"
        raise KimGnnError(
            f"structure has overlapping atoms: atom {int(i[k])} is {float(d[k]):.3g} A from {what} "
            f"(closer than {OVERLAP_DISTANCE:g} A)"
        )


def _neighbor_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float, quantities: str):
    from vesin import NeighborList

    return NeighborList(cutoff=float(cutoff), full_list=True).compute(
        points=positions, box=cell, periodic=pbc, quantities=quantities, copy=True
    )


def pad_periodic_images(atoms, species: Sequence[str], influence_distance: float, skin: float = 0.0,
                        cutoff: Optional[float] = None) -> PaddedStructure:
    """Contributing atoms plus every periodic image within
    ``influence_distance + skin`` of a contributing atom, as padding atoms.

    Works for any combination of pbc, triclinic cells and cells smaller than
    the influence distance (an atom then has many images of itself).
    """
    if influence_distance <= 0:
        raise KimGnnError("influence distance must be positive")
    check_structure(atoms, influence_distance + skin, cutoff)
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
        # Inclusive reach, as the driver's own cutoff test: search slightly
        # beyond it and keep what lies within.
        reach = influence_distance + skin
        i, j, shifts, d = _neighbor_pairs(positions, cell, pbc, reach * (1.0 + 1e-9) + 1e-12, "ijSd")
        images = shifts.any(axis=1) & (d <= reach)
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

    The driver's algorithm (``docs/contract.md``)::

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
    ``contract.DUMMY_PARTICLE_POSITION``: not contributing, the species of
    the atom, and no edges, even when the atom lies within ``cutoff`` of it
    (the driver appends it after building the graphs).
    """
    if num_layers < 1:
        raise KimGnnError("number of layers must be at least 1")
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise KimGnnError(f"cutoff must be a positive number, not {cutoff!r}")
    padded = pad_periodic_images(atoms, species, cutoff * num_layers, skin, cutoff)
    graphs = staged_edge_lists(padded.positions, padded.contributions, cutoff, num_layers)
    if padded.num_particles == 1:
        padded = PaddedStructure(
            positions=np.concatenate([padded.positions, np.array([contract.DUMMY_PARTICLE_POSITION])]),
            species=np.concatenate([padded.species, padded.species[:1]]),
            contributions=np.array([contract.CONTRIBUTING, contract.NOT_CONTRIBUTING], dtype=np.int64),
            image_of=np.array([0, -1], dtype=np.int64),
            num_contributing=1,
        )
    return StagedGraphs(
        positions=padded.positions,
        species=padded.species,
        contributions=padded.contributions,
        image_of=padded.image_of,
        num_contributing=padded.num_contributing,
        edge_index=graphs,
    )
