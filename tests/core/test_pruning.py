"""Pruned staged execution (the core runtime, ``kim_gnn/runtime``).

* The needed sets computed inside a model (the scripted core) equal a literal
  transcription of their definition on the driver's graphs.
* A pruned model touches no particle outside the needed sets after
  embedding: poisoning the others (NaN coordinates, invalid species, edges of
  zero length into unneeded receivers) leaves the result unchanged and finite.
"""

from typing import List

import numpy as np
import pytest
import torch

from kim_gnn import contract
from kim_gnn.executor import load_staged_model
from kim_gnn.graphs import build_staged_graphs
from kim_gnn.runtime import AtenAggregation, StagedRuntime, needed_levels
from kim_gnn.verification.structures import battery

SPECIES = ("Si", "C")
CUTOFF = 3.5


def needed_sets_by_definition(graphs, contributions):
    """B_0 = contributing; B_{k+1} = B_k plus every particle joined to B_k by
    an edge of edge_index_k. Plain Python sets."""
    sets = [{p for p, c in enumerate(contributions) if c == contract.CONTRIBUTING}]
    for edges in graphs:
        current = sets[-1]
        grown = set(current)
        for a, b in zip(edges[0].tolist(), edges[1].tolist()):
            if a in current:
                grown.add(b)
            if b in current:
                grown.add(a)
        sets.append(grown)
    return sets


def _structures(num_layers):
    for case in battery(SPECIES, CUTOFF):
        yield case.name, build_staged_graphs(case.atoms, SPECIES, CUTOFF, num_layers)


def _torch_graphs(g):
    return [torch.as_tensor(e, dtype=torch.int64) for e in g.edge_index], torch.as_tensor(g.contributions)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("receiver_row", [0, 1])
def test_needed_sets_inside_the_model_equal_the_definition(num_layers, receiver_row):
    runtime = torch.jit.script(StagedRuntime(num_layers, receiver_row))
    levels_fn = torch.jit.script(needed_levels)
    for name, g in _structures(num_layers):
        graphs, contributions = _torch_graphs(g)
        expected = needed_sets_by_definition(g.edge_index, g.contributions)
        levels = levels_fn(graphs, contributions).tolist()
        for k, needed in enumerate(expected):
            assert {p for p, d in enumerate(levels) if d <= k} == needed, (name, k)
        assert all(d == num_layers + 1 for p, d in enumerate(levels) if p not in expected[-1]), name

        perm, counts, edges, routes = runtime.plan(graphs, contributions)
        assert routes == [[]] * num_layers  # aten needs no route
        assert counts == [len(b) for b in expected], name
        for k, needed in enumerate(expected):
            assert set(perm[: counts[k]].tolist()) == needed, (name, k)  # every B_k is a prefix of perm
        sender_row = 1 - receiver_row
        for k in range(num_layers):
            # the edges of graph k into B_k, relabelled, in their original order
            original = g.edge_index[k]
            into = [e for e in range(original.shape[1]) if original[receiver_row, e] in expected[k]]
            got = perm[edges[k]].numpy()
            np.testing.assert_array_equal(got, original[:, into], err_msg=f"{name} graph {k}")
            if got.shape[1]:
                assert int(edges[k][receiver_row].max()) < counts[k]
                assert int(edges[k][sender_row].max()) < counts[k + 1]


@pytest.mark.parametrize("receiver_row", [0, 1])
def test_sorted_by_receiver_is_a_stable_sort_of_the_same_edges(receiver_row):
    """With the kim_gnn kernels (which need the kernels' CSR order) the
    runtime keeps the same pruned edges, sorted by receiver, keeping their
    order within a receiver. (The plan needs no op library: only the routes'
    gathers and sums do.)"""
    plain = torch.jit.script(StagedRuntime(3, receiver_row))
    kernels = StagedRuntime(3, receiver_row, kernels="kim_gnn")
    assert kernels.sort_by_receiver and not plain.sort_by_receiver
    for name, g in _structures(3):
        graphs, contributions = _torch_graphs(g)
        expected = plain.plan(graphs, contributions).edges
        plan = kernels.plan(graphs, contributions)
        edges = plan.edges
        for k in range(3):
            order = torch.argsort(expected[k][receiver_row], stable=True)
            assert torch.equal(edges[k], expected[k][:, order]), (name, k)
            # the route: the receivers' CSR row pointer over the first n_k particles
            pointer = plan.routes[k][0]
            assert pointer.shape[0] == plan.counts[k] + 1 and int(pointer[-1]) == edges[k].shape[1], (name, k)


