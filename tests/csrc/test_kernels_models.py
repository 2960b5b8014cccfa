"""Models converted with --kernels kim_gnn (NequIP 0.5/0.6 and MACE): the
whole verification battery against the original, and an independent driver
emulation (torch and the op library only, no kim_gnn) against the original,
bit-identical across repeated calls and thread counts; the CLI's --kernels.

Skipped, with the reason, where the op library is not built (CI builds it)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from skip_policy import require_op_library

from kim_gnn import kernels

require_op_library(module_level=True)

from kim_gnn.adapters import adapter_named  # noqa: E402
from kim_gnn.executor import read_spec  # noqa: E402
from kim_gnn.graphs import build_staged_graphs  # noqa: E402
from kim_gnn.verification.harness import verify  # noqa: E402
from kim_gnn.verification.structures import battery  # noqa: E402

SPECIES = ("Si", "C")
NEQUIP = dict(num_layers=3, species=SPECIES, model_dtype="float64", zbl=True, l_max=2, seed=3)
MACE = dict(num_interactions=2, species=SPECIES, model_dtype="float64", zbl=True,
            interaction="RealAgnosticDensityInteractionBlock", seed=2)


@pytest.fixture(scope="module")
def nequip_kernels(nequip_models, tmp_path_factory):
    from kim_gnn.nequip import convert_nequip

    source = nequip_models.deployed(**NEQUIP)
    path = str(tmp_path_factory.mktemp("nequip-kernels") / "model.pt")
    convert_nequip(source, kernels="kim_gnn").save(path)
    return source, path


@pytest.fixture(scope="module")
def mace_kernels(mace_models, tmp_path_factory):
    from kim_gnn.mace import convert_mace

    source = mace_models.model(**MACE)
    path = str(tmp_path_factory.mktemp("mace-kernels") / "model.pt")
    convert_mace(source, kernels="kim_gnn").save(path)
    return source, path


def _converted(request, name):
    return request.getfixturevalue(f"{name}_kernels")


@pytest.mark.parametrize("name", ["nequip", "mace"])
def test_kernels_model_passes_the_battery(request, name):
    source, path = _converted(request, name)
    spec = read_spec(path)
    assert spec.details["kernels"] == "kim_gnn" and spec.details["pruned"] == "true"
    assert kernels.archive_uses_ops(path)
    if name == "nequip":  # the kernels do not cost the NequIP model its scalar-only last layer
        assert spec.details["scalar_only_last_layer"] == "true", spec.details
        # every layer sums with the kernels; nequip's own ZBL module keeps its aten scatter, and says so
        assert spec.details["kernels_applied"] == "layers 1 2 3", spec.details
        assert spec.details["kernels_not_applied"] == "pair potential ZBL (nequip's own scatter)", spec.details
    else:
        assert spec.details["kernels_applied"] == "interactions 1 2; ZBL", spec.details
        assert "kernels_not_applied" not in spec.details
    # not the ZBL term alone (archive_uses_ops): each layer's aggregation is the kernels'
    import torch

    model = torch.jit.load(path).staged
    layers = model.layers if name == "nequip" else model.interactions
    kinds = [layer.aggregation.original_name for _, layer in layers.named_children()]
    assert kinds == ["KernelAggregation"] * spec.num_layers, kinds
    report = verify(source, path)
    assert report.passed, "\n" + report.summary()


@pytest.mark.parametrize("name", ["nequip", "mace"])
def test_float32_kernels_model_equals_the_aten_model(nequip_models, mace_models, staged_runs, tmp_path, name):
    """float32: the kernels model gives the aten model's numbers (to float32
    precision) on the battery."""
    if name == "nequip":
        from kim_gnn.nequip import convert_nequip as convert

        source = nequip_models.deployed(**{**NEQUIP, "model_dtype": "float32", "num_layers": 2})
    else:
        from kim_gnn.mace import convert_mace as convert

        source = mace_models.model(**{**MACE, "model_dtype": "float32"})
    paths = []
    for kernels_choice in ("kim_gnn", "aten"):
        paths.append(tmp_path / f"{kernels_choice}.pt")
        convert(source, kernels=kernels_choice).save(str(paths[-1]))
    staged_runs.assert_same_results(*paths, battery(SPECIES, 3.5), 2e-5)


@pytest.mark.parametrize("name", ["nequip", "mace"])
def test_kernels_model_in_a_driver_process_without_kim_gnn(request, tmp_path, name, driver_emulation):
    source, path = _converted(request, name)
    spec = read_spec(path)
    cases = [c for c in battery(SPECIES, spec.cutoff) if c.reference_atoms is None and c.map_result is None]
    graphs = [build_staged_graphs(c.atoms, spec.species, spec.cutoff, spec.num_layers) for c in cases]
    one, two = driver_emulation(tmp_path, path, graphs, 1), driver_emulation(tmp_path, path, graphs, 2)
    original = adapter_named(name).original(source, spec)
    for c, (case, g) in enumerate(zip(cases, graphs)):
        assert one[f"{c}_repeatable"], f"{case.name}: repeated calls differ"
        assert np.array_equal(one[f"{c}_energies"], two[f"{c}_energies"]), f"{case.name}: threads change energies"
        assert np.array_equal(one[f"{c}_forces"], two[f"{c}_forces"]), f"{case.name}: threads change forces"
        expected = original.evaluate(case.atoms)
        energies = one[f"{c}_energies"]
        assert np.all(energies[g.num_contributing:] == 0), case.name
        n = len(case.atoms)
        assert abs(energies.sum() - expected.energy) <= 1e-10 * max(n, abs(expected.energy)), case.name
        real = g.image_of >= 0
        forces = np.zeros((n, 3))
        np.add.at(forces, g.image_of[real], one[f"{c}_forces"][real])
        scale = max(1.0, float(np.abs(expected.forces).max(initial=0.0)))
        np.testing.assert_allclose(forces, expected.forces, rtol=0, atol=1e-10 * scale, err_msg=case.name)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kim_gnn.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_kernels(nequip_models, tmp_path):
    source = nequip_models.deployed(**NEQUIP)
    out = tmp_path / "K__MO_000000000000_000"
    proc = _cli("convert", source, "-o", str(out), "--kernels", "kim_gnn")
    assert proc.returncode == 0, proc.stderr
    assert "kernels kim_gnn" in proc.stdout
    info = _cli("info", str(out))
    assert info.returncode == 0 and any(line.split() == ["kernels", "kim_gnn"] for line in info.stdout.splitlines())
    # the default stays aten-only: no kim_gnn op in the model's code
    default = tmp_path / "A__MO_000000000000_000"
    assert _cli("convert", source, "-o", str(default)).returncode == 0
    assert not kernels.archive_uses_ops(str(default / "model.pt"))
    assert read_spec(default).details["kernels"] == "aten"


@pytest.mark.parametrize("args,env,message", [
    (["--kernels", "kim_gnn", "--no-prune"], None, "applies to the pruned model only"),
    (["--kernels", "kim_gnn"], {"KIM_GNN_OPS_LIBRARY": "/nonexistent/libkim_gnn_ops.so"},
     "the kim_gnn op library is not built"),
])
def test_cli_kernels_refused(nequip_models, tmp_path, args, env, message):
    source = nequip_models.deployed(**NEQUIP)
    out = tmp_path / "R__MO_000000000000_000"
    proc = _cli("convert", source, "-o", str(out), *args, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("kim-gnn: error:") and message in lines[-1], proc.stderr
    assert not out.exists()


def test_running_a_kernels_model_without_the_library_is_a_clear_error(nequip_kernels, tmp_path):
    _, path = nequip_kernels
    proc = _cli("info", path, env={"KIM_GNN_OPS_LIBRARY": "/nonexistent/libkim_gnn_ops.so"})
    assert proc.returncode == 2
    assert "was converted with --kernels kim_gnn and needs the kim_gnn op library" in proc.stderr
