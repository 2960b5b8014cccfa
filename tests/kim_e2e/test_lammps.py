"""Converted models in LAMMPS, through the real KIM API and kim-gnn's own
driver, under MPI, against the ORIGINAL periodic models.

For seeded NequIP 0.6 and MACE models (float64, two species; conftest.py's
``installed_models``), converted and installed with kim-gnn's driver into a
temporary KIM collection, LAMMPS (Debian's, KIM package: ``kim init`` /
``kim interactions``) runs ``run 0`` on 1, 2 and 4 MPI ranks on a rattled
bulk cell, a rotated triclinic cell (LAMMPS's restricted triclinic form;
forces and stress rotated back), a cell smaller than the influence distance
and a slab (``boundary p p f``); energy, forces, ``compute pe/atom`` and, on
periodic cells, the pressure and the full pressure tensor must equal the
original model on the periodic structure to 1e-9. A 200-step NVE run must
conserve the total energy to 1e-4 eV/atom, and a model that raises inside
TorchScript must stop LAMMPS with an error, not a crash.

The harness itself (data files, rotation, units, MPI) is first checked on a
known-good KIM model that has nothing to do with kim-gnn: Debian's
Stillinger-Weber Si (openkim-models) in LAMMPS against ASE's KIM calculator.

Tests that cannot run skip and say why; with ``KIM_GNN_E2E_REQUIRED=1``
(scripts/test.sh as root, i.e. CI) a missing component fails them instead.
"""

import gc
import re

import numpy as np
import pytest
from ase.build import bulk

from lammps_e2e import NKTV2P_METAL, LammpsError, lammps_missing_reason, mpirun_missing_reason, run_lammps, unavailable

TOL = 1e-9  # float64: relative to max(1, |value|)
RANKS = (1, 2, 4)
NVE_STEPS = 200
NVE_DRIFT = 1e-4  # eV/atom
SPECIES = ("Si", "C")
SW_MODEL = "SW_StillingerWeber_1985_Si__MO_405512056662_005"


@pytest.fixture(scope="session")
def lammps():
    reason = lammps_missing_reason()
    if reason:
        unavailable(reason)


@pytest.fixture(scope="session")
def mpirun(lammps):
    reason = mpirun_missing_reason()
    if reason:
        unavailable(reason)


def ranks_needing(nprocs, request):
    if nprocs > 1:
        request.getfixturevalue("mpirun")


# --- structures ------------------------------------------------------------

def _rotation(seed):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _mix(atoms, species, seed):
    rng = np.random.default_rng(seed)
    symbols = [species[k % len(species)] for k in range(len(atoms))]
    rng.shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    return atoms


def structures(species, seed=0):
    """Rattled 2x2x2 diamond bulk (64 atoms); a skewed, rotated triclinic
    cell (not in LAMMPS's form: LAMMPS runs it rotated); an 8-atom triclinic
    cell smaller than the influence distance (atoms see their own images);
    a 16-atom slab with vacuum (pbc T,T,F)."""
    a0 = 5.43
    out = {}
    atoms = _mix(bulk("Si", "diamond", a=a0, cubic=True) * (2, 2, 2), species, seed)
    atoms.rattle(0.08, seed=seed + 1)
    out["bulk_rattled"] = atoms

    skew = np.array([[1.0, 0.12, -0.07], [0.05, 1.0, 0.09], [0.11, -0.06, 1.0]])
    atoms = _mix(bulk("Si", "diamond", a=a0, cubic=True) * (2, 2, 1), species, seed + 2)
    atoms.set_cell(atoms.cell.array @ skew, scale_atoms=True)
    atoms.rattle(0.06, seed=seed + 3)
    rot = _rotation(seed + 4)
    atoms.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    atoms.positions = atoms.positions @ rot.T
    out["triclinic_rotated"] = atoms

    atoms = _mix(bulk("Si", "diamond", a=a0, cubic=True), species, seed + 5)
    atoms.set_cell(atoms.cell.array @ skew.T, scale_atoms=True)
    atoms.rattle(0.05, seed=seed + 6)
    out["small_cell"] = atoms

    atoms = _mix(bulk("Si", "diamond", a=a0, cubic=True) * (2, 1, 1), species, seed + 7)
    atoms.rattle(0.05, seed=seed + 8)
    atoms.center(vacuum=5.0, axis=2)
    atoms.pbc = (True, True, False)
    out["slab"] = atoms  # LAMMPS: boundary p p f
    return out


