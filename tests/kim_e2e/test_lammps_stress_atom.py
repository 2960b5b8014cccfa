"""LAMMPS ``compute stress/atom`` through kim-gnn's driver (KIM's
``partialParticleVirial``) under MPI, against the closed-form per-atom
virials of a hand-written pair potential (pair_virial_model.py) and, for
converted models that have ``energy_and_edge_vectors``, their own global
virial.

LAMMPS's convention (compute stress/atom docs): the per-atom "stress" is
the negative of the per-atom pressure times volume, in pressure*volume
units (metal: bar*A^3), ordered xx yy zz xy xz yz, so that its sum over
the atoms is -P_ab * V. With KIM's per-particle virial W_i (eV, sign
sum x (x) dE/dx), stress/atom_i = W_i * nktv2p. Both are checked: each
atom's value against the closed form (1e-9 relative to the largest
component), and the sum against LAMMPS's own pressure tensor times the
volume (1e-10).

A 200-step NVE run on 2 ranks with stress/atom and heat/flux: no error,
and every step the per-atom stresses summed equal -P_virial * V."""

import os
import subprocess

import numpy as np
import pytest

from lammps_e2e import (NKTV2P_METAL, OPENMPI_ENV, TIMEOUT, LammpsError, lammps_executable, mpi_command, thermo_tables,
                        unavailable, write_data)
from pair_virial_model import closed_form, param_text, write_pair_model
from test_lammps import SPECIES, lammps, mpirun, structures  # noqa: F401  (lammps, mpirun: fixtures)

TOL = 1e-9
SUM_TOL = 1e-10
RANKS = (1, 2, 4)
NVE_STEPS = 200
LAMMPS_ORDER = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # stress/atom's columns
KIM_ORDER = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@pytest.fixture(scope="module")
def pair_item(kim_collection, tmp_path_factory):
    pt = write_pair_model(tmp_path_factory.mktemp("pair-lammps"), "pair")
    return kim_collection.install_model(pt, "PairVirial_method__MO_000000000000_000", param_text=param_text())


def _input(model, atoms, nve_steps):
    lines = [
        f"kim init {model} metal",
        "boundary " + " ".join("p" if p else "f" for p in atoms.pbc),
        "atom_modify map array",
        "read_data data.lmp",
        f"kim interactions {' '.join(SPECIES)}",
        "compute sa all stress/atom NULL virial",
        "compute ssum all reduce sum c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]",
        "compute pv all pressure NULL virial",
        "thermo_style custom step pe vol c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] "
        "c_ssum[1] c_ssum[2] c_ssum[3] c_ssum[4] c_ssum[5] c_ssum[6]",
        "thermo_modify format float %.17g",
    ]
    if nve_steps:
        lines += [
            "velocity all create 600.0 4928459 mom yes rot no dist gaussian",
            "compute ke all ke/atom",
            "compute pe all pe/atom",
            "compute flux all heat/flux ke pe sa",
            "thermo_style custom step pe vol c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] "
            "c_ssum[1] c_ssum[2] c_ssum[3] c_ssum[4] c_ssum[5] c_ssum[6] c_flux[1] c_flux[2] c_flux[3]",
            "thermo_modify format float %.17g",
            "timestep 0.001",
            "neigh_modify every 10 delay 0 check no",
            "fix nve all nve",
            "thermo 1",
            f"run {nve_steps}",
        ]
    else:
        lines += [
            "dump sa all custom 1 stress.dump id c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]",
            "dump_modify sa sort id format float %.17g",
            "run 0",
        ]
    return "\n".join(lines) + "\n"


