"""Pruned and unpruned converted MACE models give the same numbers on the
whole battery (and its property cases); the switch is recorded."""

import numpy as np
import pytest

from kim_gnn.executor import read_spec
from kim_gnn.mace import convert_mace
from kim_gnn.verification.structures import battery, property_cases

SPECIES = ("Si", "C")
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}
RESIDUAL = "RealAgnosticResidualInteractionBlock"
DENSITY = "RealAgnosticDensityInteractionBlock"


def _pair(mace_models, tmp_path, **options):
    source = mace_models.model(**options)
    paths = []
    for prune in (True, False):
        path = tmp_path / f"prune-{prune}.pt"
        convert_mace(source, prune=prune).save(str(path))
        paths.append(path)
    return paths


@pytest.mark.parametrize("num_layers,dtype,interaction,extra", [
    (1, "float64", RESIDUAL, dict(zbl=True)),
    (2, "float32", DENSITY, dict(zbl=True, distance_transform="Agnesi")),
    (3, "float64", DENSITY, dict(scale_shift=False)),
    (2, "float64", RESIDUAL, dict(use_last_readout_only=True, correlation=3)),
    (3, "float32", RESIDUAL, dict()),
])
def test_pruned_equals_unpruned_on_the_battery(mace_models, staged_runs, tmp_path, num_layers, dtype, interaction,
                                                extra):
    pruned, unpruned = _pair(mace_models, tmp_path, num_interactions=num_layers, species=SPECIES, model_dtype=dtype,
                             interaction=interaction, seed=num_layers, **extra)
    assert read_spec(pruned).details["pruned"] == "true"
    assert read_spec(unpruned).details["pruned"] == "false"
    staged_runs.assert_same_results(pruned, unpruned, battery(SPECIES, 3.5) + property_cases(SPECIES, 3.5),
                                    TOLERANCE[dtype])


def test_pruned_model_under_default_float32_and_without_mace(mace_models, staged_runs):
    options = dict(num_interactions=3, species=SPECIES, model_dtype="float64", zbl=True)
    path = mace_models.converted(**options)
    assert read_spec(path).details["pruned"] == "true"
    atoms = battery(SPECIES, 3.5)[1].atoms
    as_float32, as_float64 = staged_runs.under_default_dtypes(path, atoms)
    assert as_float32.energy == as_float64.energy
    np.testing.assert_array_equal(as_float32.forces, as_float64.forces)
    assert staged_runs.energy_without_architecture_packages(path, atoms) == pytest.approx(as_float64.energy, abs=1e-12)


def test_product_basis_in_blocks_of_nodes_gives_the_same_numbers(mace_models, staged_runs, tmp_path, monkeypatch):
    """The product basis runs on blocks of nodes (``ChunkedProduct``) whose
    size ``product_chunk`` sets from the symmetric contraction's largest
    per-node intermediate: blocks of a few nodes (with and without the
    residual self-connection, and with a density block) give the numbers of
    one call on all nodes. Where no block size is found the conversion says
    so in one warning line."""
    import torch

    from kim_gnn.errors import OptimisationNotApplied
    from kim_gnn.mace import convert as mace_convert
    from kim_gnn.mace.example import build_example_mace

    # the benchmark's model (32x0e+32x1o, max_ell 2, correlation 3): [n, 32, 3, 9, 9] per node
    benchmark = build_example_mace(species=("Si",), num_interactions=2, r_max=5.0, num_channels=32, hidden_l=1,
                                   max_ell=2, correlation=3, model_dtype="float64")
    assert [mace_convert.product_chunk(p, torch.float64) for p in benchmark.products] == [
        (8 << 20) // (32 * 3 * 81 * 8), (8 << 20) // (32 * 81 * 8)]
    assert mace_convert.product_chunk(benchmark.products[0], torch.float32) == (8 << 20) // (32 * 3 * 81 * 4)
    for interaction in (RESIDUAL, DENSITY):
        source = mace_models.model(num_interactions=2, species=SPECIES, model_dtype="float64", interaction=interaction,
                                   correlation=3, zbl=True, seed=5)
        whole, blocks = tmp_path / f"whole-{interaction}.pt", tmp_path / f"blocks-{interaction}.pt"
        monkeypatch.setattr(mace_convert, "product_chunk", lambda product, dtype: 0)
        with pytest.warns(OptimisationNotApplied, match=r"^product basis of interaction\(s\) 1 2 not run in blocks"):
            convert_mace(source).save(str(whole))  # one call on all nodes
        monkeypatch.setattr(mace_convert, "product_chunk", lambda product, dtype: 3)
        convert_mace(source).save(str(blocks))  # blocks of 3 nodes, the last one shorter
        staged_runs.assert_same_results(blocks, whole, battery(SPECIES, 3.5), 1e-12)


def test_whole_dimension_slices_are_dropped_from_the_copy_only():
    """e3nn's generated tensor products slice each path's weights as
    ``w[:, a:b]``; TorchScript's extra whole-dimension slice (a zeroed copy of
    the weights per path in the backward) is removed from the converted
    model's copy, never from the model passed in. (That the numbers stay the
    original's: every converted-equals-original test.)"""
    import torch

    from kim_gnn import torchscript_graphs
    from kim_gnn.mace import convert as mace_convert
    from kim_gnn.mace.example import build_example_mace

    def whole_slices(model):
        found = 0
        for module in model.modules():
            for name in getattr(module, "__codegen__", []):
                for node in getattr(module, name).graph.findAllNodes("aten::slice"):
                    inputs = list(node.inputs())
                    if isinstance(inputs[0].type(), torch._C.TensorType) and [v.toIValue() for v in inputs[2:]] == [
                            0, torchscript_graphs.SLICE_TO_END, 1]:
                        found += 1
        return found

    model = build_example_mace(species=("Si",), num_interactions=2, num_channels=8, hidden_l=1, max_ell=2,
                               correlation=2, model_dtype="float64")
    before = whole_slices(model)
    copy = mace_convert._copy_model(model)
    assert before > 0 and whole_slices(copy) == before
    assert torchscript_graphs.drop_whole_dimension_slices(copy) == before
    assert whole_slices(copy) == 0 and whole_slices(model) == before
