"""kim-gnn's own KIM model driver through the real KIM API (kimpy, ASE's
``KIM`` calculator): converted NequIP and MACE models against the original
periodic models, every compute argument, the driver's environment
variables, and its error paths (the Python process survives and gets a KIM
error).

The driver is built and installed once per session (``kim_collection`` in
conftest.py, 1-3 minutes of compiling); the models are small seeded ones.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kim_gnn import contract
from kim_gnn.verification.structures import battery

from lammps_e2e import unavailable  # noqa: E402

try:
    import kimpy
except ImportError:
    unavailable("kimpy is not installed (scripts/install_kimpy.sh; needs libkim-api-dev)", module_level=True)
from ase.calculators.kim import KIM  # noqa: E402

TOL = 1e-9  # float64, relative to max(1, |value|)
QUICK_CASES = {
    "nequip": ("rattled_bulk", "triclinic_alloy", "slab_vacuum", "single_atom"),
    "mace": ("triclinic_alloy", "single_atom"),
}
ALL_CASES = ("rattled_bulk", "triclinic_alloy", "strained", "primitive_small_cell", "slab_vacuum", "molecule",
             "dimer_near_cutoff", "single_atom")


# --- models (installed_models: conftest.py) -------------------------------------

def _case(name, spec):
    return next(c for c in battery(spec.species, spec.cutoff) if c.name == name)


def kim_results(item, atoms):
    """Energy, forces, stress (where periodic) from ASE's KIM calculator, then
    per-particle energies and the virial from the same KIM compute-arguments
    object (ASE asks only for energy and forces)."""
    atoms = atoms.copy()
    calc = KIM(item, options={"release_GIL": True})
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) if all(atoms.pbc) else None
    n_all = int(calc._num_particles[0])
    particle_energy = np.zeros(n_all)
    virial = np.zeros(6)
    name = kimpy.compute_argument_name
    calc._compute_args.set_argument_pointer(name.partialParticleEnergy, particle_energy)
    calc._compute_args.set_argument_pointer(name.partialVirial, virial)
    calc._kim_gnn_test_arrays = (particle_energy, virial)  # registered by address: keep them alive
    calc._kim_model.compute(calc._compute_args, True)
    return {
        "energy": energy, "forces": forces, "stress": stress,
        "energies": particle_energy[: len(atoms)].copy(), "padding_energies": particle_energy[len(atoms):].copy(),
        "virial": virial.copy(), "energy_again": float(calc.energy[0]), "calc": calc,
    }


def _voigt(stress33):
    s = np.asarray(stress33)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def check_against_original(model, case_name):
    spec = model.spec
    atoms = _case(case_name, spec).atoms
    got = kim_results(model.item, atoms)
    expected, stress_tol = model.reference(atoms)
    scale = max(1.0, abs(expected.energy))
    assert abs(got["energy"] - expected.energy) <= TOL * scale, (case_name, got["energy"], expected.energy)
    assert abs(got["energy_again"] - expected.energy) <= TOL * scale
    np.testing.assert_allclose(got["forces"], expected.forces, rtol=0, atol=TOL * max(1.0, np.abs(expected.forces).max()),
                               err_msg=case_name)
    if expected.energies is not None:
        np.testing.assert_allclose(got["energies"], expected.energies, rtol=0, atol=TOL * scale, err_msg=case_name)
    assert np.all(got["padding_energies"] == 0.0)
    assert abs(got["energies"].sum() - got["energy"]) <= 1e-12 * scale
    if expected.stress is not None and all(atoms.pbc):
        volume = atoms.get_volume()
        limit = stress_tol if stress_tol is not None else TOL * max(1.0, np.abs(expected.stress).max())
        want = _voigt(expected.stress)
        np.testing.assert_allclose(got["stress"], want, rtol=0, atol=limit, err_msg=case_name)
        # KIM's virial (xx yy zz yz xz xy) = sum_p x_p (x) dE/dx_p: ASE's stress times the volume.
        np.testing.assert_allclose(got["virial"] / volume, want, rtol=0, atol=limit, err_msg=case_name)
    if len(atoms) == 1:
        assert np.all(got["forces"] == 0.0) and np.all(got["virial"] == 0.0)
    return got


def kim_log_error_lines(kim_log):
    """The error entries of a kim.log: after the KIM API's timestamp and
    sequence number, the entry's verbosity ``* Error *``."""
    import gc

    gc.collect()  # the KIM objects log their destruction too
    text = kim_log.read_text(errors="replace") if kim_log.exists() else ""
    return [line for line in text.splitlines() if re.search(r"\*\s*error\s*\*", line, re.I)]


