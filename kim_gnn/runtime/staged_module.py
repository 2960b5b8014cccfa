"""``StagedModule``: the base of an adapter's staged module, which gives it
the exported ``energy_and_edge_vectors`` (``docs/per-atom-virials.md``),
written once for every architecture.

A subclass defines the loop in its own ``forward(species, coordinates,
graphs, contributions, vectors_out=None, edges_out=None)``, recording each
layer's edge vectors through ``StagedRuntime.record_edges`` when the two
lists are given (``kim_gnn/runtime/runtime.py``). The method here only
calls that ``forward`` with two empty lists: the loop stays in ``forward``
(a frozen model whose ``forward`` called a helper method of the same module
crashed the interpreter when the network raised, torch 2.13), and
TorchScript compiles this method for each subclass as if written there.
"""

from typing import List, Tuple

import torch


class StagedModule(torch.nn.Module):
    @torch.jit.export
    def energy_and_edge_vectors(
        self,
        species: torch.Tensor,
        coordinates: torch.Tensor,
        graphs: List[torch.Tensor],
        contributions: torch.Tensor,
    ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """forward's energies, and the edge vectors of every layer's graph
        with their edges in the caller's numbering (``docs/per-atom-virials.md``)."""
        vectors: List[torch.Tensor] = []
        edges: List[torch.Tensor] = []
        energy = self.forward(species, coordinates, graphs, contributions, vectors, edges)
        return energy, vectors, edges
