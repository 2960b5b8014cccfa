"""The built-in verification battery and the transformations of the property checks.

Structures are built for any species list and cutoff: the nearest-neighbor
distance is set from the cutoff so that every structure has edges, and atoms
never get close enough for a repulsive pair term to blow up.
"""

import hashlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk


@dataclass
class Case:
    """One check of the battery: the converted model on ``atoms`` must equal
    the original model on ``reference_atoms`` after ``map_result``."""

    name: str
    atoms: Atoms
    reference_atoms: Optional[Atoms] = None  # defaults to atoms
    # maps (energy, energies, forces, stress) of the reference to what is expected on atoms
    map_result: Optional[Callable] = None
    skin: float = 0.0
    notes: str = ""

    @property
    def reference(self) -> Atoms:
        return self.atoms if self.reference_atoms is None else self.reference_atoms


@dataclass
class Expected:
    energy: float
    energies: Optional[np.ndarray]
    forces: np.ndarray
    stress: Optional[np.ndarray]
    #: absolute stress tolerance where the default does not apply (a stress
    #: from finite differences carries their error)
    stress_tolerance: Optional[float] = None


def structure_fingerprint(atoms) -> str:
    """SHA-256 (first 16 hex digits) of the exact bytes a model is given:
    atomic numbers, positions, cell and pbc. Equal fingerprints: the same
    structure to the last bit (verify checks that both sides evaluated it)."""
    digest = hashlib.sha256()
    for array, dtype in ((atoms.numbers, np.int64), (atoms.positions, np.float64),
                         (atoms.cell.array, np.float64), (atoms.pbc, np.uint8)):
        digest.update(np.ascontiguousarray(np.asarray(array, dtype=dtype)).tobytes())
    return digest.hexdigest()[:16]


def nearest_neighbor_distance(cutoff: float) -> float:
    return float(min(2.35, 0.62 * cutoff))


def _diamond(symbol: str, nn: float, cubic: bool = True) -> Atoms:
    return bulk(symbol, "diamond", a=nn * 4.0 / np.sqrt(3.0), cubic=cubic)


def _assign_species(atoms: Atoms, species: Sequence[str], rng) -> Atoms:
    symbols = [species[k % len(species)] for k in range(len(atoms))]
    rng.shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    return atoms


def battery(species: Sequence[str], cutoff: float, seed: int = 0) -> List[Case]:
    """Rattled bulk, triclinic multi-species alloy, strained cell, primitive
    cell smaller than the influence distance, slab with vacuum, molecule,
    dimer near the cutoff, single atom."""
    rng = np.random.default_rng(seed)
    nn = nearest_neighbor_distance(cutoff)
    first = species[0]
    cases = []

    a = _diamond(first, nn) * (2, 1, 1)
    a.rattle(0.05 * nn, seed=seed + 1)
    cases.append(Case("rattled_bulk", a))

    a = _assign_species(_diamond(first, nn), species, rng)
    a.set_cell(a.cell.array @ np.array([[1.0, 0.08, -0.05], [0.03, 1.0, 0.06], [0.1, -0.04, 1.0]]), scale_atoms=True)
    a.rattle(0.04 * nn, seed=seed + 2)
    cases.append(Case("triclinic_alloy", a))

    a = _assign_species(_diamond(first, nn), species, rng)
    strain = np.eye(3) + np.array([[0.04, 0.01, 0.0], [0.01, -0.03, 0.02], [0.0, 0.02, 0.05]])
    a.set_cell(a.cell.array @ strain, scale_atoms=True)
    a.rattle(0.03 * nn, seed=seed + 3)
    cases.append(Case("strained", a))

    a = _assign_species(_diamond(first, nn, cubic=False), species, rng)
    a.rattle(0.05 * nn, seed=seed + 4)
    cases.append(Case("primitive_small_cell", a, notes="cell smaller than the influence distance"))

    a = _assign_species(_diamond(first, nn) * (1, 1, 2), species, rng)
    a.center(vacuum=6.0, axis=2)
    a.pbc = (True, True, False)
    a.rattle(0.04 * nn, seed=seed + 5)
    cases.append(Case("slab_vacuum", a, notes="pbc T,T,F"))

    a = _assign_species(_diamond(first, nn)[:8], species, rng)
    a.rattle(0.05 * nn, seed=seed + 6)
    a.set_cell(np.zeros((3, 3)))
    a.pbc = False
    cases.append(Case("molecule", a, notes="no pbc, no cell"))

    pair = [species[0], species[-1]]
    a = Atoms(pair, positions=[[0.0, 0.0, 0.0], [0.3, 0.4, 0.0]])
    a.positions[1] = a.positions[1] / np.linalg.norm(a.positions[1]) * cutoff * 0.98
    cases.append(Case("dimer_near_cutoff", a))

    cases.append(Case("single_atom", Atoms([species[-1]], positions=[[0.1, 0.2, 0.3]])))
    return cases


def random_rotation(rng) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def property_cases(species: Sequence[str], cutoff: float, seed: int = 0) -> List[Case]:
    """Rotation, translation with re-wrapping (other periodic images),
    permutation, supercell scaling and padding skin, each checked against the
    original model on the untransformed structure."""
    rng = np.random.default_rng(seed + 100)
    base = battery(species, cutoff, seed)
    alloy = next(c.atoms for c in base if c.name == "triclinic_alloy")
    bulk_case = next(c.atoms for c in base if c.name == "rattled_bulk")
    cases = []

    rot = random_rotation(rng)
    rotated = alloy.copy()
    rotated.set_cell(alloy.cell.array @ rot.T, scale_atoms=False)
    rotated.positions = alloy.positions @ rot.T
    cases.append(Case(
        "rotation", rotated, alloy,
        lambda e: Expected(e.energy, e.energies, e.forces @ rot.T, None if e.stress is None else rot @ e.stress @ rot.T),
    ))

    moved = alloy.copy()
    moved.positions += rng.normal(size=3) * 3.0
    moved.wrap()
    cases.append(Case("translation_wrap", moved, alloy, notes="other periodic images"))

    perm = rng.permutation(len(alloy))
    permuted = alloy[perm]
    cases.append(Case(
        "permutation", permuted, alloy,
        lambda e: Expected(e.energy, None if e.energies is None else e.energies[perm], e.forces[perm], e.stress),
    ))

    n_rep = 2
    supercell = bulk_case * (n_rep, 1, 1)
    cases.append(Case(
        "supercell_2x1x1", supercell, bulk_case,
        lambda e: Expected(
            n_rep * e.energy, None if e.energies is None else np.tile(e.energies, n_rep),
            np.tile(e.forces, (n_rep, 1)), e.stress,
        ),
    ))

    cases.append(Case("padding_skin", alloy.copy(), alloy, skin=0.37 * cutoff, notes="extra padding must not matter"))
    return cases