def run_stress_atom(atoms, model, workdir, env, nprocs=1, nve_steps=0, supported=True):
    """(per-atom KIM virials [n, 6] in ASE's frame, KIM order, eV; thermo rows; log)."""
    os.makedirs(workdir, exist_ok=True)
    prism = write_data(os.path.join(workdir, "data.lmp"), atoms, SPECIES, velocities=False)
    with open(os.path.join(workdir, "in.lmp"), "w") as fh:
        fh.write(_input(model, atoms, nve_steps))
    run_env = dict(env)
    run_env.update(OPENMPI_ENV)
    cmd = [lammps_executable(), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none", "-nocite"]
    if nprocs > 1:
        cmd = mpi_command(nprocs) + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    log_path = os.path.join(workdir, "log.lammps")
    log = open(log_path).read() if os.path.exists(log_path) else ""
    if proc.returncode != 0 or "ERROR" in log:
        raise LammpsError(f"LAMMPS on {nprocs} rank(s) exited with {proc.returncode}", proc.stdout + log)
    assert ("virial per atom will be zero" in log) == (not supported), log
    thermo = thermo_tables(log)
    if nve_steps:
        return None, thermo, log, prism
    lines = open(os.path.join(workdir, "stress.dump")).read().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("ITEM: ATOMS"))
    data = np.array([[float(x) for x in line.split()] for line in lines[start + 1:start + 1 + len(atoms)]])
    assert np.array_equal(data[:, 0].astype(int), np.arange(1, len(atoms) + 1))
    virials = []
    for row in data[:, 1:]:
        t = np.zeros((3, 3))
        for value, (a, b) in zip(row, LAMMPS_ORDER):
            t[a, b] = t[b, a] = value
        t = prism.tensor2_to_ase(t) / NKTV2P_METAL
        virials.append([t[a, b] for a, b in KIM_ORDER])
    return np.array(virials), thermo, log, prism


def assert_sum_is_pressure_times_volume(row, label):
    """sum_i stress/atom = -P_virial * V, component by component (bar*A^3)."""
    pv = np.array([row[f"c_pv[{k}]"] for k in range(1, 7)])
    ssum = np.array([row[f"c_ssum[{k}]"] for k in range(1, 7)])
    scale = max(np.abs(ssum).max(), 1e-300)
    assert np.abs(ssum + pv * row["Volume"]).max() <= SUM_TOL * scale, (label, ssum, -pv * row["Volume"])


@pytest.mark.parametrize("nprocs", RANKS)
@pytest.mark.parametrize("name", ["bulk_rattled", "triclinic_rotated", "small_cell", "slab"])
def test_stress_atom_equals_the_closed_form(pair_item, kim_collection, tmp_path, request, name, nprocs):
    request.getfixturevalue("lammps")
    if nprocs > 1:
        request.getfixturevalue("mpirun")
    atoms = structures(SPECIES)[name]
    got, thermo, _, _ = run_stress_atom(atoms, pair_item, tmp_path / "run", kim_collection.env, nprocs)
    _, _, _, expected = closed_form(atoms, SPECIES)
    scale = np.abs(expected).max()
    assert scale > 0.1
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * scale, err_msg=f"{name}, {nprocs} ranks")
    if all(atoms.pbc):
        assert_sum_is_pressure_times_volume(thermo[0], name)
    np.testing.assert_allclose(got.sum(axis=0), expected.sum(axis=0), rtol=0, atol=SUM_TOL * scale)


def test_model_without_the_method_runs_and_lammps_says_per_atom_virials_are_zero(kim_collection, tmp_path,
                                                                                 tmp_path_factory, request):
    """A model without energy_and_edge_vectors: partialParticleVirial is
    notSupported, LAMMPS prints its own notice and runs (zeros per atom)."""
    request.getfixturevalue("lammps")
    pt = write_pair_model(tmp_path_factory.mktemp("pair-no-method"), "pair_no_method", with_method=False)
    item = kim_collection.install_model(pt, "PairVirial_no_method__MO_000000000000_000", param_text=param_text())
    atoms = structures(SPECIES)["small_cell"]
    got, thermo, log, _ = run_stress_atom(atoms, item, tmp_path / "run", kim_collection.env, 1, supported=False)
    assert np.all(got == 0.0)
    assert thermo[0]["c_pv[1]"] != 0.0  # the global virial is there


