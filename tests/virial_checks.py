"""Shared checks of per-atom virials (tests/core/test_virials.py and the adapters'
test directories): a converted model's per-atom virials (executor, folded
onto the atoms) against the original periodic model's own edge-force
decomposition (kim_gnn/verification/atomic_virials_reference.py)."""

import numpy as np

from kim_gnn.verification.atomic_virials_reference import reference_atomic_virials
from kim_gnn.executor import StagedExecutor
from kim_gnn.verification.structures import battery

#: The battery structures the per-atom virials are checked on: bulk,
#: triclinic multi-species, a cell smaller than the influence distance, a
#: slab, a molecule and an isolated atom.
CASES = ("rattled_bulk", "triclinic_alloy", "primitive_small_cell", "slab_vacuum", "molecule", "single_atom")


def cases(species, cutoff):
    return [c for c in battery(list(species), cutoff) if c.name in CASES]


def global_virial(atoms, original_result):
    """The original's global virial in KIM's sign and Voigt order:
    V * stress (ASE sign) for a full cell, -sum_a x_a (x) F_a without
    periodicity (the total force is zero, so the origin does not matter);
    None for a partly periodic cell (no stress of the original to compare)."""
    if np.all(atoms.pbc) and original_result.stress is not None:
        s = original_result.stress * atoms.get_volume()
    elif not np.any(atoms.pbc):
        s = -np.einsum("ai,aj->ij", atoms.positions, original_result.forces)
    else:
        return None
    s = 0.5 * (s + s.T)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def check_against_original(model_file, original, species, cutoff, rel=1e-9, sum_rel=1e-10):
    """Per structure: the staged per-atom virials equal the original's
    decomposition to ``rel`` relative to its largest component; their sum
    equals the original's global virial to ``sum_rel`` (relative to
    max(1, largest component)); folding keeps the sum; energies and forces
    are forward's. Returns {case name: per-atom virials}."""
    executor = StagedExecutor(model_file)
    out = {}
    for case in cases(species, cutoff):
        atoms = case.atoms
        plain = executor.run(atoms)
        got = executor.run(atoms, virials=True)
        # the method runs without the graph executor's optimisations (kim_gnn/virials.py), so its
        # numbers may differ from forward's in the last bits (float64: 1e-12; float32: its precision)
        same = 1e-12 if rel <= 1e-9 else rel
        assert abs(got.energy - plain.energy) <= same * max(1.0, abs(plain.energy)), case.name
        assert np.abs(got.energies - plain.energies).max(initial=0.0) <= same * max(1.0, np.abs(plain.energies).max(initial=0.0)), case.name
        assert np.abs(got.forces - plain.forces).max(initial=0.0) <= same * max(1.0, np.abs(plain.forces).max(initial=0.0)), case.name
        expected = reference_atomic_virials(original, atoms)
        scale = float(np.abs(expected).max())
        assert np.abs(got.virials - expected).max() <= rel * max(scale, 1e-300), (case.name, scale)
        # the sum is the driver's global virial (sum over every particle of x (x) dE/dx) ...
        total = got.virial
        assert np.abs(got.virials.sum(0) - total).max() <= sum_rel * max(1.0, np.abs(total).max()), case.name
        # ... and the original's, where it has one
        original_total = global_virial(atoms, original.evaluate(atoms))
        if original_total is not None:
            assert np.abs(got.virials.sum(0) - original_total).max() <= sum_rel * max(1.0, np.abs(original_total).max()), case.name
        assert np.abs(got.particle_virials.sum(0) - got.virials.sum(0)).max() <= 1e-12 * max(1.0, scale), case.name
        if got.stress is not None:
            s = got.stress
            voigt = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
            # (to the model's precision: in float32 the edge vectors are rounded differences)
            assert np.abs(got.stresses.sum(0) - voigt).max() <= sum_rel * max(1.0, np.abs(voigt).max()), case.name
        out[case.name] = got.virials
    return out


def assert_same_virials(first, second, tol=1e-12):
    """Per-atom virials of two conversions (pruned / unpruned / kernels) agree."""
    assert first.keys() == second.keys()
    for name in first:
        scale = max(1e-300, float(np.abs(second[name]).max()))
        assert np.abs(first[name] - second[name]).max() <= tol * max(scale, 1.0), name


def check_calculator_stresses(model_file, original, species, cutoff):
    """StagedCalculator's per-atom stresses (ASE's convention: the atom's
    virial over the cell volume, eV/A^3, Voigt xx yy zz yz xz xy) sum to
    get_stress() and equal the original's decomposition over the volume, on
    the fully periodic structures."""
    from kim_gnn.calculator import StagedCalculator

    checked = 0
    for case in cases(species, cutoff):
        atoms = case.atoms.copy()
        if not all(atoms.pbc):
            continue
        atoms.calc = StagedCalculator(model_file)
        stresses = atoms.get_stresses()
        assert stresses.shape == (len(atoms), 6), case.name
        stress = atoms.get_stress()
        assert np.abs(stresses.sum(0) - stress).max() <= 1e-12 * max(1.0, np.abs(stress).max()), case.name
        expected = reference_atomic_virials(original, atoms) / atoms.get_volume()
        assert np.abs(stresses - expected).max() <= 1e-9 * np.abs(expected).max(), case.name
        checked += 1
    assert checked >= 3