# --- comparison --------------------------------------------------------------

def assert_matches(got, expected, n_atoms, label, tol=TOL, stress_tol=None):
    """LAMMPS (``got``: LammpsRun) against a reference with energy, energies,
    forces and stress in ASE's units and signs."""
    scale_e = max(1.0, abs(expected.energy))
    assert abs(got.energy - expected.energy) <= tol * scale_e, (
        f"{label}: energy {got.energy!r} vs {expected.energy!r} (diff {got.energy - expected.energy:.3g} eV)")
    scale_f = max(1.0, float(np.abs(expected.forces).max()))
    df = float(np.abs(got.forces - expected.forces).max())
    assert df <= tol * scale_f, f"{label}: max |dF| {df:.3g} eV/A"
    if expected.energies is not None:
        scale_ei = max(1.0, float(np.abs(expected.energies).max()))
        dei = float(np.abs(got.energies - expected.energies).max())
        assert dei <= tol * scale_ei, f"{label}: max |d pe/atom| {dei:.3g} eV"
    assert abs(got.energies.sum() - got.energy) <= tol * scale_e, f"{label}: sum of pe/atom != pe"
    if expected.stress is None:  # not periodic in all directions: no stress to compare
        print(f"{label}: |dE| {abs(got.energy - expected.energy):.2e} eV, max|dF| {df:.2e} eV/A, "
              f"LAMMPS {got.seconds:.1f} s")
        return
    scale_s = max(1.0, float(np.abs(expected.stress).max()))
    limit = tol * scale_s if stress_tol is None else stress_tol
    ds = float(np.abs(got.stress - expected.stress).max())
    assert ds <= limit, f"{label}: max |d stress| {ds:.3g} eV/A^3 (limit {limit:.3g})"
    # The scalar pressure LAMMPS prints (bar; kinetic part zero: no velocities).
    pressure = -np.trace(expected.stress) / 3.0 * NKTV2P_METAL
    assert abs(got.pressure_bar - pressure) <= limit * NKTV2P_METAL, (
        f"{label}: pressure {got.pressure_bar!r} bar vs {pressure!r} bar")
    print(f"{label}: |dE| {abs(got.energy - expected.energy):.2e} eV, max|dF| {df:.2e} eV/A, "
          f"max|dS| {ds:.2e} eV/A^3, |dP| {abs(got.pressure_bar - pressure):.2e} bar, LAMMPS {got.seconds:.1f} s")


def nve_drift(run, n_atoms):
    etotal = np.array([row["TotEng"] for row in run.thermo])
    steps = [int(row["Step"]) for row in run.thermo]
    assert steps[0] == 0 and steps[-1] == NVE_STEPS, steps
    return float(np.abs(etotal - etotal[0]).max()) / n_atoms, etotal


# --- the harness on a known-good KIM model (no kim-gnn involved) --------------

@pytest.fixture(scope="session")
def sw_model(lammps, tmp_path_factory):
    """Debian's Stillinger-Weber Si (openkim-models), in the system collection."""
    import subprocess

    try:
        listing = subprocess.run(["kim-api-collections-management", "list"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=60,
                                 cwd=tmp_path_factory.mktemp("kim-list")).stdout  # it writes kim.log there
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"kim-api-collections-management does not run ({exc})")
    if SW_MODEL not in listing:
        unavailable(f"{SW_MODEL} is not installed (Debian openkim-models; scripts/install_kim_stack.sh)")
    return SW_MODEL


@pytest.fixture(scope="session")
def ase_kim_sw(sw_model):
    try:
        import kimpy  # noqa: F401
    except ImportError:
        unavailable("kimpy is not installed (scripts/install_kimpy.sh)")
    from ase.calculators.kim import KIM

    def evaluate(atoms):
        from kim_gnn.reference import OriginalResult

        a = atoms.copy()
        a.calc = KIM(sw_model)
        stress = a.get_stress(voigt=False) if all(a.pbc) else None
        result = OriginalResult(energy=a.get_potential_energy(), energies=None,  # ASE KIM: no per-atom energies
                                forces=a.get_forces(), stress=stress)
        a.calc = None
        gc.collect()  # the KIM model logs its destruction into ./kim.log: now, in the test's directory
        return result

    return evaluate


