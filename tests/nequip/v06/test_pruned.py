"""Pruned and unpruned converted NequIP models give the same numbers on the
whole battery (and its property cases); the switch is recorded."""

import numpy as np
import pytest

from kim_gnn.executor import StagedExecutor, read_spec
from kim_gnn.nequip import convert_nequip
from kim_gnn.verification.structures import battery, property_cases

SPECIES = ("Si", "C")
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


def _pair(nequip_models, tmp_path, **options):
    source = nequip_models.deployed(**options)
    paths = []
    for prune in (True, False):
        path = tmp_path / f"prune-{prune}.pt"
        convert_nequip(source, prune=prune).save(str(path))
        paths.append(path)
    return paths


@pytest.mark.parametrize("num_layers,dtype,zbl", [(1, "float64", True), (2, "float32", False), (3, "float64", False),
                                                  (3, "float32", True)])
def test_pruned_equals_unpruned_on_the_battery(nequip_models, staged_runs, tmp_path, num_layers, dtype, zbl):
    pruned, unpruned = _pair(nequip_models, tmp_path, num_layers=num_layers, species=SPECIES, model_dtype=dtype,
                             zbl=zbl, l_max=2, seed=num_layers)
    assert read_spec(pruned).details["pruned"] == "true"
    assert read_spec(unpruned).details["pruned"] == "false"
    staged_runs.assert_same_results(pruned, unpruned, battery(SPECIES, 3.5) + property_cases(SPECIES, 3.5),
                                    TOLERANCE[dtype])


def test_lennard_jones_pair_term_is_pruned_exactly(nequip_models, tmp_path):
    pruned, unpruned = _pair(nequip_models, tmp_path, num_layers=2, species=SPECIES, pair_style="LJ")
    a, b = StagedExecutor(pruned), StagedExecutor(unpruned)
    for case in battery(SPECIES, 3.5):
        ra, rb = a.run(case.atoms), b.run(case.atoms)
        np.testing.assert_allclose(ra.energies, rb.energies, rtol=0, atol=1e-12, err_msg=case.name)
        np.testing.assert_allclose(ra.forces, rb.forces, rtol=0, atol=1e-12, err_msg=case.name)


def test_pruned_model_under_default_float32_and_without_nequip(nequip_models, staged_runs):
    options = dict(num_layers=3, species=SPECIES, model_dtype="float64", zbl=True)
    path = nequip_models.converted(**options)
    assert read_spec(path).details["pruned"] == "true"
    atoms = battery(SPECIES, 3.5)[1].atoms
    as_float32, as_float64 = staged_runs.under_default_dtypes(path, atoms)
    assert as_float32.energy == as_float64.energy
    np.testing.assert_array_equal(as_float32.forces, as_float64.forces)
    assert staged_runs.energy_without_architecture_packages(path, atoms) == pytest.approx(as_float64.energy, abs=1e-12)


def test_residual_layers_run_on_receivers_exactly(nequip_models):
    """With resnet, the last layer adds its input: ReceiverLayer's residual path."""
    from kim_gnn.verification.harness import verify

    options = dict(num_layers=4, species=SPECIES, resnet=True, l_max=2)
    path = nequip_models.converted(**options)
    assert read_spec(path).details["receiver_only_layers"] == "4"
    report = verify(nequip_models.deployed(**options), path)
    assert report.passed, "\n" + report.summary()


def test_receiver_layers_per_block_of_edges_give_the_same_numbers(nequip_models):
    """On the CPU a ReceiverLayer (and the scalar-only last layer) runs its
    radial network and tensor product per block of ``edge_chunk`` edges
    (``graph_stages.EDGE_CHUNK``): blocks of 7 edges give the numbers of one
    block for the whole graph."""
    from kim_gnn.executor import load_unfrozen, run_on_graphs
    from kim_gnn.graphs import build_staged_graphs

    path = nequip_models.converted(num_layers=4, species=SPECIES, resnet=True, l_max=2)
    whole, spec = load_unfrozen(path)
    blocked, _ = load_unfrozen(path)
    layers = [layer for _, layer in blocked.staged.layers.named_children() if hasattr(layer, "edge_chunk")]
    assert [layer.original_name for layer in layers] == ["ReceiverLayer"] * 3 + ["ScalarOnlyLastLayer"]
    for layer in [layer for _, layer in whole.staged.layers.named_children() if hasattr(layer, "edge_chunk")]:
        layer.edge_chunk = 10**9
    for layer in layers:
        layer.edge_chunk = 7
    blocks = 0
    for case in battery(SPECIES, 3.5)[:6]:
        graphs = build_staged_graphs(case.atoms, spec.species, spec.cutoff, spec.num_layers)
        blocks += sum(e.shape[1] > 7 for e in graphs.edge_index)
        a = run_on_graphs(blocked, graphs, len(case.atoms))
        b = run_on_graphs(whole, graphs, len(case.atoms))
        np.testing.assert_allclose(a.energies, b.energies, rtol=0, atol=1e-12, err_msg=case.name)
        np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-12, err_msg=case.name)
    assert blocks >= 6  # graphs of more than one block
