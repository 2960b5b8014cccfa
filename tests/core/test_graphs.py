"""Staged graphs against a literal transcription of the driver's algorithm."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from kim_gnn import contract
from kim_gnn.errors import KimGnnError
from kim_gnn.graphs import build_staged_graphs, pad_periodic_images
from kim_gnn.verification.structures import battery


def driver_staged_graphs(positions, contributions, cutoff, num_layers):
    """The TorchML driver's loops, literally (O(N^2) neighbor search, sets)."""
    n = len(positions)
    neighbors = [[] for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j:
                d = positions[j] - positions[i]
                if d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= cutoff * cutoff:
                    neighbors[i].append(j)
    stage = {i for i in range(n) if contributions[i] == contract.CONTRIBUTING}
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


def brute_force_images(atoms, reach):
    """Every periodic image within ``reach`` of an atom, by enumerating shifts."""
    cell = atoms.cell.array
    heights = atoms.cell.volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1) if all(atoms.pbc) else None
    ranges = []
    for axis in range(3):
        if not atoms.pbc[axis]:
            ranges.append([0])
            continue
        if heights is None:
            normal = np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
            h = abs(np.dot(cell[axis], normal)) / np.linalg.norm(normal)
        else:
            h = heights[axis]
        m = int(np.ceil(reach / h)) + 1
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


def structures():
    cases = {c.name: c.atoms for c in battery(["Si", "C"], cutoff=3.5)}
    a = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    a.rattle(0.05, seed=1)
    a.set_chemical_symbols(["Si"] * len(a))
    cases["fcc_2x2x2"] = a
    return cases


@pytest.mark.parametrize("name", list(structures()))
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_staged_graphs_equal_the_drivers(name, num_layers):
    atoms = structures()[name]
    cutoff = 3.5 if num_layers < 3 else 2.6
    graphs = build_staged_graphs(atoms, ["Si", "C"], cutoff, num_layers)
    expected = driver_staged_graphs(graphs.positions, graphs.contributions, cutoff, num_layers)
    for k in range(num_layers):
        got = graphs.edge_index[k]
        assert got.dtype == np.int64 and got.shape[0] == 2
        pairs = list(zip(got[0].tolist(), got[1].tolist()))
        assert len(pairs) == len(set(pairs)), "duplicate edges"
        assert set(pairs) == expected[k]
        assert all(i != j for i, j in pairs)
    # nested: each stage contains the previous one
    for k in range(1, num_layers):
        smaller = set(zip(*graphs.edge_index[k - 1].tolist()))
        assert smaller <= set(zip(*graphs.edge_index[k].tolist()))


@pytest.mark.parametrize("name", ["rattled_bulk", "triclinic_alloy", "primitive_small_cell", "slab_vacuum"])
def test_padding_holds_every_image_within_reach(name):
    atoms = structures()[name]
    reach = 7.0
    padded = pad_periodic_images(atoms, ["Si", "C"], reach)
    n = len(atoms)
    assert padded.num_contributing == n
    assert np.all(padded.contributions[:n] == contract.CONTRIBUTING)
    assert np.all(padded.contributions[n:] == contract.NOT_CONTRIBUTING)
    assert np.array_equal(padded.image_of[:n], np.arange(n))
    # each padding particle is a lattice translate of the atom it images
    shifts = np.linalg.solve(atoms.cell.array.T, (padded.positions[n:] - atoms.positions[padded.image_of[n:]]).T).T
    assert np.allclose(shifts, np.round(shifts), atol=1e-9)
    got = {(int(j),) + tuple(int(x) for x in np.round(s)) for j, s in zip(padded.image_of[n:], shifts)}
    assert got == brute_force_images(atoms, reach)
    assert np.array_equal(padded.species, padded.species[padded.image_of])


def test_small_cell_has_many_images_of_each_atom():
    atoms = bulk("Si", "diamond", a=5.43)  # 2 atoms, cell far smaller than 3 x 4 A
    graphs = build_staged_graphs(atoms, ["Si"], 4.0, 3)
    assert graphs.num_contributing == 2
    # a 12 A sphere around each of 2 atoms in Si (0.05 atoms/A^3): ~400 particles
    assert graphs.num_particles > 350
    assert np.bincount(graphs.image_of).min() > 150


def test_single_atom_gets_the_drivers_dummy_particle():
    graphs = build_staged_graphs(Atoms("Si", positions=[[1.0, 2.0, 3.0]]), ["Si"], 4.0, 2)
    assert graphs.num_particles == 2
    assert graphs.positions[1].tolist() == list(contract.DUMMY_PARTICLE_POSITION)
    assert graphs.contributions.tolist() == [contract.CONTRIBUTING, contract.NOT_CONTRIBUTING]
    assert graphs.image_of.tolist() == [0, -1]
    assert all(e.shape == (2, 0) for e in graphs.edge_index)


def test_isolated_atom_in_a_big_periodic_box_is_like_a_single_atom():
    atoms = Atoms("Si", positions=[[1.0, 1.0, 1.0]], cell=[30.0, 30.0, 30.0], pbc=True)
    graphs = build_staged_graphs(atoms, ["Si"], 4.0, 2)
    assert graphs.num_particles == 2 and graphs.image_of.tolist() == [0, -1]


def test_molecule_has_no_padding():
    m = molecule("CH4")
    graphs = build_staged_graphs(m, ["H", "C"], 1.5, 2)
    assert graphs.num_particles == 5
    assert graphs.edge_index[0].shape[1] == 8


def test_pair_exactly_at_cutoff_is_kept_like_the_driver():
    atoms = Atoms("Si2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 2.5]])
    graphs = build_staged_graphs(atoms, ["Si"], 2.5, 1)
    assert sorted(zip(*graphs.edge_index[0].tolist())) == [(0, 1), (1, 0)]


@pytest.mark.parametrize(
    "atoms, message",
    [
        (Atoms(), "empty"),
        (Atoms("Si2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "non-finite"),
        (Atoms("SiO", positions=[[0, 0, 0], [1.5, 0, 0]]), "species O"),
        (Atoms("Si", positions=[[0, 0, 0]], cell=[[1, 0, 0], [0, 1, 0], [0, 0, 0]], pbc=True), "cell"),
    ],
)
def test_bad_structures_are_refused_clearly(atoms, message):
    with pytest.raises(KimGnnError, match=message):
        build_staged_graphs(atoms, ["Si"], 3.0, 2)


def test_size_estimate_accepts_large_cells_and_refuses_tiny_ones():
    """The padding/graph size guard of check_structure: a 4096-atom Si cell
    padded to 5 A (an Allegro model's reach) is far below the limits (it was
    refused when the estimate counted whole periodic images), while a cell
    padded far beyond its own size still is refused."""
    from kim_gnn.graphs import MAX_PARTICLES, check_structure

    large = bulk("Si", "diamond", a=5.43, cubic=True) * (8, 8, 8)
    check_structure(large, reach=5.0, cutoff=5.0)
    check_structure(large, reach=12.0, cutoff=4.0)
    padded = pad_periodic_images(large, ["Si"], 5.0)
    assert padded.num_particles < MAX_PARTICLES and padded.num_particles < 3 * len(large)
    small = bulk("Si", "diamond", a=5.43, cubic=True)
    with pytest.raises(KimGnnError, match="use a larger cell"):
        check_structure(small, reach=200.0, cutoff=6.0)
