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
  float64 output of the contract, zero on every other particle;
* the edge vectors of the per-atom virials (``energy_and_edge_vectors``,
  ``docs/per-atom-virials.md``): ``edge_vectors`` forms them from positions
  in the plan's numbering, ``record_edges`` records the vectors a layer
  used together with their edges in the CALLER's numbering (through
  ``plan.perm``). A staged module's loop (its ``forward``) takes two
  optional lists: the contract's ``forward`` call passes none (nothing is
  recorded, no extra work); its exported ``energy_and_edge_vectors``
  (inherited from ``StagedModule``, ``staged_module.py``) passes them::

      def forward(self, species, coordinates, graphs, contributions,
                  vectors_out: Optional[List[Tensor]] = None, edges_out: Optional[List[Tensor]] = None):
          ...
              vectors = self.runtime.edge_vectors(pos, plan, k)
              if vectors_out is not None and edges_out is not None:
                  self.runtime.record_edges(vectors, plan, k, vectors_out, edges_out)
          ...

  (The loop stays in ``forward`` itself: a frozen model whose ``forward``
  called a helper method of the same module crashed the interpreter when an
  error was raised inside the network, torch 2.13.)

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
    def edge_vectors(self, pos: torch.Tensor, plan: StagePlan, k: int) -> torch.Tensor:
        """``pos[row 1] - pos[row 0]`` for every edge of ``plan.edges[k]``;
        ``pos`` holds (at least) the first ``plan.counts[k + 1]`` particles
        in the plan's numbering (``needed`` gives them)."""
        edges = plan.edges[k]
        return pos[edges[1]] - pos[edges[0]]

    @torch.jit.export
    def caller_edges(self, plan: StagePlan, k: int) -> torch.Tensor:
        """``plan.edges[k]`` [2, E'_k] in the caller's particle numbering
        (same rows, same edge order)."""
        edges = plan.edges[k]
        if not self.prune:
            return edges
        return plan.perm.index_select(0, edges.reshape(-1)).view(2, -1)

    @torch.jit.export
    def record_edges(self, vectors: torch.Tensor, plan: StagePlan, k: int, vectors_out: List[torch.Tensor],
                     edges_out: List[torch.Tensor]) -> None:
        """Append the edge vectors a layer used on graph ``k`` (``[E'_k, 3]``,
        the rows of ``plan.edges[k]``, ``x[row 1] - x[row 0]``) and their
        edges in the caller's numbering: what ``energy_and_edge_vectors``
        returns. Refuses vectors that do not belong to those edges."""
        if vectors.dim() != 2 or vectors.shape[1] != 3 or vectors.shape[0] != plan.edges[k].shape[1]:
            raise ValueError("kim-gnn model: the edge vectors of graph " + str(k) + " do not match its "
                             + str(plan.edges[k].shape[1]) + " edges")
        vectors_out.append(vectors)
        edges_out.append(self.caller_edges(plan, k))

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