@pytest.mark.parametrize("receiver_row", [0, 1])
def test_the_unpruned_model_runs_the_identity_plan(receiver_row):
    """Unpruned: every particle, every edge, in the driver's order; the same
    loop over layers then runs every layer on every particle of its graph."""
    runtime = torch.jit.script(StagedRuntime(2, receiver_row, prune=False))
    for name, g in _structures(2):
        graphs, contributions = _torch_graphs(g)
        perm, counts, edges, _ = runtime.plan(graphs, contributions)
        n = g.num_particles
        assert perm.tolist() == list(range(n)) and counts == [n, n, n], name
        assert all(torch.equal(e, graph) for e, graph in zip(edges, graphs)), name


def test_particles_outside_every_needed_set_exist_in_the_battery():
    # Otherwise the poisoning tests below would poison nothing.
    outside = 0
    for name, g in _structures(2):
        sets = needed_sets_by_definition(g.edge_index, g.contributions)
        outside += g.num_particles - len(sets[-1])
    assert outside > 0


class _ScatterBlocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.aggregation = AtenAggregation()

    def forward(self, blocks: List[torch.Tensor], receivers: torch.Tensor, num_out: int) -> torch.Tensor:
        return self.aggregation.scatter_blocks(blocks, receivers, num_out, torch.jit.annotate(List[torch.Tensor], []))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_aten_scatter_blocks_equals_the_scatter_of_the_concatenation(dtype):
    """``scatter_blocks`` (values computed per block of consecutive edges)
    sums block by block into one output, in the order of the edges: the sums
    and the gradients of ``scatter(torch.cat(blocks))``, scripted."""
    aggregation = torch.jit.script(_ScatterBlocks())
    generator = torch.Generator().manual_seed(0)
    receivers = torch.randint(0, 5, (23,), generator=generator)
    values = torch.randn(23, 4, 3, generator=generator, dtype=dtype)
    sums = []
    grads = []
    for sizes in ([23], [7, 7, 7, 2], [1] * 23):
        leaf = values.clone().requires_grad_(True)
        blocks = list(torch.split(leaf, sizes))
        out = aggregation(blocks, receivers, 6)
        (out * torch.arange(out.numel(), dtype=dtype).view(out.shape)).sum().backward()
        sums.append(out.detach())
        grads.append(leaf.grad)
    expected = aggregation([values.view(23, 12)], receivers, 6).view(6, 4, 3)
    assert expected[5].abs().max() == 0 and expected.shape == (6, 4, 3)
    for out, grad in zip(sums, grads):
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
        torch.testing.assert_close(grad, grads[0], rtol=0, atol=0)


@pytest.mark.parametrize("prune", [True, False])
def test_particle_energies_are_float64_zero_elsewhere_and_differentiable(prune):
    """The energies of the plan's first n_0 particles go to their particles;
    every non-contributing particle gets 0 (also on the identity plan, where
    the model computed an energy for every particle)."""
    contributions = torch.tensor([1, 0, 1, 0])
    graphs = [torch.tensor([[0, 1, 3, 2], [1, 0, 2, 3]])]
    runtime = torch.jit.script(StagedRuntime(1, 0, prune=prune))
    plan = runtime.plan(graphs, contributions)
    num = plan.counts[0]
    values = torch.arange(1.0, num + 1.0, dtype=torch.float32).requires_grad_(True)
    out = runtime.particle_energies(values, plan, contributions)
    assert out.dtype == torch.float64
    expected = [0.0] * 4
    for position, particle in enumerate(plan.perm[:num].tolist()):
        if particle in (1, 3):
            expected[particle] = float(position + 1)
    assert out.tolist() == expected
    out.sum().backward()
    assert values.grad.tolist() == [1.0 if p in (1, 3) else 0.0 for p in plan.perm[:num].tolist()]


# --- poisoning ---------------------------------------------------------------