@pytest.mark.parametrize("nprocs", RANKS)
def test_harness_on_a_known_good_model_matches_ase(ase_kim_sw, sw_model, nprocs, request, tmp_path, monkeypatch):
    """LAMMPS (rotated triclinic cells, MPI, units) == ASE's KIM calculator
    for Stillinger-Weber Si: checks the harness, not kim-gnn."""
    ranks_needing(nprocs, request)
    monkeypatch.chdir(tmp_path)  # the KIM API writes kim.log into the current directory
    for name, atoms in structures(("Si",)).items():
        got = run_lammps(atoms, sw_model, ["Si"], tmp_path / name, nprocs=nprocs)
        assert_matches(got, ase_kim_sw(atoms), len(atoms), f"SW {name} on {nprocs} rank(s)")


# --- kim-gnn's converted models through kim-gnn's driver -----------------------

ARCHITECTURES = ("nequip", "mace")


class E2EModel:
    """A converted model installed in the session's KIM collection (the
    shared ``installed_models`` of conftest.py: seeded float64 NequIP 0.6 and
    MACE with ZBL, species Si and C, two layers), with the original periodic
    model's results per structure."""

    def __init__(self, architecture, installed, env):
        self.architecture = architecture
        self.installed = installed
        self.item = installed.item
        self.env = env
        self.species = list(installed.spec.species)
        self._expected = {}

    def expected(self, name, atoms):
        """(original model on the periodic structure in ASE units and signs,
        stress tolerance or None for the default)."""
        if name not in self._expected:
            result, stress_tol = self.installed.reference(atoms)
            if all(atoms.pbc):
                assert result.stress is not None, f"the original {self.architecture} model gives no stress"
            self._expected[name] = (result, stress_tol)
        return self._expected[name]


@pytest.fixture(scope="session", params=ARCHITECTURES)
def e2e_model(request, lammps, installed_models, kim_collection):
    assert set(SPECIES) <= set(installed_models(request.param).spec.species)
    return E2EModel(request.param, installed_models(request.param), kim_collection.env)


STRUCTURES = structures(SPECIES)


#: (structure, MPI ranks): every structure on 1, 2 and 4 ranks; the slab on 1
#: and 4. The matrix beyond the bulk cell on 1 and 4 ranks is marked slow (CI
#: runs it; ``-m "not slow"`` leaves it out).
RUN0_CASES = [
    pytest.param(name, n, marks=() if name == "bulk_rattled" and n != 2 else pytest.mark.slow)
    for name in STRUCTURES for n in RANKS if not (name == "slab" and n == 2)
]


@pytest.mark.parametrize("structure,nprocs", RUN0_CASES)
def test_lammps_run0_equals_the_original_model(e2e_model, structure, nprocs, request, tmp_path):
    """LAMMPS `run 0` through kim-gnn's driver on 1, 2 and 4 MPI ranks: energy,
    forces, pressure (scalar and tensor; fully periodic cells) and compute
    pe/atom equal the original periodic model to 1e-9."""
    ranks_needing(nprocs, request)
    atoms = STRUCTURES[structure]
    expected, stress_tol = e2e_model.expected(structure, atoms)
    # LAMMPS atom types in the model's element order, except on the triclinic
    # cell: there type 1 is the model's last element (kim interactions C Si).
    species = e2e_model.species[::-1] if structure == "triclinic_rotated" else e2e_model.species
    got = run_lammps(atoms, e2e_model.item, species, tmp_path, nprocs=nprocs, env=e2e_model.env)
    assert_matches(got, expected, len(atoms), f"{e2e_model.architecture} {structure} on {nprocs} rank(s)",
                   stress_tol=stress_tol)


