"""Per-particle virials (KIM's ``partialParticleVirial``) from kim-gnn's
driver through the real KIM API, asked for from Python with kimpy (ASE's
KIM calculator never asks for them): the edge-force decomposition
(docs/per-atom-virials.md), folded by the simulator (here: by ASE's
padding image map) onto the atoms.

The reference is a hand-written TorchScript pair potential
(pair_virial_model.py) whose per-atom virials are known in closed form;
converted kim-gnn models are held to their own global virial, and to the
original model's decomposition in test_lammps_stress_atom.py."""

import numpy as np
import pytest

from lammps_e2e import unavailable
from pair_virial_model import closed_form, param_text, write_pair_model

try:
    import kimpy
except ImportError:
    unavailable("kimpy is not installed (scripts/install_kimpy.sh; needs libkim-api-dev)", module_level=True)
from ase.calculators.kim import KIM  # noqa: E402

TOL = 1e-9  # relative to the largest component
SUM_TOL = 1e-10


@pytest.fixture(scope="session")
def pair_items(kim_collection, tmp_path_factory):
    """The pair potential installed with the method, without it, and with
    NaN edge forces."""
    root = tmp_path_factory.mktemp("pair-models")
    items = {}
    for kind, options in (("method", {}), ("no_method", {"with_method": False}),
                          ("nan", {"nan_edge_forces": True})):
        pt = write_pair_model(root, kind, **options)
        items[kind] = kim_collection.install_model(pt, f"PairVirial_{kind}__MO_000000000000_000",
                                                   param_text=param_text())
    return items


def virial_structures():
    """Two species throughout: a rattled cubic cell, a skewed triclinic
    cell, a primitive cell smaller than the influence distance, a slab."""
    from ase.build import bulk

    rng = np.random.default_rng(7)
    out = {}
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.symbols[rng.permutation(len(atoms))[:3]] = "C"
    atoms.rattle(0.07, seed=1)
    out["bulk"] = atoms
    skew = np.array([[1.0, 0.12, -0.07], [0.05, 1.0, 0.09], [0.11, -0.06, 1.0]])
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
    atoms.set_cell(atoms.cell.array @ skew, scale_atoms=True)
    atoms.symbols[rng.permutation(len(atoms))[:7]] = "C"
    atoms.rattle(0.05, seed=2)
    out["triclinic"] = atoms
    atoms = bulk("Si", "diamond", a=4.6)  # primitive: 2 atoms, |a| = 3.25 < ... every atom sees its images
    atoms.symbols[1] = "C"
    atoms.rattle(0.04, seed=3)
    out["small_cell"] = atoms
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (1, 1, 2)
    atoms.symbols[rng.permutation(len(atoms))[:5]] = "C"
    atoms.rattle(0.05, seed=4)
    atoms.center(vacuum=4.0, axis=2)
    atoms.pbc = (True, True, False)
    out["slab"] = atoms
    return out


def kim_particle_virials(item, atoms):
    """Energy, forces, the virial and the per-particle virials (folded onto
    the atoms by ASE's padding image map) from one KIM compute."""
    atoms = atoms.copy()
    calc = KIM(item, options={"release_GIL": True})
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    n_all = int(calc._num_particles[0])
    name = kimpy.compute_argument_name
    assert (calc._compute_args.get_argument_support_status(name.partialParticleVirial)
            == kimpy.support_status.optional)
    particle_virial = np.zeros((n_all, 6))
    virial = np.zeros(6)
    calc._compute_args.set_argument_pointer(name.partialParticleVirial, particle_virial)
    calc._compute_args.set_argument_pointer(name.partialVirial, virial)
    calc._kim_gnn_test_arrays = (particle_virial, virial)  # registered by address: keep them alive
    calc._kim_model.compute(calc._compute_args, True)
    folded = particle_virial[: len(atoms)].copy()
    image_of = np.asarray(calc._kimmodeldata.padding_image_of)
    if image_of.size:
        np.add.at(folded, image_of, particle_virial[len(atoms):])
    return {"energy": energy, "forces": forces, "virial": virial.copy(), "particle_virial": folded,
            "unfolded": particle_virial.copy(), "calc": calc}


@pytest.mark.parametrize("name", ["bulk", "triclinic", "small_cell", "slab"])
def test_pair_potential_particle_virials_equal_the_closed_form(pair_items, kim_log_dir, name):
    atoms = virial_structures()[name]
    got = kim_particle_virials(pair_items["method"], atoms)
    energy, _, forces, virials = closed_form(atoms)
    assert abs(got["energy"] - energy) <= 1e-10 * max(1.0, abs(energy))
    np.testing.assert_allclose(got["forces"], forces, rtol=0, atol=1e-10 * max(1.0, np.abs(forces).max()))
    scale = np.abs(virials).max()
    np.testing.assert_allclose(got["particle_virial"], virials, rtol=0, atol=TOL * scale, err_msg=name)
    # partialVirial stays the global virial, and the per-particle ones sum to it (padding shares included)
    np.testing.assert_allclose(got["unfolded"].sum(axis=0), got["virial"], rtol=0, atol=SUM_TOL * scale)
    np.testing.assert_allclose(got["virial"], virials.sum(axis=0), rtol=0, atol=SUM_TOL * scale)
    assert np.abs(got["particle_virial"]).max() > 0.1  # not zeros


