"""Pruned staged execution: only the work that can reach a contributing atom.

The needed sets (``torchml-contract.md``): ``B_0`` = contributing particles,
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

Architecture-independent, TorchScript-compilable, aten operations only;
everything stays on the device of the inputs. The adapters
(``kim_gnn/nequip/staged.py``, ``kim_gnn/mace/staged.py``) call it.
"""

from typing import List, Tuple

import torch

from . import contract


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


class PrunedStages(torch.nn.Module):
    """The pruned schedule of one structure, computed from the driver's inputs.

    ``forward(graphs, contributions)`` returns ``(perm, counts, edges)``:

    * ``perm`` [N] int64: particles sorted by level (stable), so that
      ``perm[:counts[k]]`` is ``B_k``;
    * ``counts``: ``[n_0, n_1, .., n_L]`` as Python ints;
    * ``edges[k]`` [2, E'_k]: the edges of ``edge_index_k`` whose receiver is
      in ``B_k``, relabelled to positions in ``perm`` (original edge order
      kept). Their receivers are ``< n_k`` and their senders ``< n_{k+1}``.

    ``receiver_row`` is the row of an edge index that holds the receiver
    (NequIP: 0, the center; MACE: 1). With ``sort_by_receiver`` the edges of
    each graph are sorted by receiver instead (stably: the original order
    among a receiver's edges), the CSR order the kim_gnn kernels sum in
    (``kim_gnn/aggregation.py``).
    """

    receiver_row: int
    sort_by_receiver: bool

    def __init__(self, receiver_row: int, sort_by_receiver: bool = False):
        super().__init__()
        if receiver_row not in (0, 1):
            raise ValueError("receiver_row must be 0 or 1")
        self.receiver_row = receiver_row
        self.sort_by_receiver = bool(sort_by_receiver)

    def forward(
        self, graphs: List[torch.Tensor], contributions: torch.Tensor
    ) -> Tuple[torch.Tensor, List[int], List[torch.Tensor]]:
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
            keep = relabelled[self.receiver_row] < counts[k]
            kept = relabelled[:, keep]
            if self.sort_by_receiver:
                kept = kept[:, torch.argsort(kept[self.receiver_row], stable=True)]
            edges.append(kept)
        return perm, counts, edges


def scatter_to_particles(values: torch.Tensor, perm: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Per-particle energies ``[N]`` float64 from the energies of the first
    ``len(values)`` particles of ``perm`` (the contributing ones); zero
    elsewhere. Differentiable in ``values``."""
    values = values.reshape(-1).to(contract.OUTPUT_DTYPE)
    out = torch.zeros((num_particles,), dtype=contract.OUTPUT_DTYPE, device=values.device)
    return out.index_copy(0, perm[: values.shape[0]], values)


def energies_of_contributing(values: torch.Tensor, contributions: torch.Tensor) -> torch.Tensor:
    """Per-particle energies ``[N]`` float64 of an unpruned model that
    computed ``values`` on every particle: non-contributing entries zeroed
    (the contract's output, and the only energies the driver may sum)."""
    values = values.reshape(-1).to(contract.OUTPUT_DTYPE)
    return torch.where(contributions == contract.CONTRIBUTING, values, torch.zeros_like(values))
