"""Property-based tests: the staged graph builder against a literal
transcription of the driver's loops, on random cells (triclinic, tiny,
elongated, 2D with a zero third vector), pbc combinations, species, cutoffs,
layer counts and pairs exactly at the cutoff."""

import itertools

import numpy as np
import pytest
from skip_policy import require_import
from ase import Atoms
from ase.geometry import complete_cell

from kim_gnn import contract
from kim_gnn.graphs import build_staged_graphs

hypothesis = require_import("hypothesis", "the test extra installs it (scripts/setup.sh)", module_level=True)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SPECIES = ["Si", "C", "O"]


def driver_staged_graphs(positions, contributions, cutoff, num_layers):
    """The driver's algorithm as written in the contract: the neighbor test
    ``dx*dx + dy*dy + dz*dz <= rc*rc`` on raw coordinates (evaluated for all
    pairs at once, same expression and order), then the stage loops over
    Python sets."""
    d = positions[None, :, :] - positions[:, None, :]  # d[i, j] = x_j - x_i
    within = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2] <= cutoff * cutoff
    np.fill_diagonal(within, False)
    neighbors = [np.flatnonzero(row).tolist() for row in within]
    stage = {i for i in range(len(positions)) if contributions[i] == contract.CONTRIBUTING}
    graphs = []
    for _ in range(num_layers):
        edges, next_stage = set(), set()
        for i in stage:
            for j in neighbors[i]:
                edges.add((i, j))
                edges.add((j, i))
                next_stage.add(j)
        graphs.append(edges)
        stage = next_stage
    return graphs


def images_within(atoms, reach):
    """Every (atom, shift) image within ``reach`` of an atom, by enumerating shifts."""
    pbc = np.asarray(atoms.pbc)
    cell = complete_cell(atoms.cell.array)
    volume = abs(np.linalg.det(cell))
    ranges = []
    for axis in range(3):
        if not pbc[axis]:
            ranges.append([0])
            continue
        height = volume / np.linalg.norm(np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3]))
        m = int(np.ceil(reach / height)) + 1
        ranges.append(range(-m, m + 1))
    images = set()
    for shift in itertools.product(*ranges):
        if shift == (0, 0, 0):
            continue
        moved = atoms.positions + np.array(shift) @ cell
        d = np.linalg.norm(moved[:, None, :] - atoms.positions[None, :, :], axis=2)
        for j in np.flatnonzero(d.min(axis=1) <= reach):
            images.add((int(j),) + tuple(shift))
    return images


@st.composite
def structures(draw):
    pbc = tuple(draw(st.lists(st.booleans(), min_size=3, max_size=3)))
    kind = draw(st.sampled_from(["cubic", "triclinic", "elongated", "tiny"]))
    num_layers = draw(st.integers(1, 2 if kind == "tiny" else 3))
    cutoff = draw(st.floats(1.2, 2.0 if kind == "tiny" else 3.0))
    base = {"cubic": (3.0, 6.0), "triclinic": (3.0, 6.0), "elongated": (2.5, 4.0), "tiny": (1.6, 2.4)}[kind]
    lengths = [draw(st.floats(*base)) for _ in range(3)]
    if kind == "elongated":
        lengths[draw(st.integers(0, 2))] = draw(st.floats(10.0, 20.0))
    cell = np.diag(lengths)
    if kind == "triclinic":
        for i, j in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]:
            cell[i, j] = draw(st.floats(-0.35, 0.35)) * lengths[i]
    if not pbc[2] and pbc[0] and pbc[1] and draw(st.booleans()):
        cell[2] = 0.0  # a 2D structure: no third cell vector at all
    n = draw(st.integers(1, 4))
    frac = np.array([[draw(st.floats(0.0, 1.0)) for _ in range(3)] for _ in range(n)])
    positions = frac @ np.where(np.linalg.norm(cell, axis=1)[:, None] > 0, cell, np.diag(lengths))
    if n >= 2 and draw(st.booleans()):
        # a pair exactly at the cutoff (the driver's test is inclusive)
        positions[1] = positions[0] + np.array([cutoff, 0.0, 0.0])
    symbols = [draw(st.sampled_from(SPECIES)) for _ in range(n)]
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=pbc)
    return atoms, cutoff, num_layers


def _too_close(atoms):
    d = atoms.get_all_distances(mic=bool(np.all(atoms.pbc) and atoms.cell.volume > 0))
    np.fill_diagonal(d, np.inf)
    return len(atoms) > 1 and d.min() < 0.5


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(structures())
def test_staged_graphs_match_the_driver_on_random_structures(case):
    atoms, cutoff, num_layers = case
    hypothesis.assume(not _too_close(atoms))
    # keep the O(N^2) transcription small
    cell = complete_cell(atoms.cell.array)
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = cutoff * num_layers
    hypothesis.assume(len(atoms) * np.prod([2 * np.ceil(reach / h) + 1 if p else 1
                                            for h, p in zip(heights, atoms.pbc)]) < 1500)
    graphs = build_staged_graphs(atoms, SPECIES, cutoff, num_layers)
    n = len(atoms)

    # contributing atoms first, then padding (or the dummy of a lone atom)
    assert graphs.num_contributing == n
    assert graphs.contributions[:n].tolist() == [contract.CONTRIBUTING] * n
    assert np.all(graphs.contributions[n:] == contract.NOT_CONTRIBUTING)
    expected_species = [SPECIES.index(s) for s in atoms.get_chemical_symbols()]
    assert graphs.species[:n].tolist() == expected_species

    if graphs.num_particles == 2 and graphs.image_of.tolist() == [0, -1]:
        assert graphs.positions[1].tolist() == list(contract.DUMMY_PARTICLE_POSITION)
        assert all(e.shape == (2, 0) for e in graphs.edge_index)
    else:
        # padding: exactly the periodic images within the influence distance
        cell = complete_cell(atoms.cell.array)
        shifts = np.linalg.solve(cell.T, (graphs.positions[n:] - atoms.positions[graphs.image_of[n:]]).T).T
        assert np.allclose(shifts, np.round(shifts), atol=1e-8)
        got = {(int(j),) + tuple(int(x) for x in np.round(s)) for j, s in zip(graphs.image_of[n:], shifts)}
        assert got == images_within(atoms, cutoff * num_layers)

    # the staged edge lists: exactly the driver's
    expected = driver_staged_graphs(graphs.positions, graphs.contributions, cutoff, num_layers)
    for k in range(num_layers):
        e = graphs.edge_index[k]
        assert e.dtype == np.int64 and e.shape[0] == 2
        pairs = list(zip(e[0].tolist(), e[1].tolist()))
        assert len(pairs) == len(set(pairs))
        assert set(pairs) == expected[k]


@settings(max_examples=25, deadline=None, database=None)
@given(st.floats(0.5, 5.0), st.integers(1, 4), st.floats(-1.0, 1.0))
def test_lone_atom_dummy_never_has_edges(cutoff, num_layers, offset):
    """Even with the atom within rc of the dummy's position."""
    x = np.array(contract.DUMMY_PARTICLE_POSITION) + np.array([offset * cutoff, 0.0, 0.0])
    graphs = build_staged_graphs(Atoms("C", positions=[x]), SPECIES, cutoff, num_layers)
    assert graphs.num_particles == 2
    assert graphs.species.tolist() == [1, 1]  # the dummy has the atom's species
    assert all(e.shape == (2, 0) for e in graphs.edge_index)