def test_repeated_computes_keep_the_edge_forces(pair_items, kim_log_dir):
    """Several computes on one model object (TorchScript optimises a method
    after its first calls; the driver runs energy_and_edge_vectors
    unoptimised, or the edge vectors drop out of the autograd graph and
    their edge forces come back empty)."""
    atoms = virial_structures()["triclinic"].copy()
    calc = KIM(pair_items["method"], options={"release_GIL": True})
    atoms.calc = calc
    name = kimpy.compute_argument_name
    # one buffer for every compute, far larger than the particles (padding included) will ever be
    particle_virial = np.zeros((50 * len(atoms) + 1000, 6))
    calc._compute_args.set_argument_pointer(name.partialParticleVirial, particle_virial)
    calc._kim_gnn_test_arrays = particle_virial  # registered by address: keep it alive
    for step in range(5):
        atoms.positions[step] += 0.02
        particle_virial[:] = np.nan
        atoms.get_potential_energy()  # ASE's compute, with the pointer registered above
        n_all = int(calc._num_particles[0])
        folded = particle_virial[: len(atoms)].copy()
        np.add.at(folded, np.asarray(calc._kimmodeldata.padding_image_of), particle_virial[len(atoms):n_all])
        expected = closed_form(atoms)[3]
        np.testing.assert_allclose(folded, expected, rtol=0, atol=TOL * np.abs(expected).max(), err_msg=str(step))


def test_single_atom_has_zero_particle_virial(pair_items, kim_log_dir):
    from ase import Atoms

    got = kim_particle_virials(pair_items["method"], Atoms("C", positions=[[0.0, 0.0, 0.0]]))
    assert got["energy"] == 0.0 and np.all(got["particle_virial"] == 0.0) and np.all(got["virial"] == 0.0)


def test_particle_virials_only_when_asked(pair_items, kim_log_dir, tmp_path, monkeypatch):
    """Without a partialParticleVirial pointer the driver calls forward (one
    JSON timing line per compute says whether it was asked)."""
    import json

    timing = tmp_path / "timing.jsonl"
    monkeypatch.setenv("KIM_GNN_DRIVER_TIMING", str(timing))
    kim_particle_virials(pair_items["method"], virial_structures()["bulk"])
    lines = [json.loads(line) for line in timing.read_text().splitlines()]
    assert [line["particle_virial"] for line in lines] == [False, True]


def test_model_without_the_method_reports_particle_virial_not_supported(pair_items, kim_log_dir):
    """A model without energy_and_edge_vectors (a stock TorchML file, an
    older kim-gnn conversion) runs as before; partialParticleVirial is
    notSupported (a simulator then says so itself), not an error."""
    atoms = virial_structures()["bulk"].copy()
    calc = KIM(pair_items["no_method"], options={"release_GIL": True})
    atoms.calc = calc
    energy, _, forces, _ = closed_form(atoms)
    assert abs(atoms.get_potential_energy() - energy) <= 1e-10 * abs(energy)
    np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0, atol=1e-10 * np.abs(forces).max())
    name = kimpy.compute_argument_name
    assert (calc._compute_args.get_argument_support_status(name.partialParticleVirial)
            == kimpy.support_status.notSupported)
    assert (calc._compute_args.get_argument_support_status(name.partialVirial) == kimpy.support_status.optional)
    log = kim_log_dir.read_text()
    assert "partialParticleVirial is not supported by this model (it has no energy_and_edge_vectors method" in log
    assert not [line for line in log.splitlines() if "* error *" in line.lower()]


def test_nan_edge_forces_are_a_kim_error(pair_items, kim_log_dir):
    """Edge forces with a NaN: the compute fails with a KIM error (the
    process lives on), and the per-particle virials are not left half
    written."""
    atoms = virial_structures()["bulk"]
    start = kim_log_dir.stat().st_size if kim_log_dir.exists() else 0
    with pytest.raises(Exception):
        kim_particle_virials(pair_items["nan"], atoms)
    written = kim_log_dir.read_text()[start:]
    assert "kim-gnn driver: the edge forces dE/dr of edge 0 are not finite (NaN or inf): no per-particle virial" \
        in written, written[-3000:]


# --- converted models against the original model's own decomposition ------------------

def _original_virials(model, atoms):
    from kim_gnn.adapters import detect_adapter
    from kim_gnn.verification.atomic_virials_reference import reference_atomic_virials

    original = detect_adapter(model.original).original(model.original, model.spec)
    return reference_atomic_virials(original, atoms)


@pytest.mark.parametrize("architecture,case_name", [
    ("nequip", "triclinic_alloy"), ("nequip", "slab_vacuum"), ("mace", "triclinic_alloy"),
])
def test_converted_model_particle_virials_equal_the_originals_decomposition(installed_models, kim_log_dir,
                                                                          architecture, case_name):
    """A converted model (energy_and_edge_vectors) through the KIM API: the
    per-atom virials folded onto the atoms equal the original periodic
    model's own edge-force decomposition (MACE: its atomic_virials; NequIP:
    autograd on its periodic edge vectors) to 1e-9, and sum to the virial."""
    from kim_gnn.verification.structures import battery

    model = installed_models(architecture)
    atoms = next(c for c in battery(model.spec.species, model.spec.cutoff) if c.name == case_name).atoms
    got = kim_particle_virials(model.item, atoms)
    expected = _original_virials(model, atoms)
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got["particle_virial"], expected, rtol=0, atol=TOL * scale, err_msg=case_name)
    np.testing.assert_allclose(got["unfolded"].sum(axis=0), got["virial"], rtol=0, atol=SUM_TOL * scale)
    print(f"{architecture} {case_name}: max |dW| {np.abs(got['particle_virial'] - expected).max():.2e} eV "
          f"(largest component {scale:.3g} eV)")