def _converted(kind, nequip_models, mace_models, num_layers, dtype, prune=True, staged_only=False):
    """The converted model as the driver loads it (frozen), with its spec; or,
    with ``staged_only``, the staged module inside the driver entry point (which
    would refuse out-of-range species before the staged module sees them)."""
    if kind == "nequip":
        from kim_gnn.nequip import convert_nequip

        source = nequip_models.deployed(num_layers=num_layers, species=SPECIES, model_dtype=dtype, zbl=True,
                                        r_max=CUTOFF, l_max=2, seed=num_layers)
        out = source[:-4] + f".prune-{prune}.pt"
        convert_nequip(source, prune=prune).save(out)
    else:
        from kim_gnn.mace import convert_mace

        source = mace_models.model(num_interactions=num_layers, species=SPECIES, model_dtype=dtype, zbl=True,
                                   r_max=CUTOFF, correlation=2, seed=num_layers)
        out = source[: -len(".model")] + f".prune-{prune}.pt"
        convert_mace(source, prune=prune).save(out)
    if staged_only:
        from kim_gnn.executor import load_unfrozen

        return load_unfrozen(out)[0].staged
    return load_staged_model(out)


def _run(module, species, positions, graphs, contributions, staged=False):
    coordinates = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    edges = [torch.as_tensor(e, dtype=torch.int64) for e in graphs]
    inputs = (torch.as_tensor(species, dtype=torch.int64), coordinates)
    contributions = torch.as_tensor(contributions, dtype=torch.int64)
    # The staged module takes the graphs as one list, the entry point one by one.
    energies = module(*inputs, edges, contributions) if staged else module(*inputs, *edges, contributions)
    energies.sum().backward()
    grad = coordinates.grad if coordinates.grad is not None else torch.zeros_like(coordinates)
    return energies.detach().numpy(), grad.numpy()


def _symmetric(pairs):
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
    return np.concatenate([pairs, pairs[::-1]], axis=1)


def _tolerance(dtype):
    # float32: rounding of a different accumulation order (threads, shapes)
    return 1e-12 if dtype == "float64" else 1e-5


def _assert_same_on_real_particles(n, got, expected, dtype):
    energies, grad = got
    ref_energies, ref_grad = expected
    assert np.all(np.isfinite(energies)) and np.all(np.isfinite(grad[:n]))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(energies[:n], ref_energies, rtol=0, atol=tol)
    assert np.all(energies[n:] == 0)
    np.testing.assert_allclose(grad[:n], ref_grad, rtol=0, atol=tol)


KINDS = [("nequip", 2, "float64"), ("nequip", 3, "float32"), ("mace", 2, "float64"), ("mace", 3, "float32")]


@pytest.mark.parametrize("kind,num_layers,dtype", KINDS)
def test_particles_in_no_needed_set_are_never_read(nequip_models, mace_models, kind, num_layers, dtype):
    module, spec = _converted(kind, nequip_models, mace_models, num_layers, dtype)
    staged = _converted(kind, nequip_models, mace_models, num_layers, dtype, staged_only=True)
    invalid_species = 10**6
    for case in battery(SPECIES, CUTOFF)[:5]:
        g = build_staged_graphs(case.atoms, SPECIES, CUTOFF, num_layers)
        expected = _run(module, g.species, g.positions, g.edge_index, g.contributions)
        outside = sorted(set(range(g.num_particles)) - needed_sets_by_definition(g.edge_index, g.contributions)[-1])
        # Garbage on the particles outside B_L, and a cluster of garbage
        # particles joined to each other (and to those) in every graph.
        positions = g.positions.copy()
        positions[outside] = np.nan
        species = g.species.copy()
        species[outside] = invalid_species
        n = g.num_particles
        extra = [n, n + 1, n + 2]
        pairs = [(n, n + 1), (n + 1, n + 2)] + [(n, p) for p in outside[:5]]
        graphs = [np.concatenate([e, _symmetric(pairs)], axis=1) for e in g.edge_index]
        all_positions = np.concatenate([positions, np.full((len(extra), 3), np.nan)])
        all_species = np.concatenate([species, np.full(len(extra), invalid_species)])
        all_contributions = np.concatenate([g.contributions, np.full(len(extra), contract.NOT_CONTRIBUTING)])
        got = _run(staged, all_species, all_positions, graphs, all_contributions, staged=True)
        energies, grad = got
        assert np.all(np.isfinite(energies)), case.name
        assert np.all(grad[outside] == 0) and np.all(grad[n:] == 0), case.name
        inside = [p for p in range(n) if p not in set(outside)]
        tol = _tolerance(dtype)
        np.testing.assert_allclose(energies[:n], expected[0], rtol=0, atol=tol, err_msg=case.name)
        np.testing.assert_allclose(grad[inside], expected[1][inside], rtol=0, atol=tol, err_msg=case.name)


