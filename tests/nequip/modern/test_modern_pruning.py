"""Pruned staged execution of nequip >= 0.7 models (NequIP GNN and Allegro)
on the core runtime (``kim_gnn/runtime``).

* The pruned model (and the pruned model with the kim_gnn kernels) equals the
  unpruned model (the identity plan) to 1e-12 on the battery, eager and
  compiled artifacts, per-edge-type cutoffs and per-type avg_num_neighbors.
* A pruned model touches no particle outside the needed sets: poisoning the
  others (NaN coordinates, invalid species, edges of zero length into
  receivers a layer does not need) leaves the result unchanged and finite.
* A model converted with --kernels kim_gnn runs in a process with only torch
  and the op library (no kim_gnn, nequip, e3nn) and equals the original.
"""

import os

import numpy as np
import pytest
from skip_policy import missing

from kim_gnn import contract, kernels
from kim_gnn.executor import load_staged_model, load_unfrozen, read_spec
from kim_gnn.graphs import build_staged_graphs
from kim_gnn.verification.structures import battery

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

pytestmark = pytest.mark.skipif(
    not is_modern_version(nequip_version()),
    reason="needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)",
)

SPECIES = ("Si", "C")
CUTOFFS = {"Si": 4.0, "C": {"Si": 3.5, "C": 3.1}}
MODELS = {
    # three layers, l_max 2, per-edge-type cutoffs, per-type avg_num_neighbors (the builder's default), ZBL
    "nequip": dict(species=SPECIES, num_layers=3, l_max=2, pair_potential="ZBL", per_edge_type_cutoff=CUTOFFS,
                   model_dtype="float64", seed=21),
    "allegro": dict(architecture="allegro", species=SPECIES, num_layers=2, pair_potential="ZBL",
                    per_edge_type_cutoff=CUTOFFS, model_dtype="float64", seed=22),
}
MODES = {"pruned": {}, "unpruned": {"prune": False}, "kernels": {"kernels": "kim_gnn"}}


class Converted:
    """Each model converted once per artifact and mode, saved as the driver loads it."""

    def __init__(self, models, root):
        self.models, self.root, self.paths = models, root, {}

    def source(self, kind, artifact="in_memory"):
        return getattr(self.models, artifact)(**MODELS[kind])

    def path(self, kind, mode, artifact="in_memory"):
        from kim_gnn import convert_nequip

        key = (kind, mode, artifact)
        if key not in self.paths:
            if mode == "kernels" and not kernels.available():
                missing(f"the kim_gnn op library is not built ({kernels.BUILD_COMMAND})")
            path = os.path.join(self.root, f"{kind}-{mode}-{artifact}.pt")
            convert_nequip(self.source(kind, artifact), **MODES[mode]).save(path)
            self.paths[key] = path
        return self.paths[key]


@pytest.fixture(scope="module")
def converted(modern_models, tmp_path_factory):
    return Converted(modern_models, str(tmp_path_factory.mktemp("modern-pruning")))


def _graphs(atoms, num_layers):
    return build_staged_graphs(atoms, SPECIES, 4.0, num_layers)


def _run(module, species, positions, graphs, contributions, staged=False):
    import torch

    coordinates = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    edges = [torch.as_tensor(e, dtype=torch.int64) for e in graphs]
    inputs = (torch.as_tensor(species, dtype=torch.int64), coordinates)
    contributions = torch.as_tensor(contributions, dtype=torch.int64)
    energies = module(*inputs, edges, contributions) if staged else module(*inputs, *edges, contributions)
    energies.sum().backward()
    grad = coordinates.grad if coordinates.grad is not None else torch.zeros_like(coordinates)
    return energies.detach().numpy(), grad.numpy()


def _assert_close(got, expected, what, tol=1e-12):
    for name, a, b in zip(("energies", "forces"), got, expected):
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=f"{what}: {name}")


def _needed_sets(graphs, contributions):
    """B_0 = contributing; B_{k+1} = B_k plus every particle joined to B_k by an edge of graph k."""
    sets = [{p for p, c in enumerate(contributions) if c == contract.CONTRIBUTING}]
    for edges in graphs:
        grown = set(sets[-1])
        for a, b in zip(edges[0].tolist(), edges[1].tolist()):
            if a in sets[-1]:
                grown.add(b)
            if b in sets[-1]:
                grown.add(a)
        sets.append(grown)
    return sets


