"""The converted models the device tests run (tests/csrc/test_cuda_models.py,
tests/kim_e2e/test_driver_device.py).

- The toy plug-in (tests/plugins/toy_kim_adapter.py), converted here from
  torch alone, with aten and with the kim_gnn kernels: it needs no
  architecture package, so it runs on any machine, a GPU machine too.
- Where ``KIM_GNN_DEVICE_MODELS`` names a folder, every converted model
  (``*.pt``) in it: ``scripts/device_models.py`` writes seeded NequIP 0.6,
  MACE, nequip >= 0.7 NequIP and Allegro conversions there (in the
  environments that have those packages), and ``scripts/device_check.sh``
  carries them to a GPU machine that has none of them.

A model's name ends in ``-kernels`` when it was converted with
``--kernels kim_gnn``.
"""

import glob
import os
import sys
from pathlib import Path
from typing import Dict, List

PLUGINS = Path(__file__).resolve().parent / "plugins"
MODELS_VARIABLE = "KIM_GNN_DEVICE_MODELS"

#: The structures every device test runs (kim_gnn.verification.structures.battery):
#: periodic with padding, several species where the model has them, a slab, one atom.
CASES = ("triclinic_alloy", "slab_vacuum", "primitive_small_cell", "single_atom")


def toy_plugin():
    """The toy plug-in module (tests/plugins/toy_kim_adapter.py)."""
    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    import toy_kim_adapter

    return toy_kim_adapter


def toy_models(directory) -> Dict[str, str]:
    """The toy plug-in converted with aten and with the kernels: name -> .pt path."""
    toy_kim_adapter = toy_plugin()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = toy_kim_adapter.write_example(str(directory / "toy.toygnn"))
    models = {}
    for kernels in ("aten", "kim_gnn"):
        name = "toy" + ("-kernels" if kernels == "kim_gnn" else "")
        path = directory / f"{name}.pt"
        if not path.exists():
            toy_kim_adapter.convert_toy(source, kernels=kernels).save(str(path))
        models[name] = str(path)
    return models


def carried_models() -> Dict[str, str]:
    """The converted models in ``$KIM_GNN_DEVICE_MODELS`` (none when unset);
    a set variable naming a folder without models is an error."""
    folder = os.environ.get(MODELS_VARIABLE)
    if not folder:
        return {}
    found = sorted(glob.glob(os.path.join(folder, "*.pt")))
    if not found:
        raise FileNotFoundError(f"{MODELS_VARIABLE}={folder} holds no converted model (*.pt)")
    return {Path(p).stem: p for p in found}


def model_names_for_collection() -> List[str]:
    """Names for pytest parametrisation, known at collection time."""
    return ["toy", "toy-kernels"] + sorted(carried_models())


def uses_kernels(name: str) -> bool:
    return name.endswith("-kernels")


def kernels_in_part(spec) -> str:
    """What of a kernels model kept aten sums ('' where the kernels do all
    of its sums): such a model has no bit-for-bit promise on a GPU, whose
    aten sums may use atomics."""
    return spec.details.get("kernels_not_applied", "")


def unequal_bits_expected(spec, what: str) -> None:
    """A kernels model gave other bits on a repeated call: a failure, or an
    expected one (xfail, with the reason) where the kernels apply in part."""
    import pytest

    partial = kernels_in_part(spec)
    if partial:
        pytest.xfail(f"{what}; the kernels apply in part ({partial}): the aten sums left may differ in the last bits")
    pytest.fail(what)


def cases(spec, names=CASES):
    from kim_gnn.verification.structures import battery

    return [c for c in battery(spec.species, spec.cutoff) if c.name in names]


def assert_cuda_equals_cpu(what: str, spec, cpu, gpu):
    """``cpu`` and ``gpu``: (energy, forces, per-atom virials or None) of one
    structure. Asserts the differences are within ``tolerances(spec)`` and
    returns them (relative energy, forces in eV/A, relative virials)."""
    import numpy as np

    energy_tol, force_tol, virial_tol = tolerances(spec)
    energy = abs(cpu[0] - gpu[0]) / max(1.0, abs(cpu[0]))
    forces = float(np.abs(cpu[1] - gpu[1]).max())
    assert energy <= energy_tol, f"{what}: energy {cpu[0]} on the CPU, {gpu[0]} on CUDA"
    assert forces <= force_tol, f"{what}: forces differ by {forces:.3g} eV/A"
    virials = 0.0
    if cpu[2] is not None:
        virials = float(np.abs(cpu[2] - gpu[2]).max()) / max(1.0, float(np.abs(cpu[2]).max()))
        assert virials <= virial_tol, f"{what}: per-atom virials differ by {virials:.3g}"
    return energy, forces, virials


def tolerances(spec):
    """(relative energy, force in eV/A, per-atom virial in eV) for CUDA
    against the CPU: the same model in another summation order."""
    if spec.model_dtype == "float64":
        return 1e-10, 1e-10, 1e-9
    return 1e-5, 1e-4, 1e-3
