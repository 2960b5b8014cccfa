"""StagedCalculator: the executor as an ASE calculator, against the original model."""

import numpy as np
import pytest
from ase.build import bulk

from kim_gnn.calculator import StagedCalculator
from kim_gnn.nequip.v06.reference import NequIPOriginal

OPTIONS = dict(num_layers=3, species=("Si", "C"), model_dtype="float64", zbl=True)


@pytest.fixture(scope="module")
def atoms():
    a = bulk("Si", "diamond", a=5.2, cubic=True)
    a.symbols[[1, 4]] = "C"
    a.rattle(0.05, seed=11)
    return a


def test_energy_forces_stress_energies(nequip_models, atoms):
    calc = StagedCalculator(nequip_models.converted(**OPTIONS))
    original = NequIPOriginal(nequip_models.deployed(**OPTIONS)).evaluate(atoms)
    a = atoms.copy()
    a.calc = calc
    assert abs(a.get_potential_energy() - original.energy) < 1e-10 * abs(original.energy)
    assert np.abs(a.get_forces() - original.forces).max() < 1e-10
    assert np.abs(a.get_potential_energies() - original.energies).max() < 1e-10
    from ase.stress import full_3x3_to_voigt_6_stress

    assert np.abs(a.get_stress() - full_3x3_to_voigt_6_stress(original.stress)).max() < 1e-10


def test_stress_is_the_strain_derivative(nequip_models, atoms):
    """-sum F x r / V equals (1/V) dE/d(strain) by finite differences."""
    a = atoms.copy()
    a.calc = StagedCalculator(nequip_models.converted(**OPTIONS))
    stress = a.get_stress(voigt=False)
    h = 1e-5
    numeric = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[i, j] += sign * h
                b = atoms.copy()
                b.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                b.calc = a.calc
                energies.append(b.get_potential_energy())
            numeric[i, j] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    numeric = 0.5 * (numeric + numeric.T)
    assert np.abs(stress - numeric).max() < 1e-7


def test_forces_are_the_energy_gradient(nequip_models, atoms):
    a = atoms.copy()
    a.calc = StagedCalculator(nequip_models.converted(**OPTIONS))
    forces = a.get_forces()
    h = 1e-5
    for atom, axis in [(0, 0), (1, 2), (5, 1)]:
        energies = []
        for sign in (1, -1):
            b = atoms.copy()
            b.positions[atom, axis] += sign * h
            b.calc = a.calc
            energies.append(b.get_potential_energy())
        assert abs(-(energies[0] - energies[1]) / (2 * h) - forces[atom, axis]) < 1e-6


def test_molecule_has_no_stress(nequip_models):
    from ase import Atoms
    from ase.calculators.calculator import PropertyNotImplementedError

    m = Atoms("SiC", positions=[[0, 0, 0], [1.9, 0, 0]])
    m.calc = StagedCalculator(nequip_models.converted(**OPTIONS))
    assert np.isfinite(m.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError):
        m.get_stress()


def test_reads_a_portable_model_directory(nequip_models, tmp_path, atoms):
    from kim_gnn.export import write_portable_model
    from kim_gnn.nequip import convert_nequip

    item = write_portable_model(convert_nequip(nequip_models.deployed(**OPTIONS)), tmp_path / "X__MO_000000000000_000")
    a, b = atoms.copy(), atoms.copy()
    a.calc = StagedCalculator(item)
    b.calc = StagedCalculator(nequip_models.converted(**OPTIONS))
    assert a.get_potential_energy() == b.get_potential_energy()
