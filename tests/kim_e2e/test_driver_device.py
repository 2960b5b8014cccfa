"""kim-gnn's driver through the KIM API on the CPU and on a CUDA device
(``KIM_MODEL_EXECUTION_DEVICE``), driven by ``tests/csrc/kim_compute.cpp``,
the smallest KIM simulator: it needs neither kimpy nor LAMMPS, so the same
test runs on a GPU machine that has only the KIM API and torch.

- On the CPU (CI): the toy plug-in with the kim_gnn kernels through the
  driver equals the Python executor and the toy's original periodic model
  (energy, forces, per-particle virials folded onto the atoms).
- On CUDA (marked ``cuda``; scripts/device_check.sh): every device model
  (tests/device_models.py) through the driver on CUDA equals the driver on
  the CPU, and a model with the kernels gives the same bits on every call
  once TorchScript's executor has settled (after five warm-up calls).
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kim_gnn import contract
from device_models import (assert_cuda_equals_cpu, carried_models, cases, model_names_for_collection, toy_models,
                           toy_plugin, unequal_bits_expected, uses_kernels)

SOURCE = Path(__file__).resolve().parents[1] / "csrc" / "kim_compute.cpp"
TIMEOUT = 600
MODELS = model_names_for_collection()
#: Calls before the compared ones: TorchScript's profiling executor runs the
#: first calls unoptimised, then (on a GPU) fuses elementwise ops, which
#: rounds differently in the last bits (docs/kernels.md).
WARMUP_CALLS = 5
#: The driver runs a few structures per model (each kim_compute run loads
#: libtorch and the model once per device): periodic with padding, and a slab.
DRIVER_CASES = ("triclinic_alloy", "slab_vacuum")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def kim_compute(kim_collection, tmp_path_factory):
    """The kim_compute program, compiled against the KIM API (pkg-config)."""
    compiler = shutil.which("c++") or shutil.which("g++")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libkim-api"], stdout=subprocess.PIPE, text=True,
                           check=True).stdout.split()
    program = tmp_path_factory.mktemp("kim-compute") / "kim_compute"
    proc = subprocess.run([compiler, "-std=c++17", "-O2", str(SOURCE), "-o", str(program)] + flags,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"compiling kim_compute failed:\n{proc.stdout[-4000:]}"
    return program


@pytest.fixture(scope="module")
def device_items(kim_collection, tmp_path_factory):
    """name -> (KIM item name, .pt path, spec); installed on first use."""
    from kim_gnn.executor import read_spec

    paths = toy_models(tmp_path_factory.mktemp("toy-models"))
    paths.update(carried_models())
    installed = {}

    def get(name):
        if name not in installed:
            item = name.replace("-", "_") + "_KimGnnDriver__MO_000000000000_000"
            kim_collection.install_model(paths[name], item)
            installed[name] = (item, paths[name], read_spec(paths[name]))
        return installed[name]

    return get


def run_driver(kim_compute, kim_collection, tmp_path, item, spec, atoms, device, repeat=1, virials=True, warmup=0):
    """The driver's results for ``atoms`` (padded here as a simulator pads):
    energy, forces and per-particle virials folded onto the atoms, and the
    raw JSON (``identical_repeats``, ``compute_seconds``)."""
    from kim_gnn.graphs import pad_periodic_images

    padded = pad_periodic_images(atoms, spec.species, spec.influence_distance)
    config = tmp_path / "config.txt"
    lines = [str(padded.num_particles)]
    for p in range(padded.num_particles):
        x, y, z = padded.positions[p]
        kim_contributing = 1 if padded.contributions[p] == contract.CONTRIBUTING else 0  # KIM: 1 = contributes
        lines.append(f"{spec.species[padded.species[p]]} {float(x)!r} {float(y)!r} {float(z)!r} {kim_contributing}")
    config.write_text("\n".join(lines) + "\n")
    env = dict(kim_collection.env, KIM_MODEL_EXECUTION_DEVICE=device)
    command = [str(kim_compute), item, str(config), "--repeat", str(repeat), "--warmup", str(warmup)]
    command += ["--particle-virial"] if virials else []
    proc = subprocess.run(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=TIMEOUT)
    log = (tmp_path / "kim.log").read_text()[-3000:] if (tmp_path / "kim.log").exists() else ""
    assert proc.returncode == 0, f"kim_compute {item} on {device} failed:\n{proc.stderr[-3000:]}\nkim.log:\n{log}"
    raw = json.loads(proc.stdout)
    n = len(atoms)
    forces = np.zeros((n, 3))
    np.add.at(forces, padded.image_of, np.asarray(raw["forces"]).reshape(-1, 3))
    folded_virials = None
    if virials:
        folded_virials = np.zeros((n, 6))
        np.add.at(folded_virials, padded.image_of, np.asarray(raw["particle_virial"]).reshape(-1, 6))
    return raw["energy"], forces, folded_virials, raw


def test_driver_with_kernels_on_cpu_matches_executor_and_original(kim_compute, kim_collection, device_items,
                                                                  kim_log_dir):
    from kim_gnn.executor import StagedExecutor

    toy_kim_adapter = toy_plugin()

    item, path, spec = device_items("toy-kernels")
    executor = StagedExecutor(path)
    original = toy_kim_adapter.ToyOriginal(toy_kim_adapter.write_example(str(kim_log_dir.parent / "toy.toygnn")))
    for case in cases(spec):
        energy, forces, virials, _ = run_driver(kim_compute, kim_collection, kim_log_dir.parent, item, spec,
                                                case.atoms, "cpu")
        python = executor.run(case.atoms, virials=True)
        expected = original.evaluate(case.atoms)
        for reference in (python.energy, expected.energy):
            assert abs(energy - reference) <= 1e-10 * max(1.0, abs(reference)), (case.name, energy, reference)
        assert np.abs(forces - python.forces).max() <= 1e-10, case.name
        assert np.abs(forces - expected.forces).max() <= 1e-10, case.name
        assert np.abs(virials - python.virials).max() <= 1e-9 * max(1.0, np.abs(python.virials).max()), case.name


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_driver_on_cuda_equals_driver_on_cpu(kim_compute, kim_collection, device_items, kim_log_dir, name):
    item, _, spec = device_items(name)
    worst = [0.0, 0.0, 0.0]
    for case in cases(spec, DRIVER_CASES):
        on_cpu = run_driver(kim_compute, kim_collection, kim_log_dir.parent, item, spec, case.atoms, "cpu")
        on_gpu = run_driver(kim_compute, kim_collection, kim_log_dir.parent, item, spec, case.atoms, "cuda")
        found = assert_cuda_equals_cpu(f"driver {name} {case.name}", spec, on_cpu[:3], on_gpu[:3])
        worst = [max(w, v) for w, v in zip(worst, found)]
    print(f"driver {name} ({spec.model_dtype}) CUDA vs CPU, largest differences: energy {worst[0]:.3g} (relative), "
          f"forces {worst[1]:.3g} eV/A, per-particle virials {worst[2]:.3g}")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", [n for n in MODELS if uses_kernels(n)])
def test_driver_on_cuda_with_kernels_gives_the_same_bits_every_call(kim_compute, kim_collection, device_items,
                                                                     kim_log_dir, name):
    item, _, spec = device_items(name)
    for case in cases(spec, DRIVER_CASES):
        _, _, _, raw = run_driver(kim_compute, kim_collection, kim_log_dir.parent, item, spec, case.atoms, "cuda",
                                  repeat=3, warmup=WARMUP_CALLS)
        if not raw["identical_repeats"]:
            unequal_bits_expected(spec, f"{name} {case.name}: the driver's outputs changed between calls on CUDA")
        print(f"driver {name} {case.name}: warm-up calls gave {'same' if raw['warmup_identical'] else 'other'} bits")