def test_nve_with_stress_atom_and_heat_flux_on_two_ranks(pair_item, kim_collection, tmp_path, request):
    request.getfixturevalue("mpirun")
    atoms = structures(SPECIES)["bulk_rattled"]
    _, thermo, log, _ = run_stress_atom(atoms, pair_item, tmp_path / "nve", kim_collection.env, nprocs=2,
                                        nve_steps=NVE_STEPS)
    assert [int(row["Step"]) for row in thermo] == list(range(NVE_STEPS + 1))
    for row in thermo:
        assert_sum_is_pressure_times_volume(row, f"step {int(row['Step'])}")
        assert all(np.isfinite(row[f"c_flux[{k}]"]) for k in (1, 2, 3))
    assert len({row["c_flux[1]"] for row in thermo}) > 1  # the heat flux moves


# --- converted models against the original's own decomposition ---------------------

# quick: each structure and rank count once (the rest: slow)
QUICK_MODEL_CASES = [("nequip", "triclinic_rotated", 1), ("nequip", "small_cell", 4), ("nequip", "slab", 2),
                     ("mace", "bulk_rattled", 2)]
STRUCTURES = ("bulk_rattled", "triclinic_rotated", "small_cell", "slab")
# slow (CI runs them too): NequIP 0.6 on every structure and rank count, MACE on every structure on 2 ranks
SLOW_MODEL_CASES = [case for case in [("nequip", name, nprocs) for name in STRUCTURES for nprocs in RANKS]
                    + [("mace", name, 2) for name in STRUCTURES] if case not in QUICK_MODEL_CASES]


def _check_converted(installed_models, kim_collection, tmp_path, architecture, name, nprocs):
    from test_particle_virial import _original_virials

    model = installed_models(architecture)
    atoms = structures(SPECIES)[name]
    got, thermo, _, _ = run_stress_atom(atoms, model.item, tmp_path / "run", kim_collection.env, nprocs)
    expected = _original_virials(model, atoms)
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * scale, err_msg=f"{architecture} {name} {nprocs}")
    if all(atoms.pbc):
        assert_sum_is_pressure_times_volume(thermo[0], name)
    print(f"{architecture} {name} {nprocs} ranks: max |dW| {np.abs(got - expected).max():.2e} eV "
          f"(largest {scale:.3g} eV)")


@pytest.mark.parametrize("architecture,name,nprocs", QUICK_MODEL_CASES)
def test_converted_model_stress_atom_equals_the_originals_decomposition(installed_models, kim_collection, tmp_path,
                                                                        request, architecture, name, nprocs):
    request.getfixturevalue("lammps")
    if nprocs > 1:
        request.getfixturevalue("mpirun")
    _check_converted(installed_models, kim_collection, tmp_path, architecture, name, nprocs)


@pytest.mark.slow
@pytest.mark.parametrize("architecture,name,nprocs", SLOW_MODEL_CASES)
def test_converted_model_stress_atom_all_cases(installed_models, kim_collection, tmp_path, request, architecture,
                                               name, nprocs):
    request.getfixturevalue("lammps")
    if nprocs > 1:
        request.getfixturevalue("mpirun")
    _check_converted(installed_models, kim_collection, tmp_path, architecture, name, nprocs)


# --- nequip >= 0.7 NequIP GNN and Allegro (converted in .venv-modern) ----------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODERN_QUICK = [("nequip", "triclinic_rotated", 2), ("allegro", "small_cell", 4)]
MODERN_SLOW = [(a, name, nprocs) for a in ("nequip", "allegro") for name, nprocs in zip(STRUCTURES, (1, 2, 4, 2))
               if (a, name, nprocs) not in MODERN_QUICK]


