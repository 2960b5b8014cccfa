"""The stage plan: which particles and edges each layer of a staged model uses.

The needed sets (``docs/contract.md``): ``B_0`` = contributing particles,
``B_{k+1}`` = ``B_k`` plus every particle joined to ``B_k`` by an edge of
``edge_index_k``. Layer i (0 = first) convolves over graph k = L-1-i and
needs its output only on ``B_k``; the senders of those receivers lie in
``B_{k+1}``.

Every particle gets a level ``d(p) = min{k : p in B_k}`` (L+1 when in none)
and ``perm`` sorts the particles by level, stably. Each ``B_k`` is then the
prefix ``perm[:n_k]``: in the relabelled numbering (``new = inv[old]``) layer
i works on nodes ``0 .. n_{k+1}-1``, aggregates only the edges of graph k whose
receiver is below ``n_k``, and keeps its first ``n_k`` output rows, which are
exactly the input nodes of the next layer. Particles of level L+1 are never
read at all.

The unpruned model uses the identity plan (``perm`` = 0 .. N-1, every
``n_k`` = N, every edge kept): the same loop over layers runs every layer on
every particle of its graph.

Architecture-independent, TorchScript-compilable, aten operations only;
everything stays on the device of the inputs.
"""

from typing import List, NamedTuple

import torch

from .. import contract


class StagePlan(NamedTuple):
    """The schedule of one call (see the module docstring).

    * ``perm`` [N] int64: particles in the relabelled order; ``perm[:counts[k]]``
      is ``B_k`` (the identity for the unpruned plan);
    * ``counts``: ``[n_0, n_1, .., n_L]``;
    * ``edges[k]`` [2, E'_k]: the edges of ``edge_index_k`` kept for layer
      L-1-k, relabelled to positions in ``perm``: receivers ``< n_k``,
      senders ``< n_{k+1}``; sorted by receiver (stably) when the
      aggregation needs it;
    * ``routes[k]``: the aggregation's precomputed plan for ``edges[k]``
      (``kim_gnn/runtime/aggregation.py``; empty for aten).
    """

    perm: torch.Tensor
    counts: List[int]
    edges: List[torch.Tensor]
    routes: List[List[torch.Tensor]]


def needed_levels(graphs: List[torch.Tensor], contributions: torch.Tensor) -> torch.Tensor:
    """``[N]`` int64: for each particle the smallest k with the particle in
    ``B_k`` (k = 0 .. L), L+1 for particles in no needed set. ``graphs[k]`` is
    ``edge_index_k``; edges are used in both directions, so the result does
    not depend on which row is the receiver."""
    num_layers = len(graphs)
    inside = contributions == contract.CONTRIBUTING
    # Nested sets: the level is the number of sets B_0 .. B_L that miss the particle.
    level = (~inside).to(torch.int64)
    for k in range(num_layers):
        edges = graphs[k]
        grown = inside.index_fill(0, edges[1][inside[edges[0]]], True)
        grown = grown.index_fill(0, edges[0][inside[edges[1]]], True)
        inside = grown
        level = level + (~inside).to(torch.int64)
    return level


def pruned_order(graphs: List[torch.Tensor], contributions: torch.Tensor, receiver_row: int):
    """(perm, counts, inverse, kept edges per graph in the relabelled
    numbering, original edge order): the pruned schedule before any sort."""
    num_layers = len(graphs)
    level = needed_levels(graphs, contributions)
    perm = torch.argsort(level, stable=True)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.shape[0], dtype=perm.dtype, device=perm.device)
    counts: List[int] = []
    for k in range(num_layers + 1):
        counts.append(int((level <= k).sum()))
    edges: List[torch.Tensor] = []
    for k in range(num_layers):
        relabelled = inverse[graphs[k]]
        edges.append(relabelled[:, relabelled[receiver_row] < counts[k]])
    return perm, counts, edges