def _symmetric(pairs):
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
    return np.concatenate([pairs, pairs[::-1]], axis=1)


@pytest.mark.parametrize("kind,artifact", [("nequip", "in_memory"), ("nequip", "compiled"),
                                           ("allegro", "package"), ("allegro", "compiled")])
def test_pruned_and_kernels_models_equal_the_unpruned_model(converted, kind, artifact):
    modes = ["pruned", "unpruned"] + (["kernels"] if kernels.available() else [])
    models = {mode: load_staged_model(converted.path(kind, mode, artifact)) for mode in modes}
    num_layers = models["pruned"][1].num_layers
    for case in battery(SPECIES, 4.0):
        g = _graphs(case.atoms, num_layers)
        inputs = (g.species, g.positions, g.edge_index, g.contributions)
        expected = _run(models["unpruned"][0], *inputs)
        assert np.all(np.isfinite(expected[0])) and np.all(np.isfinite(expected[1])), case.name
        for mode in modes[:1] + modes[2:]:
            _assert_close(_run(models[mode][0], *inputs), expected, f"{kind} {artifact} {mode} {case.name}")


@pytest.mark.parametrize("kind", list(MODELS))
def test_particles_in_no_needed_set_are_never_read(converted, kind):
    module, spec = load_staged_model(converted.path(kind, "pruned"))
    staged = load_unfrozen(converted.path(kind, "pruned"))[0].staged
    invalid_species = 10**6
    for case in battery(SPECIES, 4.0)[:5]:
        g = _graphs(case.atoms, spec.num_layers)
        expected = _run(module, g.species, g.positions, g.edge_index, g.contributions)
        outside = sorted(set(range(g.num_particles)) - _needed_sets(g.edge_index, g.contributions)[-1])
        positions = g.positions.copy()
        positions[outside] = np.nan
        species = g.species.copy()
        species[outside] = invalid_species
        n = g.num_particles
        # and a cluster of garbage particles joined to each other and to those, in every graph
        pairs = [(n, n + 1), (n + 1, n + 2)] + [(n, p) for p in outside[:5]]
        graphs = [np.concatenate([e, _symmetric(pairs)], axis=1) for e in g.edge_index]
        all_positions = np.concatenate([positions, np.full((3, 3), np.nan)])
        all_species = np.concatenate([species, np.full(3, invalid_species)])
        all_contributions = np.concatenate([g.contributions, np.full(3, contract.NOT_CONTRIBUTING)])
        energies, grad = _run(staged, all_species, all_positions, graphs, all_contributions, staged=True)
        assert np.all(np.isfinite(energies)), case.name
        assert np.all(grad[outside] == 0) and np.all(grad[n:] == 0), case.name
        inside = [p for p in range(n) if p not in set(outside)]
        _assert_close((energies[:n], grad[inside]), (expected[0], expected[1][inside]), f"{kind} {case.name}")


@pytest.mark.parametrize("kind", list(MODELS))
def test_each_layer_ignores_edges_into_receivers_it_does_not_need(converted, kind):
    """For each graph k, an edge of length zero (NaN edge features) into a
    particle of B_{k+1} minus B_k: the unpruned model computes that
    receiver's (unneeded) output and its forces turn NaN; the pruned model
    (Allegro: only edges of contributing centers) never touches it."""
    module, spec = load_staged_model(converted.path(kind, "pruned"))
    unpruned, _ = load_staged_model(converted.path(kind, "unpruned"))
    case = battery(SPECIES, 4.0)[0]
    g = _graphs(case.atoms, spec.num_layers)
    sets = _needed_sets(g.edge_index, g.contributions)
    expected = _run(module, g.species, g.positions, g.edge_index, g.contributions)
    n = g.num_particles
    for k in range(spec.num_layers):
        p = min(sets[k + 1] - sets[k])
        # a twin of p at p's own position, joined to p in graph k only
        graphs = list(g.edge_index)
        graphs[k] = np.concatenate([graphs[k], _symmetric([(n, p)])], axis=1)
        inputs = (np.concatenate([g.species, g.species[p:p + 1]]), np.concatenate([g.positions, g.positions[p:p + 1]]),
                  graphs, np.concatenate([g.contributions, [contract.NOT_CONTRIBUTING]]))
        energies, grad = _run(module, *inputs)
        assert np.all(np.isfinite(energies)) and np.all(np.isfinite(grad)), (kind, k)
        assert np.all(energies[n:] == 0)
        _assert_close((energies[:n], grad[:n]), expected, f"{kind} graph {k}")
        poisoned = _run(unpruned, *inputs)
        assert not np.all(np.isfinite(poisoned[1])), f"graph {k}: the poison did not reach the unpruned model"