@pytest.mark.parametrize("architecture,case_name",
                         [(a, c) for a, cases in QUICK_CASES.items() for c in cases])
def test_kim_api_matches_the_original_model(installed_models, kim_log_dir, architecture, case_name):
    """... and, when nothing is wrong, the KIM API logs no error: the driver
    has a Refresh routine, which ASE's ClearThenRefresh() calls before every
    compute (the KIM API logs an error for a model with no Refresh and no
    parameters)."""
    check_against_original(installed_models(architecture), case_name)
    assert kim_log_error_lines(kim_log_dir) == []


def test_published_parameters_are_the_models_and_a_change_is_refused(installed_models, kim_log_dir):
    """The driver publishes cutoff and num_layers (the KIM API takes a
    Refresh routine only from a model with parameters); they are the
    model's, and a simulator that changes one gets a KIM error at the next
    refresh, the value restored."""
    model = installed_models("nequip")
    atoms = _case("rattled_bulk", model.spec).atoms.copy()
    calc = KIM(model.item, options={"release_GIL": True})
    atoms.calc = calc
    atoms.get_potential_energy()
    params = calc.get_parameters(cutoff=[0], num_layers=[0])
    assert params["cutoff"][1][0] == model.spec.cutoff and params["num_layers"][1][0] == model.spec.num_layers
    assert kim_log_error_lines(kim_log_dir) == []
    calc.set_parameters(cutoff=[[0], [model.spec.cutoff + 1.0]])
    atoms.positions[0] += 0.01
    try:
        atoms.get_potential_energy()  # ClearThenRefresh() fails (kimpy 2.1 does not raise on it)
    except Exception:
        pass
    assert any("fixed by the trained model; the changed value was refused and restored" in line
               for line in kim_log_error_lines(kim_log_dir))
    assert calc.get_parameters(cutoff=[0])["cutoff"][1][0] == model.spec.cutoff


def test_kim_log_error_lines_sees_an_error(kim_log_dir):
    """The kim.log check is not empty-handed: an entry the KIM API writes at
    verbosity Error is found."""
    kim_log_dir.write_text("2026-01-01:00:00:00UTC * 0 * error * 0x1 * KIM_ModelImplementation.cpp:1 * a test error\n"
                           "2026-01-01:00:00:00UTC * 1 * information * 0x1 * kim_gnn_driver.cpp:2 * fine\n")
    assert len(kim_log_error_lines(kim_log_dir)) == 1


