"""The staged form of a nequip >= 0.7 energy model (NequIP GNN or Allegro).

The original ``SequentialGraphNetwork``'s children are reused as they are
(eager modules compiled by e3nn, or the scripted children of a compiled
file); only their order of application and their graphs change:

* node modules (type embedding) run once on all particles;
* NequIP: message-passing layer i (0 = first) runs on ``edge_index_{L-1-i}``,
  after the edge modules (spherical harmonics, edge-length normalisation
  with per-edge-type cutoffs, Bessel encoding) have run on that graph in a
  fresh dict (nequip caches edge vectors, lengths, types and cutoffs in the
  dict); the readout, per-type scale/shift and pair potentials then run on
  the dict of the last layer, whose graph (``edge_index_0``) holds every edge
  of every contributing atom;
* Allegro (strictly local, L = 1): every module runs on ``edge_index_0``;
* the energy is the per-atom energy in float64, kept on contributing
  particles only (the original's ``total_energy_sum`` is not used).

Positions stay float64 as nequip's own data pipeline gives them (nequip
computes edge vectors in float64 and casts inside its modules).
"""

from typing import Dict, List

import torch

from ..runtime import StagedRuntime


class StagedNequIPModern(torch.nn.Module):
    num_layers: int
    num_convolutions: int
    energy_field: str

    def __init__(
        self,
        node_modules: List[torch.nn.Module],
        edge_modules: List[torch.nn.Module],
        layers: List[torch.nn.Module],
        readout: List[torch.nn.Module],
        type_of_species: List[int],
        energy_field: str = "atomic_energy",
    ):
        super().__init__()
        self.node_modules = torch.nn.ModuleList(node_modules)
        self.edge_modules = torch.nn.ModuleList(edge_modules)
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.ModuleList(readout)
        self.num_convolutions = len(layers)
        self.num_layers = max(1, len(layers))
        # unpruned for now: the identity plan
        self.runtime = StagedRuntime(self.num_layers, receiver_row=0, prune=False)
        self.energy_field = energy_field
        # KIM species index -> the model's atom type index
        self.register_buffer("type_of_species", torch.tensor(type_of_species, dtype=torch.int64))

    def forward(
        self,
        species: torch.Tensor,
        coordinates: torch.Tensor,
        graphs: List[torch.Tensor],
        contributions: torch.Tensor,
    ) -> torch.Tensor:
        atom_types = torch.index_select(self.type_of_species, 0, species.view(-1))
        nodes: Dict[str, torch.Tensor] = {"pos": coordinates, "atom_types": atom_types}
        for node_module in self.node_modules:
            nodes = node_module(nodes)

        data: Dict[str, torch.Tensor] = nodes.copy()
        if self.num_convolutions == 0:
            data["edge_index"] = graphs[0]
            for local_module in self.edge_modules:
                data = local_module(data)
        else:
            for i, layer in enumerate(self.layers):
                # a fresh dict per graph: edge vectors, lengths, types and
                # cutoffs are cached in it by the edge modules
                data = nodes.copy()
                data["edge_index"] = graphs[self.num_layers - 1 - i]
                for edge_module in self.edge_modules:
                    data = edge_module(data)
                data = layer(data)
                nodes["node_features"] = data["node_features"]

        for readout_module in self.readout:
            data = readout_module(data)

        energy = data[self.energy_field].reshape(-1).to(torch.float64)
        plan = self.runtime.plan(graphs, contributions)
        return self.runtime.particle_energies(energy, plan, contributions)