@pytest.mark.parametrize("kind", list(MODELS))
def test_kernels_model_in_a_driver_process_without_kim_gnn(converted, tmp_path, kind, driver_emulation):
    """torch and the op library only; equal to the original. NequIP: every
    gather and sum over edges is a kernel, so repeated calls and thread
    counts give the same bits; Allegro's environment sums stay aten, so its
    spec says so."""
    from kim_gnn.adapters import adapter_named

    path = converted.path(kind, "kernels")
    spec = read_spec(path)
    assert kernels.archive_uses_ops(path)
    cases = [c for c in battery(SPECIES, spec.cutoff) if c.reference_atoms is None and c.map_result is None]
    graphs = [build_staged_graphs(c.atoms, spec.species, spec.cutoff, spec.num_layers) for c in cases]
    one, two = driver_emulation(tmp_path, path, graphs, 1), driver_emulation(tmp_path, path, graphs, 2)
    original = adapter_named("nequip-modern").original(converted.source(kind), spec)
    for c, (case, g) in enumerate(zip(cases, graphs)):
        if kind == "nequip":
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


def test_a_layer_with_unknown_parts_runs_whole_and_says_so(modern_models):
    """A ConvNetLayer with a part ReceiverLayer does not know runs whole
    (still pruned): one warning line, the spec records it, same numbers."""
    import copy

    import torch

    from kim_gnn import convert_nequip
    from kim_gnn.errors import OptimisationNotApplied

    options = dict(species=SPECIES, num_layers=2, seed=41)
    model = copy.deepcopy(modern_models.in_memory(**options))
    model.model.func.layer1_convnet.extra = torch.nn.Identity()  # never called by the layer
    with pytest.warns(OptimisationNotApplied) as caught:
        staged = convert_nequip(model)
    details = staged.spec.details
    assert details["receiver_only_layers"] == "1" and details["whole_layers"] == "1", details
    assert "extra" in details["whole_layers_reason"], details
    lines = [str(w.message) for w in caught if issubclass(w.category, OptimisationNotApplied)]
    assert len(lines) == 1 and "run (partly) whole" in lines[0] and "\n" not in lines[0], lines
    reference = convert_nequip(modern_models.in_memory(**options))
    assert reference.spec.details["whole_layers"] == "0"
    for case in battery(SPECIES, 4.0)[:4]:
        g = _graphs(case.atoms, 2)
        inputs = (g.species, g.positions, g.edge_index, g.contributions)
        _assert_close(_run(staged, *inputs), _run(reference, *inputs), case.name)


@pytest.mark.parametrize("mode", ["pruned", "kernels"])
def test_receiver_layers_per_block_of_edges_give_the_same_numbers(converted, mode):
    """On the CPU a ReceiverLayer runs its edge MLP and tensor product per
    block of ``edge_chunk`` edges (``graph_stages.EDGE_CHUNK``): blocks of 7
    edges give the numbers of one block for the whole graph."""
    path = converted.path("nequip", mode)
    (whole, spec), (blocked, _) = load_unfrozen(path), load_unfrozen(path)
    for module, chunk in ((whole, 10**9), (blocked, 7)):
        layers = [layer for _, layer in module.staged.layers.named_children() if hasattr(layer, "edge_chunk")]
        assert len(layers) == spec.num_layers
        for layer in layers:
            layer.edge_chunk = chunk
    blocks = 0
    for case in battery(SPECIES, 4.0)[:6]:
        g = _graphs(case.atoms, spec.num_layers)
        blocks += sum(e.shape[1] > 7 for e in g.edge_index)
        inputs = (g.species, g.positions, g.edge_index, g.contributions)
        _assert_close(_run(blocked, *inputs), _run(whole, *inputs), f"{mode} {case.name}")
    assert blocks >= 6  # graphs of more than one block
