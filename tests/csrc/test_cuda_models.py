"""Converted models on a CUDA device, in the Python executor (as ``verify``
and ``StagedCalculator`` run them): the same energies, forces and per-atom
virials as on the CPU, and with the kim_gnn kernels the same bits on every
call. Marked ``cuda``: deselected where there is no GPU (CI);
``scripts/device_check.sh`` runs them on a GPU machine, on the toy plug-in
and on the models ``KIM_GNN_DEVICE_MODELS`` names (tests/device_models.py).
"""

import numpy as np
import pytest
import torch

from device_models import (assert_cuda_equals_cpu, carried_models, cases, model_names_for_collection, toy_models,
                           toy_plugin, unequal_bits_expected, uses_kernels)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

MODELS = model_names_for_collection()
WARMUP_CALLS = 5  # see test_cuda_kernels_give_the_same_bits_every_call


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    found = toy_models(tmp_path_factory.mktemp("toy-models"))
    found.update(carried_models())
    return found


def _executor(path, device):
    from kim_gnn import kernels
    from kim_gnn.executor import StagedExecutor

    if device == "cuda" and kernels.archive_uses_ops(path) and not kernels.build_info().get("cuda"):
        pytest.fail(f"{path} uses the kim_gnn kernels but the op library was built without CUDA "
                    "(build it where torch sees CUDA and nvcc: python csrc/build_ops.py --force)")
    return StagedExecutor(path, device=device)


@pytest.mark.parametrize("name", MODELS)
def test_cuda_equals_cpu(models, name):
    cpu, gpu = _executor(models[name], "cpu"), _executor(models[name], "cuda")
    virials = cpu.provides_virials
    worst = [0.0, 0.0, 0.0]
    for case in cases(cpu.spec):
        a, b = cpu.run(case.atoms, virials=virials), gpu.run(case.atoms, virials=virials)
        found = assert_cuda_equals_cpu(f"{name} {case.name}", cpu.spec, (a.energy, a.forces, a.virials),
                                       (b.energy, b.forces, b.virials))
        worst = [max(w, v) for w, v in zip(worst, found)]
    print(f"{name} ({cpu.spec.model_dtype}) CUDA vs CPU, largest differences: energy {worst[0]:.3g} "
          f"(relative), forces {worst[1]:.3g} eV/A, per-atom virials {worst[2]:.3g}")


@pytest.mark.parametrize("fuser", ["default", "off"])
@pytest.mark.parametrize("name", [n for n in MODELS if uses_kernels(n)])
def test_cuda_kernels_give_the_same_bits_every_call(models, name, fuser):
    """From the settled call on, every call gives the same bits. TorchScript's
    profiling executor runs the first calls unoptimised and then (on a GPU,
    unless its fuser is off) fuses elementwise ops, which rounds differently
    in the last bits: the first ``WARMUP_CALLS`` calls may differ. Which
    calls matched the last one is printed."""
    previous = torch._C._jit_texpr_fuser_enabled()
    if fuser == "off":
        torch._C._jit_set_texpr_fuser_enabled(False)
    try:
        gpu = _executor(models[name], "cuda")
        for case in cases(gpu.spec):
            runs = [gpu.run(case.atoms, virials=gpu.provides_virials) for _ in range(WARMUP_CALLS + 3)]
            last = runs[-1]
            pattern = "".join("=" if _same_bits(r, last) else "x" for r in runs)
            print(f"{name} fuser {fuser} {case.name}: calls vs the last: {pattern}")
            if "x" in pattern[WARMUP_CALLS:]:
                unequal_bits_expected(gpu.spec, f"{name} {case.name} (fuser {fuser}): calls on CUDA after "
                                                f"{WARMUP_CALLS} warm-up calls gave other bits: {pattern}")
    finally:
        torch._C._jit_set_texpr_fuser_enabled(previous)


def _same_bits(a, b) -> bool:
    return (a.energy == b.energy and np.array_equal(a.forces, b.forces)
            and (a.virials is None or np.array_equal(a.virials, b.virials)))


def test_toy_on_cuda_matches_its_original(models, tmp_path):
    toy_kim_adapter = toy_plugin()
    original = toy_kim_adapter.ToyOriginal(toy_kim_adapter.write_example(str(tmp_path / "toy.toygnn")))
    for name in ("toy", "toy-kernels"):
        gpu = _executor(models[name], "cuda")
        for case in cases(gpu.spec):
            expected, got = original.evaluate(case.atoms), gpu.run(case.atoms, virials=True)
            assert abs(got.energy - expected.energy) <= 1e-10 * max(1.0, abs(expected.energy)), (name, case.name)
            assert np.abs(got.forces - expected.forces).max() <= 1e-10, (name, case.name)
            reference = original.atomic_virials(case.atoms)
            assert np.abs(got.virials - reference).max() <= 1e-9 * max(1.0, np.abs(reference).max()), (name, case.name)