@pytest.fixture(scope="module")
def modern_items(kim_collection, tmp_path_factory):
    """{architecture: (item, {structure: original per-atom virials})}: seeded
    nequip >= 0.7 models converted (and their originals' decomposition
    computed) by modern_virial_models.py in the modern environment, installed
    here."""
    import pickle

    python = os.environ.get("KIM_GNN_MODERN_PYTHON") or os.path.join(REPO, ".venv-modern", "bin", "python")
    if not os.path.isfile(python):
        unavailable(f"the modern environment's Python ({python}) is missing: bash scripts/setup_modern.sh")
    root = tmp_path_factory.mktemp("modern-virial-models")
    (root / "structures.pkl").write_bytes(pickle.dumps(structures(SPECIES)))
    env = dict(os.environ, PYTHONPATH=REPO, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    proc = subprocess.run([python, os.path.join(REPO, "tests", "kim_e2e", "modern_virial_models.py"), str(root),
                           str(root / "structures.pkl")], env=env, cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT * 3)
    assert proc.returncode == 0, proc.stdout[-4000:]
    items = {}
    for architecture in ("nequip", "allegro"):
        item = kim_collection.install_model(str(root / f"{architecture}.staged.pt"),
                                            f"SiC_modern_{architecture}_KimGnnDriver__MO_000000000000_000")
        with np.load(root / f"{architecture}.virials.npz") as data:
            items[architecture] = (item, {k: data[k] for k in data.files})
    return items


def _check_modern(modern_items, kim_collection, tmp_path, architecture, name, nprocs):
    item, references = modern_items[architecture]
    atoms = structures(SPECIES)[name]
    got, thermo, _, _ = run_stress_atom(atoms, item, tmp_path / "run", kim_collection.env, nprocs)
    expected = references[name]
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * scale, err_msg=f"{architecture} {name} {nprocs}")
    if all(atoms.pbc):
        assert_sum_is_pressure_times_volume(thermo[0], name)
    print(f"modern {architecture} {name} {nprocs} ranks: max |dW| {np.abs(got - expected).max():.2e} eV "
          f"(largest {scale:.3g} eV)")


@pytest.mark.parametrize("architecture,name,nprocs", MODERN_QUICK)
def test_modern_model_stress_atom_equals_the_originals_decomposition(modern_items, kim_collection, tmp_path, request,
                                                                     architecture, name, nprocs):
    request.getfixturevalue("mpirun")
    _check_modern(modern_items, kim_collection, tmp_path, architecture, name, nprocs)


@pytest.mark.slow
@pytest.mark.parametrize("architecture,name,nprocs", MODERN_SLOW)
def test_modern_model_stress_atom_all_cases(modern_items, kim_collection, tmp_path, request, architecture, name,
                                            nprocs):
    request.getfixturevalue("lammps")
    if nprocs > 1:
        request.getfixturevalue("mpirun")
    _check_modern(modern_items, kim_collection, tmp_path, architecture, name, nprocs)


@pytest.mark.parametrize("architecture", ["nequip", "allegro"])
def test_modern_model_particle_virials_through_kimpy(modern_items, kim_log_dir, architecture):
    """The same nequip >= 0.7 items through the KIM API from Python (kimpy,
    asking for partialParticleVirial; folded by ASE's padding image map)
    equal the original's decomposition, and the unfolded per-particle
    virials sum to the driver's partialVirial."""
    from test_particle_virial import kim_particle_virials

    item, references = modern_items[architecture]
    for name in ("triclinic_rotated", "small_cell"):
        got = kim_particle_virials(item, structures(SPECIES)[name])
        expected = references[name]
        scale = np.abs(expected).max()
        assert scale > 1e-3
        np.testing.assert_allclose(got["particle_virial"], expected, rtol=0, atol=TOL * scale,
                                   err_msg=f"{architecture} {name}")
        np.testing.assert_allclose(got["unfolded"].sum(axis=0), got["virial"], rtol=0, atol=SUM_TOL * scale)
