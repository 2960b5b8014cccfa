"""``StagedRuntime``: the staged execution every adapter's model runs on.

An adapter's staged module holds one ``StagedRuntime`` and is one loop over
its plan::

    plan = self.runtime.plan(graphs, contributions)
    x = self.runtime.needed(node_input, plan)          # rows of B_L
    for i, layer in enumerate(self.layers):
        k = self.runtime.graph_of_layer(i)             # L-1-i
        num_in, num_out = plan.counts[k + 1], plan.counts[k]
        x = layer(x[:num_in], plan.edges[k], plan.routes[k], num_out)   # this architecture's layer
    return self.runtime.particle_energies(energy_of_first_n0, plan, contributions)

What the runtime owns (written once, for every architecture):

* the stage plan (``kim_gnn/runtime/plan.py``): pruned (the default) or the
  identity plan of the unpruned model, the same code path for both;
* the aggregation strategy (``kim_gnn/runtime/aggregation.py``: aten, or the
  kim_gnn kernels), which says itself whether it needs receiver-sorted
  edges, and its per-graph routes computed once per call;
* the scatter of the contributing particles' energies to the ``[N]``
  float64 output of the contract, zero on every other particle.

``receiver_row`` is the row of an edge index that holds the receiver
(NequIP, Allegro: 0, the center; MACE: 1).
"""

from typing import List

import torch

from .. import contract
from .aggregation import make_aggregation
from .plan import StagePlan, pruned_order


class StagedRuntime(torch.nn.Module):
    num_layers: int
    receiver_row: int
    prune: bool
    sort_by_receiver: bool
    kernels: str

    def __init__(self, num_layers: int, receiver_row: int, prune: bool = True, kernels: str = "aten"):
        super().__init__()
        if receiver_row not in (0, 1):
            raise ValueError("receiver_row must be 0 or 1")
        if num_layers < 1:
            raise ValueError("a staged model has at least one graph")
        self.num_layers = int(num_layers)
        self.receiver_row = receiver_row
        self.prune = bool(prune)
        self.kernels = str(kernels)
        self.aggregation = make_aggregation(kernels)
        self.sort_by_receiver = bool(self.aggregation.needs_sorted_edges)

    @torch.jit.export
    def graph_of_layer(self, layer: int) -> int:
        """Layer i (0 = first) convolves over ``edge_index_{L-1-i}``."""
        return self.num_layers - 1 - layer

    @torch.jit.export
    def plan(self, graphs: List[torch.Tensor], contributions: torch.Tensor) -> StagePlan:
        num_particles = contributions.shape[0]
        if self.prune:
            perm, counts, edges = pruned_order(graphs, contributions, self.receiver_row)
        else:
            perm = torch.arange(num_particles, dtype=torch.int64, device=contributions.device)
            counts = [num_particles] * (self.num_layers + 1)
            edges = [graphs[k] for k in range(self.num_layers)]
        routes: List[List[torch.Tensor]] = []
        for k in range(self.num_layers):
            kept = edges[k]
            if self.sort_by_receiver:
                kept = kept[:, torch.argsort(kept[self.receiver_row], stable=True)]
                edges[k] = kept
            routes.append(self.aggregation.plan(kept[1 - self.receiver_row], kept[self.receiver_row],
                                                counts[k + 1], counts[k]))
        return StagePlan(perm, counts, edges, routes)

    @torch.jit.export
    def needed(self, values: torch.Tensor, plan: StagePlan) -> torch.Tensor:
        """The rows of ``B_L`` (the particles any layer reads), in the plan's
        order; ``values`` as given for the identity plan."""
        if not self.prune:
            return values
        return values.index_select(0, plan.perm[: plan.counts[self.num_layers]])

    @torch.jit.export
    def particle_energies(self, values: torch.Tensor, plan: StagePlan, contributions: torch.Tensor) -> torch.Tensor:
        """The contract's per-particle energies ``[N]`` float64 from the
        energies of the first ``plan.counts[0]`` particles of the plan (the
        contributing ones when pruned, every particle otherwise): zero on
        every non-contributing particle. Differentiable in ``values``."""
        values = values.reshape(-1)[: plan.counts[0]].to(contract.OUTPUT_DTYPE)
        out = torch.zeros((contributions.shape[0],), dtype=contract.OUTPUT_DTYPE, device=values.device)
        out = out.index_copy(0, plan.perm[: plan.counts[0]], values)
        # (a no-op for the pruned plan, whose first n_0 are the contributing particles)
        return torch.where(contributions == contract.CONTRIBUTING, out, torch.zeros_like(out))