def test_lammps_nve_conserves_energy(e2e_model, request, tmp_path):
    """200 steps of NVE (1 fs, 300 K, seeded velocities) on 2 MPI ranks,
    neighbor lists rebuilt and atoms migrated every 10 steps (the driver's
    particle set changes between calls): total energy drift below 1e-4
    eV/atom."""
    request.getfixturevalue("mpirun")
    atoms = STRUCTURES["bulk_rattled"]
    run = run_lammps(atoms, e2e_model.item, e2e_model.species, tmp_path, nprocs=2, env=e2e_model.env,
                     nve_steps=NVE_STEPS, timestep_ps=0.001, temperature=300.0, thermo_every=10)
    drift, etotal = nve_drift(run, len(atoms))
    temperatures = [row["Temp"] for row in run.thermo]
    assert max(temperatures) > 50.0, f"the atoms did not move (T = {temperatures})"
    builds = re.search(r"Neighbor list builds = (\d+)", run.log)
    assert builds and int(builds.group(1)) >= NVE_STEPS // 10, "the neighbor lists were not rebuilt every 10 steps"
    print(f"{e2e_model.architecture}: NVE drift {drift:.2e} eV/atom over {NVE_STEPS} steps, "
          f"T {min(temperatures):.0f}..{max(temperatures):.0f} K, LAMMPS {run.seconds:.1f} s")
    assert drift < NVE_DRIFT, f"{e2e_model.architecture}: NVE drift {drift:.3g} eV/atom over {NVE_STEPS} steps: {etotal}"


# --- a model that fails inside TorchScript ---------------------------------------

FAILING_MESSAGE = "kim-gnn e2e test: this model always fails"


def _failing_model(path):
    """A TorchScript model of the contract's signature (2 layers) that raises
    in every call."""
    import torch

    class Failing(torch.nn.Module):
        def forward(self, species, coordinates, edge_index_0, edge_index_1, contributions):
            if coordinates.shape[0] >= 0:
                raise RuntimeError("kim-gnn e2e test: this model always fails")  # FAILING_MESSAGE
            return coordinates.sum(dim=1)

    torch.jit.script(Failing()).save(str(path))
    return path


FAILING_PARAM = """\
# Number of elements and their symbols
1
Si

# Preprocessing
Graph

# Cutoff (Angstrom), then number of message-passing layers
3.5
2

# TorchScript file name
model.pt

# Does the model return forces?
False

# Number of model inputs: species, coordinates, L graphs, contributions
5

# Descriptor
None
"""


@pytest.fixture(scope="session")
def failing_item(lammps, request, tmp_path_factory):
    collection = request.getfixturevalue("kim_collection")
    model = _failing_model(tmp_path_factory.mktemp("failing-model") / "failing.pt")
    item = collection.install_item(collection.write_item(model, "Si_KimGnnFailing__MO_000000000000_000",
                                                         param_text=FAILING_PARAM))
    return item, collection.env


@pytest.mark.parametrize("nprocs", (1, 2))
def test_lammps_reports_a_model_that_fails_inside_torchscript(failing_item, nprocs, request, tmp_path):
    """The driver turns the TorchScript exception into a KIM error: LAMMPS
    stops with an ERROR line and exit code, the KIM log names the model's
    message; no rank crashes on a signal."""
    ranks_needing(nprocs, request)
    item, env = failing_item
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    with pytest.raises(LammpsError) as failure:
        run_lammps(atoms, item, ["Si"], tmp_path / "run", nprocs=nprocs, env=env)
    error = failure.value
    assert error.returncode is not None and error.returncode > 0, f"LAMMPS ended on a signal:\n{error}"
    assert "signal" not in error.output.lower() and "core dumped" not in error.output.lower(), str(error)
    assert "ERROR" in error.log, str(error)
    kim_log = (tmp_path / "run" / "kim.log")
    assert kim_log.exists() and FAILING_MESSAGE in kim_log.read_text(errors="replace"), str(error)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_lammps_run0_of_a_kernels_model_on_2_ranks(architecture, lammps, installed_models, kim_collection,
                                                   request, tmp_path):
    """A model converted with ``--kernels kim_gnn`` (aggregation in the op
    library, which the driver loads itself) in LAMMPS on 2 MPI ranks equals
    the original periodic model, like the aten model."""
    ranks_needing(2, request)
    model = E2EModel(architecture, installed_models(architecture, kernels=True), kim_collection.env)
    atoms = STRUCTURES["bulk_rattled"]
    expected, stress_tol = model.expected("bulk_rattled", atoms)
    got = run_lammps(atoms, model.item, model.species, tmp_path, nprocs=2, env=model.env)
    assert_matches(got, expected, len(atoms), f"{architecture} with kernels on 2 ranks", stress_tol=stress_tol)
