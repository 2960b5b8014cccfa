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

The schedule is the core runtime's (``kim_gnn/runtime``): pruned (the
default), the encoders run on ``B_L``, layer i on the first ``n_{k+1}``
particles of the plan with the edges into the first ``n_k``
(``ReceiverLayer`` runs the node-wise work after the convolution on those
``n_k`` only), the readout on the contributing particles; unpruned, the same
loop runs on the identity plan.
"""


from typing import Dict, List, Optional

import torch

from ...runtime import StagePlan, StagedRuntime
from ..graph_stages import ReceiverConvLayer, StagedGraphNetwork, edge_blocks


class ReceiverLayer(ReceiverConvLayer):
    """A ``ConvNetLayer(InteractionBlock)`` whose node-wise work after the
    convolution runs only on the first ``num_out`` particles (the receivers
    it is asked for): the parts of the scripted layer are called in NequIP's
    order (``nequip/nn/_interaction_block.py``, ``_convnetlayer.py``):

        sc = self_connection(x, node_attrs)    # receivers only
        m = scatter_sum(tp(linear_1(x)[sender], edge_attrs, fc(edge_embedding)) / sqrt(avg_num_neighbors), receiver)
        y = gate(linear_2(m) + sc) (+ x if resnet)

    (fc and tp per block of edges on the CPU: ``ReceiverConvLayer.block_sizes``.)
    Only ``linear_1`` (and the edge work) needs the senders. The gather and
    the scatter sum are ``aggregation``'s (``kim_gnn/runtime/aggregation.py``:
    aten, or the kim_gnn kernels on receiver-sorted edges), along the
    ``route`` the runtime planned for this layer's edges.
    """

    has_avg: bool
    avg_num_neighbors: float

    def __init__(self, layer: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__(layer, aggregation)
        conv = layer.conv
        self.fc = conv.fc
        self.linear_1 = conv.linear_1
        self.tp = conv.tp
        self.linear_2 = conv.linear_2
        avg = getattr(conv, "avg_num_neighbors", None)
        self.has_avg = avg is not None
        self.avg_num_neighbors = float(avg) if avg is not None else 1.0

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        x = data["node_features"]
        edge_src = data["edge_index"][1]
        edge_dst = data["edge_index"][0]
        x_out = x[:num_out]
        sc = self.self_connection(x_out, data["node_attrs"][:num_out])
        h = self.linear_1(x)
        # per block of edges (edge_blocks: on the CPU, to keep e3nn's temporaries small)
        sizes = self.block_sizes(edge_dst, route)
        gathered = edge_blocks(self.aggregation.gather(h, edge_src, route), sizes)
        attrs = edge_blocks(data["edge_attrs"], sizes)
        embedding = edge_blocks(data["edge_embedding"], sizes)
        blocks: List[torch.Tensor] = []
        for i in range(len(gathered)):
            edge_features = self.tp(gathered[i], attrs[i], self.fc(embedding[i]))
            if self.has_avg:
                edge_features = edge_features.div(self.avg_num_neighbors**0.5)
            blocks.append(edge_features)
        # torch_runstats' scatter sum, into num_out rows
        aggregated = self.aggregation.scatter_blocks(blocks, edge_dst, num_out, route)
        return self.gate(self.linear_2(aggregated), sc, x_out)


class StagedNequIP(StagedGraphNetwork):
    """NequIP 0.5/0.6 on the family's staged loop (``graph_stages.py``):
    positions in the model's dtype, species as nequip's type indices, the
    global ``RescaleOutput`` factors applied to the per-atom energy."""

    model_dtype: torch.dtype

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
        runtime: StagedRuntime,
        readout_is_pair: List[bool] = (),
    ):
        # Each layer a WholeLayer, ReceiverLayer or ScalarOnlyLastLayer:
        # forward(data, num_out, route) -> features of the first num_out nodes.
        # Only pair potentials run on the last graph's dict.
        readout_is_pair = [bool(p) for p in readout_is_pair] or [False] * len(readout)
        super().__init__(node_encoders, edge_encoders, layers, readout, runtime,
                         readout_is_edgewise=readout_is_pair, readout_is_pair=readout_is_pair,
                         energy_field=energy_field)
        self.model_dtype = model_dtype
        # Global RescaleOutput factors, innermost first, applied in float64 as
        # NequIP applies them in its default dtype.
        self.register_buffer("rescale_scales", torch.tensor(rescale_scales, dtype=torch.float64))
        self.register_buffer("rescale_shifts", torch.tensor(rescale_shifts, dtype=torch.float64))

    def node_inputs(self, species: torch.Tensor, coordinates: torch.Tensor, plan: StagePlan) -> Dict[str, torch.Tensor]:
        pos = self.runtime.needed(coordinates, plan).to(self.model_dtype)
        return {"pos": pos, "atom_types": self.runtime.needed(species, plan).view(-1, 1)}

    def finish_energy(self, energy: torch.Tensor) -> torch.Tensor:
        energy = energy.to(torch.float64)
        for k in range(self.rescale_scales.shape[0]):
            energy = energy * self.rescale_scales[k] + self.rescale_shifts[k]
        return energy
