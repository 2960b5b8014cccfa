"""The staged form of a NequIP 0.5/0.6 energy model.

The scripted children of the original ``SequentialGraphNetwork`` are reused
as they are; only their order of application changes:

* node encoders (one-hot, chemical embedding) run once on all particles;
* edge encoders (spherical harmonics, radial basis) run once per staged
  graph, each graph in a fresh dict (NequIP caches edge vectors in the dict);
* message-passing layer i (0 = first) convolves over ``edge_index_{L-1-i}``;
* the readout, per-species scale/shift and pair potentials run on the dict of
  the last layer, whose graph (``edge_index_0``) holds every edge of every
  contributing atom;
* the energy is the per-atom energy times the global scale(s), kept on
  contributing particles only.
"""


from typing import Dict, List

import torch


class StagedNequIP(torch.nn.Module):
    model_dtype: torch.dtype
    energy_field: str
    num_layers: int

    def __init__(
        self,
        node_encoders: List[torch.nn.Module],
        edge_encoders: List[torch.nn.Module],
        layers: List[torch.nn.Module],
        readout: List[torch.nn.Module],
        energy_field: str,
        rescale_scales: List[float],
        rescale_shifts: List[float],
        model_dtype: torch.dtype,
    ):
        super().__init__()
        self.node_encoders = torch.nn.ModuleList(node_encoders)
        self.edge_encoders = torch.nn.ModuleList(edge_encoders)
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.ModuleList(readout)
        self.energy_field = energy_field
        self.num_layers = len(layers)
        self.model_dtype = model_dtype
        # Global RescaleOutput factors, innermost first, applied in float64 as
        # NequIP applies them in its default dtype.
        self.register_buffer("rescale_scales", torch.tensor(rescale_scales, dtype=torch.float64))
        self.register_buffer("rescale_shifts", torch.tensor(rescale_shifts, dtype=torch.float64))

    def forward(
        self,
        species: torch.Tensor,
        coordinates: torch.Tensor,
        graphs: List[torch.Tensor],
        contributions: torch.Tensor,
    ) -> torch.Tensor:
        pos = coordinates.to(self.model_dtype)
        atom_types = species.view(-1, 1)
        nodes: Dict[str, torch.Tensor] = {"pos": pos, "atom_types": atom_types}
        for encoder in self.node_encoders:
            nodes = encoder(nodes)

        data: Dict[str, torch.Tensor] = nodes
        for i, layer in enumerate(self.layers):
            # A fresh dict per graph: edge vectors, lengths and cutoffs are
            # cached in it by the encoders.
            data = nodes.copy()
            data["edge_index"] = graphs[self.num_layers - 1 - i]
            for encoder in self.edge_encoders:
                data = encoder(data)
            data = layer(data)
            nodes["node_features"] = data["node_features"]

        for module in self.readout:
            data = module(data)

        energy = data[self.energy_field].reshape(-1).to(torch.float64)
        for k in range(self.rescale_scales.shape[0]):
            energy = energy * self.rescale_scales[k] + self.rescale_shifts[k]
        return torch.where(contributions == 0, energy, torch.zeros_like(energy))
