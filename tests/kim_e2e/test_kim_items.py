"""kim-gnn's items as OpenKIM-ready KIM items: in a clean KIM collection
(no driver installed by kim-gnn), the KIM tools alone install the driver
item and a converted model, and LAMMPS ``kim init`` runs the model, equal to
the original periodic model.

``test_readme_publishing_path_runs_as_written``: the README's publishing
section, every command as written (convert with metadata, verify and check
into the item, info, install-driver --export, then
``kim-api-collections-management install user`` of both items), in a
temporary user collection. ``test_driver_source_directory_installs_into_the_environment_collection``:
``csrc/driver`` itself and a model directory, ``install environment``.
Each compiles the driver through the KIM tools (1-3 minutes).
"""

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

from lammps_e2e import lammps_missing_reason, run_lammps, unavailable

from kim_gnn import contract


def _e2e_conftest():
    """This directory's conftest.py as a module (its KimCollection and
    InstalledModel; ``import conftest`` could find tests/conftest.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kim_e2e_conftest_helpers",
                                                  os.path.join(os.path.dirname(__file__), "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _e2e_conftest()
InstalledModel, KimCollection, _require_kim_build_tools = (
    _helpers.InstalledModel, _helpers.KimCollection, _helpers._require_kim_build_tools)

TOL = 1e-9
ITEM = "Si_NequIP__MO_000000000001_000"
TIMEOUT = 1200


@pytest.fixture
def clean_collection(tmp_path):
    _require_kim_build_tools()
    reason = lammps_missing_reason()
    if reason:
        unavailable(reason)
    collection = KimCollection(tmp_path / "collection")
    env = collection.env
    # The user's shell with the environment that has torch active (README:
    # `source .venv/bin/activate`): the driver item finds libtorch there.
    env["VIRTUAL_ENV"] = sys.prefix
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for name in ("Torch_DIR", "CMAKE_PREFIX_PATH", "KIM_GNN_OPS_LIBRARY", "LD_LIBRARY_PATH"):
        env.pop(name, None)
    collection.shell_env = env
    return collection


def _run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-5000:]}"
    return proc.stdout


def _lammps_matches_the_original(item_dir, original, env, workdir):
    """LAMMPS `kim init` on a rattled Si cell through the installed items,
    against the original periodic model."""
    from kim_gnn.executor import read_spec

    model_file = str(item_dir / contract.MODEL_FILE_NAME)
    installed = InstalledModel(item_dir.name, original, model_file, read_spec(model_file))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    got = run_lammps(atoms, item_dir.name, ["Si"], workdir, env=env)
    expected, _ = installed.reference(atoms)
    assert abs(got.energy - expected.energy) <= TOL * max(1.0, abs(expected.energy))
    np.testing.assert_allclose(got.forces, expected.forces, rtol=0,
                               atol=TOL * max(1.0, np.abs(expected.forces).max()))


def test_readme_publishing_path_runs_as_written(clean_collection, nequip_models, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core"))
    try:
        from test_readme import publishing_commands, readme_block
    finally:
        sys.path.pop(0)
    env = clean_collection.shell_env
    work = tmp_path / "work"
    (work / "kim-gnn-example").mkdir(parents=True)
    original = str(work / "kim-gnn-example" / "deployed.pth")
    shutil.copy(nequip_models.deployed(num_layers=2, species=("Si",)), original)
    (work / "metadata.yaml").write_text(readme_block("## Publishing", "yaml"))
    for line in publishing_commands():
        args = shlex.split(line)
        if args[0] == "kim-gnn":
            args = [sys.executable, "-m", "kim_gnn.cli", *args[1:]]
        _run(args, work, env)
    drivers, models = clean_collection.dirs["user-md"], clean_collection.dirs["user-pm"]
    assert (drivers / contract.KIM_GNN_DRIVER_NAME / "libkim-api-model-driver.so").is_file()
    assert (models / ITEM / "libkim-api-portable-model.so").is_file()
    _lammps_matches_the_original(work / ITEM, original, env, tmp_path / "lammps")


@pytest.mark.slow
def test_driver_source_directory_installs_into_the_environment_collection(clean_collection, nequip_models, tmp_path):
    """`kim-api-collections-management install environment csrc/driver`,
    then a model directory from `kim-gnn convert`: no kim-gnn command in
    between, no variable but the active Python environment."""
    from kim_gnn.kim_driver import driver_source_dir

    env = clean_collection.shell_env
    original = nequip_models.deployed(num_layers=2, species=("Si",))
    item = tmp_path / ITEM
    _run([sys.executable, "-m", "kim_gnn.cli", "convert", original, "-o", str(item), "--driver-name",
          contract.KIM_GNN_DRIVER_NAME, "-q"], tmp_path, env)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out = _run(["kim-api-collections-management", "install", "environment", driver_source_dir()], run_dir, env)
    assert contract.KIM_GNN_DRIVER_NAME in out
    _run(["kim-api-collections-management", "install", "environment", str(item)], run_dir, env)
    assert (clean_collection.dirs["md"] / contract.KIM_GNN_DRIVER_NAME / "libkim-api-model-driver.so").is_file()
    assert (clean_collection.dirs["pm"] / ITEM / "libkim-api-portable-model.so").is_file()
    _lammps_matches_the_original(item, original, env, tmp_path / "lammps")
