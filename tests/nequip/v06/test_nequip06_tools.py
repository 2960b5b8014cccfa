"""nequip 0.6.2's own command-line tools run in the legacy environment as
docs/models.md says (section "NequIP 0.6's own tools"): ``nequip-deploy`` with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (e3nn 0.4.4 and nequip load their
files with torch.load, which torch >= 2.6 restricts to weights), and
``nequip-train`` with numpy < 2.4 too (nequip 0.6.2 calls ``numpy.in1d``,
which NumPy 2.4 removed; the legacy extra pins it)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from skip_policy import missing, require_import
import yaml

require_import("nequip", module_level=True)

BIN = os.path.dirname(sys.executable)


def _tool(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        path = shutil.which(name)
    if not path:
        missing(f"{name} is not installed (nequip 0.6.2, scripts/setup.sh)")
    return path


def _env(weights_only_off=True):
    env = dict(os.environ)
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    if weights_only_off:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return env


def _config(tmp_path, **extra):
    from kim_gnn.nequip.v06.example import example_config

    config = example_config(species=("Si",), num_layers=2, r_max=4.0, workdir=str(tmp_path))
    config.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)


def test_nequip_deploy_runs_with_the_readmes_setting_and_its_file_converts(tmp_path):
    deploy = _tool("nequip-deploy")
    config = _config(tmp_path)
    proc = _run([deploy, "build", "--model", str(config), "deployed.pth"], tmp_path, _env())
    assert proc.returncode == 0, proc.stdout[-3000:]
    from kim_gnn.cli import main

    assert main(["convert", str(tmp_path / "deployed.pth"), "-o", str(tmp_path / "Si__MO_000000000000_000"),
                 "-q"]) == 0
    # Why docs/models.md names the variable: without it torch refuses e3nn's own files.
    proc = _run([deploy, "build", "--model", str(config), "again.pth"], tmp_path, _env(weights_only_off=False))
    assert proc.returncode != 0 and "weights_only" in proc.stdout.replace("Weights", "weights"), proc.stdout[-2000:]


def test_the_numpy_pin_is_what_nequip_train_needs():
    """The reason docs/models.md and the legacy extra give stays true."""
    import nequip

    source = open(os.path.join(os.path.dirname(nequip.__file__), "data", "_dataset", "_base_datasets.py")).read()
    assert "np.in1d(" in source
    major, minor = (int(x) for x in np.__version__.split(".")[:2])
    assert hasattr(np, "in1d") == ((major, minor) < (2, 4))


@pytest.mark.slow
def test_nequip_train_then_deploy_of_a_tiny_model(tmp_path):
    major, minor = (int(x) for x in np.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):
        missing(f"numpy {np.__version__} has no in1d, which nequip-train 0.6.2 calls: the legacy extra pins "
                    "numpy<2.4 (rerun scripts/setup.sh)")
    from ase.build import bulk
    from ase.calculators.lj import LennardJones
    from ase.io import write

    frames = []
    for i in range(6):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = LennardJones(sigma=2.0, epsilon=0.1, rc=4.0)
        atoms.get_potential_energy()
        atoms.get_forces()
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    config = _config(tmp_path, root="results", run_name="tiny", dataset="ase", dataset_file_name="data.extxyz",
                     ase_args={"format": "extxyz"}, n_train=4, n_val=2, max_epochs=1, batch_size=1,
                     learning_rate=0.01, loss_coeffs={"forces": 1.0, "total_energy": 1.0},
                     metrics_components=[["forces", "mae"]], wandb=False, avg_num_neighbors="auto",
                     per_species_rescale_scales="dataset_forces_rms",
                     per_species_rescale_shifts="dataset_per_atom_total_energy_mean")
    proc = _run([_tool("nequip-train"), str(config)], tmp_path, _env())
    assert proc.returncode == 0, proc.stdout[-3000:]
    proc = _run([_tool("nequip-deploy"), "build", "--train-dir", "results/tiny", "deployed.pth"], tmp_path, _env())
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "deployed.pth").is_file()