@pytest.mark.parametrize("kind,num_layers,dtype", KINDS)
def test_each_layer_ignores_edges_into_receivers_it_does_not_need(nequip_models, mace_models, kind, num_layers, dtype):
    """For each graph k, an edge of length zero (NaN edge features) into a
    particle of B_{k+1} minus B_k: the unpruned model computes that
    receiver's (unneeded) output and its forces turn NaN; the pruned model
    never aggregates into it."""
    module, spec = _converted(kind, nequip_models, mace_models, num_layers, dtype)
    unpruned, _ = _converted(kind, nequip_models, mace_models, num_layers, dtype, prune=False)
    case = battery(SPECIES, CUTOFF)[0]
    g = build_staged_graphs(case.atoms, SPECIES, CUTOFF, num_layers)
    sets = needed_sets_by_definition(g.edge_index, g.contributions)
    expected = _run(module, g.species, g.positions, g.edge_index, g.contributions)
    for k in range(num_layers):
        p = min(sets[k + 1] - sets[k])
        n = g.num_particles
        # a twin of p at p's own position, joined to p in graph k only
        graphs = list(g.edge_index)
        graphs[k] = np.concatenate([graphs[k], _symmetric([(n, p)])], axis=1)
        extra = (n, np.concatenate([g.positions, g.positions[p:p + 1]]),
                 np.concatenate([g.species, g.species[p:p + 1]]),
                 np.concatenate([g.contributions, [contract.NOT_CONTRIBUTING]]))
        inputs = (extra[2], extra[1], graphs, extra[3])
        _assert_same_on_real_particles(n, _run(module, *inputs), expected, dtype)
        poisoned = _run(unpruned, *inputs)
        assert not np.all(np.isfinite(poisoned[1])), f"graph {k}: the poison did not reach the unpruned model"


def test_cli_no_prune_is_recorded_and_shown_by_info(nequip_models, mace_models, tmp_path, capsys):
    import json

    from kim_gnn.cli import main

    sources = {"nequip": nequip_models.deployed(num_layers=1, species=SPECIES),
               "mace": mace_models.model(num_interactions=1, species=SPECIES)}
    for kind, source in sources.items():
        for flags, expected in (([], "true"), (["--no-prune"], "false")):
            out = tmp_path / f"{kind.capitalize()}{expected.capitalize()}__MO_000000000000_000"
            assert main(["convert", str(source), "-o", str(out), "-q", *flags]) == 0
            capsys.readouterr()
            assert main(["info", str(out), "--json"]) == 0
            info = json.loads(capsys.readouterr().out)
            assert info["detail.pruned"] == expected, (kind, flags)
            if kind == "nequip":  # and the scalar-only last layer with it
                assert info["detail.scalar_only_last_layer"] == expected, info


def _node_kinds(block, kinds):
    for node in block.nodes():
        kinds.add(node.kind())
        for inner in node.blocks():
            _node_kinds(inner, kinds)
    return kinds


@pytest.mark.parametrize("kind", ["nequip", "mace"])
def test_frozen_pruned_model_is_aten_operations_only(nequip_models, mace_models, kind):
    """What the stock driver can run: after freezing, every node of the graph
    is an aten or prim operation (no custom ops, no method calls left)."""
    module, spec = _converted(kind, nequip_models, mace_models, 2, "float64")
    if kind == "nequip":  # the scalar-only last layer included
        assert spec.details["scalar_only_last_layer"] == "true", spec.details
    kinds = _node_kinds(module.graph, set())
    assert kinds and all(k.startswith(("aten::", "prim::")) for k in kinds), sorted(kinds)
    assert "prim::CallMethod" not in kinds