def test_ase_refresh_and_repeated_computes_leave_no_kim_log_error(installed_models, kim_log_dir):
    """A fresh kim.log after an ASE session on one calculator: several
    updates of positions and cell (each a ClearThenRefresh() and a compute),
    energy, forces and stress, and ASE's get_parameters (a refresh too)."""
    model = installed_models("mace")
    atoms = _case("triclinic_alloy", model.spec).atoms.copy()
    calc = KIM(model.item, options={"release_GIL": True})
    atoms.calc = calc
    for step in range(3):
        atoms.positions[0] += 0.01 * (step + 1)
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)
    atoms.get_potential_energy()
    calc.get_parameters()
    del atoms, calc
    assert kim_log_dir.exists()  # the KIM API did log (model creation at least)
    assert kim_log_error_lines(kim_log_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize("architecture,case_name",
                         [(a, c) for a in QUICK_CASES for c in ALL_CASES if c not in QUICK_CASES[a]])
def test_kim_api_matches_the_original_model_battery(installed_models, kim_log_dir, architecture, case_name):
    check_against_original(installed_models(architecture), case_name)


# --- the installed library ----------------------------------------------------

def test_driver_library_records_libtorch_runpath(kim_collection):
    from kim_gnn.kim_driver import torch_library_dir

    path = kim_collection.driver_path
    assert path.startswith(str(kim_collection.dirs["md"])), path
    assert os.path.basename(os.path.dirname(path)) == contract.KIM_GNN_DRIVER_NAME
    if shutil.which("readelf") is None:
        unavailable("readelf is not installed")
    dynamic = subprocess.run(["readelf", "-d", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    runpath = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", dynamic)
    assert runpath and torch_library_dir() in runpath.group(1).split(":"), dynamic
    assert "libtorch" in dynamic


def test_install_driver_into_the_user_collection(kim_collection, tmp_path, monkeypatch):
    """The default collection: the KIM API user collection of $HOME (here a
    temporary one), found by kim-api-collections-management afterwards. The
    session's build directory is reused: no recompiling."""
    from kim_gnn.kim_driver import install_driver

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KIM_API_CONFIGURATION_FILE")
    with kim_collection.driver_build_lock:
        path = install_driver("user", kim_collection.driver_build_dir)
    assert path.startswith(str(home / ".kim-api")) and os.path.isfile(path), path
    env = dict(kim_collection.env, HOME=str(home))
    env.pop("KIM_API_CONFIGURATION_FILE")
    listing = subprocess.run(["kim-api-collections-management", "list"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120).stdout
    user = listing[listing.index("User Collection"):]
    assert contract.KIM_GNN_DRIVER_NAME in user.split("Portable Models:")[0], listing


RUN_IN_FRESH_PROCESS = textwrap.dedent("""\
    import json, sys
    import numpy as np
    from ase.io import read
    from ase.calculators.kim import KIM
    atoms = read(sys.argv[2])
    try:
        atoms.calc = KIM(sys.argv[1], options={"release_GIL": True})
        out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces().tolist()}
    except Exception as exc:
        out = {"error": type(exc).__name__ + ": " + str(exc)}
    out["torch_imported"] = "torch" in sys.modules
    print("RESULT " + json.dumps(out))
    """)


def run_fresh(kim_collection, item, atoms, tmp_path, **env_extra):
    """ASE's KIM calculator in a fresh Python that never imports torch, with
    no LD_LIBRARY_PATH: libtorch comes from the driver's RUNPATH."""
    structure = tmp_path / "atoms.traj"  # full precision
    atoms.write(structure)
    script = tmp_path / "run_kim.py"
    script.write_text(RUN_IN_FRESH_PROCESS)
    env = kim_collection.env
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("PYTHONPATH", None)
    env.pop("KIM_GNN_OPS_LIBRARY", None)  # the driver's own default unless a test names one
    env.update(env_extra)
    proc = subprocess.run([sys.executable, str(script), item, str(structure)], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    found = re.search(r"^RESULT (.*)$", proc.stdout, re.M)
    assert proc.returncode == 0 and found, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(found.group(1)), proc.stderr


def test_driver_runs_without_ld_library_path_in_a_process_without_torch(installed_models, kim_collection, tmp_path):
    model = installed_models("nequip")
    atoms = _case("triclinic_alloy", model.spec).atoms
    out, _ = run_fresh(kim_collection, model.item, atoms, tmp_path)
    assert not out["torch_imported"]
    expected, _ = model.reference(atoms)
    assert abs(out["energy"] - expected.energy) <= TOL * max(1.0, abs(expected.energy))
    np.testing.assert_allclose(out["forces"], expected.forces, rtol=0, atol=TOL * max(1.0, np.abs(expected.forces).max()))


# --- staged graphs: the driver's edge sets are the contract's -----------------

def test_driver_graphs_have_the_edge_counts_of_the_python_builder(installed_models, kim_collection, kim_log_dir,
                                                                  monkeypatch, tmp_path):
    """KIM_GNN_DRIVER_TIMING=<file> makes the driver write one JSON line per
    compute, with its edge counts per stage: they equal those of
    kim_gnn.graphs (the same sets E_k whatever the padding, as long as it
    reaches the influence distance)."""
    from kim_gnn.graphs import build_staged_graphs

    model = installed_models("nequip")
    timing = tmp_path / "timing.jsonl"
    monkeypatch.setenv("KIM_GNN_DRIVER_TIMING", str(timing))
    for name in ("triclinic_alloy", "slab_vacuum", "primitive_small_cell"):
        atoms = _case(name, model.spec).atoms
        kim_results(model.item, atoms)
        lines = [json.loads(line) for line in timing.read_text().splitlines()]
        graphs = build_staged_graphs(atoms, model.spec.species, model.spec.cutoff, model.spec.num_layers)
        assert lines[-1]["edges"] == [int(e.shape[1]) for e in graphs.edge_index], name
        assert lines[-1]["contributing"] == len(atoms)
        # the parts of a compute are within its total (each timed on the same clock)
        parts = [lines[-1][key] for key in ("graph_s", "forward_s", "backward_s")]
        assert all(p > 0.0 for p in parts) and sum(parts) <= lines[-1]["total_s"] + 1e-8, lines[-1]  # (9 digits printed)
        timing.unlink()


def test_driver_timing_on_stderr(installed_models, kim_collection, tmp_path):
    model = installed_models("nequip")
    atoms = _case("triclinic_alloy", model.spec).atoms
    _, stderr = run_fresh(kim_collection, model.item, atoms, tmp_path, KIM_GNN_DRIVER_TIMING="1")
    lines = re.findall(r"^kim-gnn-driver-timing (\{.*\})$", stderr, re.M)
    assert lines, stderr
    assert json.loads(lines[0])["particles"] > len(atoms)


# --- toy TorchScript models for the error paths and the element map ----------

def _toy_param(species=("Si", "C"), cutoff=3.0, layers=1):
    spec = contract.StagedModelSpec(species=list(species), cutoff=cutoff, num_layers=layers)
    return contract.render_param_file(spec)


TOY_MODELS = {
    # energy = species value (index or atomic number) on contributing particles,
    # plus a smooth pair term so that forces exist
    "species_value": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            e = species.to(torch.float64) + 0.0 * coordinates[:, 0]
            if edge_index_0.shape[1] > 0:
                d = coordinates[edge_index_0[1]] - coordinates[edge_index_0[0]]
                e = e.index_add(0, edge_index_0[0], 0.01 * (d * d).sum(dim=1))
            return torch.where(contributions == 0, e, torch.zeros_like(e))
        """,
    "raises": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            if coordinates.shape[0] > 0:
                raise ValueError("toy model: deliberate failure inside TorchScript")
            return coordinates[:, 0]
        """,
    "float32": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return (coordinates[:, 0] * 0.0).to(torch.float32)
        """,
    "scalar": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return (coordinates * 0.0).sum()
        """,
    # "Return Forces: True": element 1 is taken as the forces
    "returns_forces": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            e = torch.where(contributions == 0, species.to(torch.float64) + 1.0, torch.zeros_like(coordinates[:, 0]))
            f = torch.zeros_like(coordinates)
            f[:, 0] = torch.arange(coordinates.shape[0], dtype=torch.float64) + 1.0
            return e, f
        """,
    "wrong_length": """
        def forward(self, species, coordinates, edge_index_0, contributions):
            return (coordinates[:, 0] * 0.0)[:1]
        """,
}


@pytest.fixture(scope="session")
def toy_items(kim_collection, tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("toy-models")
    cache = {}

    def get(kind):
        if kind not in cache:
            source = "import torch\n\nclass Toy(torch.nn.Module):\n" + textwrap.indent(
                textwrap.dedent(TOY_MODELS[kind]), "    ")
            path = root / f"{kind}.py"
            path.write_text(source)
            namespace = {}
            exec(compile(source, str(path), "exec"), namespace)
            import linecache

            linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
            module = torch.jit.script(namespace["Toy"]())
            pt = root / f"{kind}.pt"
            module.save(str(pt))
            name = f"Toy_{kind}__MO_000000000000_000"
            param = _toy_param()
            if kind == "returns_forces":
                param = param.replace("# Does the model return forces?\nFalse", "# Does the model return forces?\nTrue")
                assert "forces?\nTrue" in param
            cache[kind] = kim_collection.install_model(pt, name, param_text=param)
        return cache[kind]

    return get


def _two_atoms():
    from ase import Atoms

    return Atoms(["Si", "C"], positions=[[0.0, 0.0, 0.0], [1.9, 0.0, 0.0]])


def _expect_kim_error(kim_log, call, message):
    """``call`` raises (KIM reported an error), the process lives on, and the
    driver's message is in what kim.log gained during the call (not in what an
    earlier call of the same test already wrote there)."""
    before = kim_log.stat().st_size if kim_log.exists() else 0
    with pytest.raises(Exception) as info:
        call()
    assert "kim" in type(info.value).__module__.lower() or "KIM" in str(info.value) or "compute" in str(info.value)
    with open(kim_log, "rb") if kim_log.exists() else open(os.devnull, "rb") as fh:
        fh.seek(before)
        written = fh.read().decode(errors="replace")
    assert message in written, written[-3000:]
    return info.value


def test_exception_inside_torchscript_is_a_kim_error(toy_items, kim_log_dir, capfd):
    atoms = _two_atoms()
    atoms.calc = KIM(toy_items("raises"), options={"release_GIL": True})
    _expect_kim_error(kim_log_dir, atoms.get_potential_energy, "toy model: deliberate failure inside TorchScript")
    assert "kim-gnn driver: error: the model failed" in capfd.readouterr().err
    # and the process goes on: the same calculator can be asked again
    _expect_kim_error(kim_log_dir, lambda: atoms.calc.calculate(atoms), "deliberate failure")


def test_holding_the_gil_is_a_kim_error_that_says_what_to_do(installed_models, kim_log_dir):
    """This process imported torch: without release_GIL the autograd engine
    refuses to run; the driver reports it as a KIM error with the fix."""
    import torch  # noqa: F401

    model = installed_models("nequip")
    atoms = _case("triclinic_alloy", model.spec).atoms.copy()
    atoms.calc = KIM(model.item)
    _expect_kim_error(kim_log_dir, atoms.get_potential_energy,
                      'create the calculator with KIM(name, options={"release_GIL": True})')


@pytest.mark.parametrize("kind,message", [
    ("float32", "energy output has dtype Float, expected float64"),
    ("scalar", "energy output is 0-dimensional"),
])
def test_model_output_of_wrong_dtype_or_shape_is_a_kim_error(toy_items, kim_log_dir, kind, message):
    atoms = _two_atoms()
    atoms.calc = KIM(toy_items(kind), options={"release_GIL": True})
    _expect_kim_error(kim_log_dir, atoms.get_potential_energy, message)


def test_model_that_returns_forces(toy_items, kim_log_dir):
    """With "Return Forces: True" in file.param the driver takes the model's
    element 1 as the forces (no backward)."""
    from ase import Atoms

    atoms = Atoms(["Si", "C"], positions=[[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])  # no padding, no neighbors
    atoms.calc = KIM(toy_items("returns_forces"), options={"release_GIL": True})
    assert atoms.get_potential_energy() == pytest.approx(1.0 + 2.0, abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], atol=1e-12)


def test_per_particle_energies_of_the_wrong_length_are_a_kim_error(toy_items, kim_log_dir):
    atoms = _two_atoms()
    calc = KIM(toy_items("wrong_length"), options={"release_GIL": True})
    atoms.calc = calc
    atoms.get_potential_energy()  # a [1] energy is a valid total energy
    particle_energy = np.zeros(int(calc._num_particles[0]))
    calc._compute_args.set_argument_pointer(kimpy.compute_argument_name.partialParticleEnergy, particle_energy)
    calc._kim_gnn_test_arrays = particle_energy  # registered by address: keep it alive
    _expect_kim_error(kim_log_dir, lambda: calc._kim_model.compute(calc._compute_args, True),
                      "per-particle energies requested, but the model's energy output has shape [1], expected [2]")


def test_unknown_species_code_and_nan_coordinates_are_kim_errors(installed_models, kim_log_dir):
    model = installed_models("nequip")
    atoms = _case("triclinic_alloy", model.spec).atoms
    got = kim_results(model.item, atoms)
    calc = got["calc"]
    data = calc._kimmodeldata
    codes = data.species_code
    saved = codes.copy()
    codes[0] = 7  # the arrays are registered with the KIM API by address
    _expect_kim_error(kim_log_dir, lambda: calc._kim_model.compute(calc._compute_args, True),
                      "particle 0 has species code 7, which this model does not have (its species: ")
    codes[:] = saved
    calc._kim_model.compute(calc._compute_args, True)
    assert abs(calc.energy[0] - got["energy"]) <= 1e-12 * max(1.0, abs(got["energy"]))
    coords = data.coords
    coords[1, 2] = np.nan
    _expect_kim_error(kim_log_dir, lambda: calc._kim_model.compute(calc._compute_args, True),
                      "particle 1 has a non-finite (NaN or inf) coordinate")


# --- environment variables -----------------------------------------------------

def test_elements_map_gives_other_models_atomic_numbers_and_kim_gnn_models_indices(
        toy_items, installed_models, kim_log_dir, monkeypatch):
    atoms = _two_atoms()
    item = toy_items("species_value")
    atoms.calc = KIM(item, options={"release_GIL": True})
    pair = 0.01 * 1.9 ** 2 * 2
    assert atoms.get_potential_energy() == pytest.approx(0 + 1 + pair, abs=1e-12)  # indices: Si 0, C 1
    monkeypatch.setenv("KIM_MODEL_ELEMENTS_MAP", "1")
    atoms.calc = KIM(item, options={"release_GIL": True})
    assert atoms.get_potential_energy() == pytest.approx(14 + 6 + pair, abs=1e-12)  # atomic numbers

    model = installed_models("nequip")
    case = _case("triclinic_alloy", model.spec).atoms
    expected, _ = model.reference(case)
    got = kim_results(model.item, case)  # a kim-gnn model keeps getting indices
    assert abs(got["energy"] - expected.energy) <= TOL * max(1.0, abs(expected.energy))
    assert "KIM_MODEL_ELEMENTS_MAP is set, but this is a kim-gnn model" in kim_log_dir.read_text()


@pytest.mark.parametrize("device,message", [
    pytest.param("cuda", "KIM_MODEL_EXECUTION_DEVICE=cuda but CUDA is not available to the driver",
                 marks=pytest.mark.no_cuda),  # (its twin where there is a device: test_execution_device_cuda)
    ("tpu", "KIM_MODEL_EXECUTION_DEVICE=tpu is not supported (cpu or cuda)"),
])
def test_execution_device_errors(installed_models, kim_log_dir, monkeypatch, device, message):
    model = installed_models("nequip")
    monkeypatch.setenv("KIM_MODEL_EXECUTION_DEVICE", device)
    _expect_kim_error(kim_log_dir, lambda: KIM(model.item, options={"release_GIL": True}), message)


def test_execution_device_cpu_explicit(installed_models, kim_log_dir, monkeypatch):
    model = installed_models("nequip")
    monkeypatch.setenv("KIM_MODEL_EXECUTION_DEVICE", "cpu")
    check_against_original(model, "triclinic_alloy")


@pytest.mark.cuda  # (deselected without a CUDA device: tests/conftest.py)
def test_execution_device_cuda(installed_models, kim_log_dir, monkeypatch):
    model = installed_models("nequip")
    monkeypatch.setenv("KIM_MODEL_EXECUTION_DEVICE", "cuda")
    check_against_original(model, "triclinic_alloy")


def test_ops_library_that_cannot_be_loaded_is_a_kim_error(installed_models, kim_log_dir, monkeypatch, tmp_path):
    model = installed_models("nequip")
    missing = tmp_path / "libnothing.so"
    monkeypatch.setenv("KIM_GNN_OPS_LIBRARY", str(missing))
    _expect_kim_error(kim_log_dir, lambda: KIM(model.item, options={"release_GIL": True}),
                      f"cannot load the kim-gnn op library {missing}")


# --- the op library: loaded before the model (dlopen) --------------------------

TEST_OPS_SOURCE = r"""
// A tiny torch op library like kim-gnn's own (TORCH_LIBRARY, libtorch only).
#include <ATen/ATen.h>
#include <torch/library.h>

at::Tensor scaled(at::Tensor const & x, double s) { return x * s; }

TORCH_LIBRARY(kim_gnn_test, m) { m.def("scaled(Tensor x, float s) -> Tensor", &scaled); }
"""


@pytest.fixture(scope="session")
def test_ops_library(tmp_path_factory):
    """A small TORCH_LIBRARY op library built against the torch wheel (~20 s)."""
    import torch.utils.cpp_extension as ext

    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        unavailable("no C++ compiler")
    root = tmp_path_factory.mktemp("test-ops")
    (root / "ops.cpp").write_text(TEST_OPS_SOURCE)
    library = root / "libkim_gnn_test_ops.so"
    import torch

    cmd = [compiler, "-shared", "-fPIC", "-O1", "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    cmd += [f"-I{p}" for p in ext.include_paths()]
    cmd += ["ops.cpp", "-o", str(library)]
    cmd += [f"-L{p}" for p in ext.library_paths()] + ["-lc10", "-ltorch_cpu", "-ltorch"]
    cmd += [f"-Wl,-rpath,{p}" for p in ext.library_paths()]
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return library


@pytest.fixture(scope="session")
def ops_model_item(kim_collection, test_ops_library, tmp_path_factory):
    """A model whose forward calls the op library's op (scripted here, where it is loaded)."""
    import torch

    torch.ops.load_library(str(test_ops_library))
    root = tmp_path_factory.mktemp("ops-model")
    source = textwrap.dedent("""\
        import torch

        class UsesOps(torch.nn.Module):
            def forward(self, species, coordinates, edge_index_0, contributions):
                e = species.to(torch.float64) + 0.0 * coordinates[:, 0]
                if edge_index_0.shape[1] > 0:
                    d = coordinates[edge_index_0[1]] - coordinates[edge_index_0[0]]
                    e = e.index_add(0, edge_index_0[0], 0.01 * (d * d).sum(dim=1))
                e = torch.ops.kim_gnn_test.scaled(e, 2.0)
                return torch.where(contributions == 0, e, torch.zeros_like(e))
        """)
    path = root / "uses_ops.py"
    path.write_text(source)
    import linecache

    linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
    namespace = {}
    exec(compile(source, str(path), "exec"), namespace)
    pt = root / "uses_ops.pt"
    torch.jit.script(namespace["UsesOps"]()).save(str(pt))
    return kim_collection.install_model(pt, "Toy_uses_ops__MO_000000000000_000", param_text=_toy_param())


def test_driver_loads_the_op_library_before_the_model(kim_collection, ops_model_item, test_ops_library, tmp_path):
    """In a fresh process that never loaded the op library: KIM_GNN_OPS_LIBRARY
    makes the driver dlopen it, and the model runs; without it the KIM error
    says how to provide the ops."""
    atoms = _two_atoms()
    out, _ = run_fresh(kim_collection, ops_model_item, atoms, tmp_path, KIM_GNN_OPS_LIBRARY=str(test_ops_library))
    assert out.get("energy") == pytest.approx(2.0 * (0 + 1 + 0.01 * 1.9 ** 2 * 2), abs=1e-12), out
    np.testing.assert_allclose(out["forces"], [[2 * 0.04 * 1.9, 0, 0], [-2 * 0.04 * 1.9, 0, 0]], atol=1e-12)

    out, stderr = run_fresh(kim_collection, ops_model_item, atoms, tmp_path)
    assert "error" in out, out
    assert "Unknown builtin op: kim_gnn_test::scaled" in stderr, stderr
    assert "KIM_GNN_OPS_LIBRARY" in stderr and "custom torch ops that are not loaded" in stderr, stderr


# --- models converted with kim-gnn's kernels (--kernels kim_gnn) -----------------

@pytest.mark.parametrize("architecture", ("nequip", "mace"))
def test_kernels_model_runs_in_the_driver_with_the_op_library_it_was_installed_with(
        installed_models, kim_collection, architecture, tmp_path):
    """A model whose aggregation calls kim_gnn::gather / segment_sum, in a
    fresh process that never imports torch and sets no KIM_GNN_OPS_LIBRARY:
    the driver loads the op library from the path baked in at its install,
    and the results equal the original periodic model; two calls (two fresh
    processes) are bit-identical."""
    model = installed_models(architecture, kernels=True)
    assert model.spec.details.get("kernels") == "kim_gnn", model.spec.details
    atoms = _case("triclinic_alloy", model.spec).atoms
    first, _ = run_fresh(kim_collection, model.item, atoms, tmp_path)
    assert "error" not in first, first
    assert not first["torch_imported"]
    expected, _ = model.reference(atoms)
    assert abs(first["energy"] - expected.energy) <= TOL * max(1.0, abs(expected.energy))
    np.testing.assert_allclose(first["forces"], expected.forces, rtol=0,
                               atol=TOL * max(1.0, np.abs(expected.forces).max()))
    again, _ = run_fresh(kim_collection, model.item, atoms, tmp_path)
    assert again["energy"] == first["energy"] and again["forces"] == first["forces"]


def test_kernels_model_through_ase_in_process(installed_models, kim_log_dir):
    """The kernels model in this process (torch and the op library already
    loaded here) on the quick NequIP cases: every compute argument."""
    model = installed_models("nequip", kernels=True)
    for case_name in QUICK_CASES["nequip"]:
        check_against_original(model, case_name)
