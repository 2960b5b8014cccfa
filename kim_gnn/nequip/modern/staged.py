"""The staged form of a nequip >= 0.7 energy model (NequIP GNN or Allegro).

The original ``SequentialGraphNetwork``'s children are reused as they are
(eager modules compiled by e3nn, or the scripted children of a compiled
file); only their order of application, the particles they see and their
graphs change. The schedule is the core runtime's (``kim_gnn/runtime``):
pruned (the default) or the identity plan of the unpruned model, one loop:

* node modules (type embedding) run once, on the particles of ``B_L``;
* NequIP: message-passing layer i (0 = first) convolves over graph
  k = L-1-i: the edge modules (spherical harmonics, edge-length
  normalisation with per-edge-type cutoffs, Bessel encoding) run on that
  graph's kept edges in a fresh dict of the first ``n_{k+1}`` particles
  (nequip caches edge vectors, lengths, types and cutoffs in the dict), the
  layer keeps ``n_k`` rows (``ReceiverLayer`` runs the node-wise work after
  the convolution on those ``n_k`` only);
* Allegro (strictly local, L = 1): every module up to the ``EdgewiseReduce``
  runs on the edges whose center is contributing (its environment sums run
  over the edges of one center, so that is exact), the reduce sums the edge
  energies into the contributing centers;
* the readout: node-wise modules (``ScalarMLP``, ``PerTypeScaleShift``) on the
  first ``n_0`` particles (the contributing ones when pruned); edge-wise ones
  (``AddRadialCutoffToData``, pair potentials such as ZBL) on the last
  layer's graph, whose kept edges are every edge into a contributing atom,
  their energies added as nequip adds them (pair term + energy so far);
* the energy is the per-atom energy in float64, kept on contributing
  particles only (the original's ``total_energy_sum`` is not used).

Positions stay float64 as nequip's own data pipeline gives them (nequip
computes edge vectors in float64 and casts inside its modules).
"""

from typing import Dict, List, Optional

import torch

from ...runtime import AtenAggregation, StagePlan, StagedRuntime
from ..graph_stages import ATOMIC_ENERGY, ReceiverConvLayer, StagedGraphNetwork, edge_blocks


class ReceiverLayer(ReceiverConvLayer):
    """A nequip >= 0.7 ``ConvNetLayer(InteractionBlock)`` whose node-wise work
    after the convolution runs only on the first ``num_out`` particles (the
    receivers it is asked for). The parts of the layer are called in
    nequip's order (``nequip/nn/convnetlayer.py``,
    ``interaction_block.py``, ``_tp_scatter_base.py``):

        sc = sc(x, node_attrs)                          # receivers only
        h = avg_num_neighbors_norm(linear_1(x))         # every sender (per-type norm)
        m = scatter_sum(tp(h[sender], edge_attrs, edge_mlp(edge_embedding)), receiver)
          # (edge_mlp and tp per block of edges on the CPU: ReceiverConvLayer.block_sizes)
        y = nonlin(linear_2(m) + sc) (+ x if resnet)    # receivers only

    The gather and the scatter sum are ``aggregation``'s
    (``kim_gnn/runtime/aggregation.py``: aten, or the kim_gnn kernels on
    receiver-sorted edges) along the ``route`` the runtime planned.
    """

    def __init__(self, layer: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__(layer, aggregation)
        conv = layer.conv
        self.linear_1 = conv.linear_1
        self.norm = conv.avg_num_neighbors_norm
        self.tp = conv.tp_scatter.tp
        self.edge_mlp = conv.edge_mlp
        self.linear_2 = conv.linear_2

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        x = data["node_features"]
        x_out = x[:num_out]
        sc = self.self_connection(x_out, data["node_attrs"][:num_out])
        # nequip's per-type normalisation reads the atom types from the dict
        normed: Dict[str, torch.Tensor] = {"node_features": self.linear_1(x), "atom_types": data["atom_types"]}
        h = self.norm(normed)["node_features"]
        edge_index = data["edge_index"]
        # per block of edges (edge_blocks: on the CPU, to keep e3nn's temporaries small)
        sizes = self.block_sizes(edge_index[0], route)
        gathered = edge_blocks(self.aggregation.gather(h, edge_index[1], route), sizes)
        attrs = edge_blocks(data["edge_attrs"], sizes)
        embedding = edge_blocks(data["edge_embedding"], sizes)
        blocks: List[torch.Tensor] = []
        for i in range(len(gathered)):
            blocks.append(self.tp(gathered[i], attrs[i], self.edge_mlp(embedding[i])))
        y = self.linear_2(self.aggregation.scatter_blocks(blocks, edge_index[0], num_out, route))
        return self.gate(y, sc, x_out)


class ReceiverEdgewiseReduce(torch.nn.Module):
    """Allegro's ``EdgewiseReduce`` (sum) into the first ``num_out`` centers
    through the runtime's aggregation, in allegro's order
    (``allegro/nn/edgewise.py``): scatter-sum over edges by center, the
    per-type ``avg_num_neighbors`` norm, divided by sqrt(2)."""

    field: str
    out_field: str

    def __init__(self, reduce: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        self.norm = reduce.norm_module
        self.field = str(reduce.field)
        self.out_field = str(reduce.out_field)

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        summed = self.aggregation.scatter(data[self.field], data["edge_index"][0], num_out, route)
        normed: Dict[str, torch.Tensor] = {"node_features": summed, "atom_types": data["atom_types"]}
        return self.norm(normed)["node_features"] / (2.0**0.5)


class ReceiverAllegro(torch.nn.Module):
    """Allegro's ``Allegro_Module`` whose environment sums (over the edges of
    each center) run through the runtime's aggregation into the first
    ``num_out`` centers (the only ones an edge of the plan has), in
    allegro's order (``allegro/nn/_allegro.py``):

        projection = first_layer_env_embed_projection(two-body scalars)
        per layer: env = norm(scatter_sum(env_weighter(tensor_basis, env_w), center))
                   tensor_features = tp(tensor_features, env, center)   # gathers env by center
                   latents = latent(cat(scalar features so far, scalars of tensor_features))

    The gather of ``env`` by center stays inside allegro's tensor product
    (aten ``index_select``)."""

    num_layers: int
    num_scalar_features: int
    env_weight_numel: int
    n_scalar_outs: List[int]
    tensor_basis_in_field: str
    tensor_features_in_field: str
    scalar_in_field: str
    scalar_out_field: str

    def __init__(self, module: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        self.projection = module.first_layer_env_embed_projection
        self.env_weighter = module._env_weighter
        self.norm = module.avg_num_neighbors_norm
        # (a compiled file's ModuleLists are script modules, which TorchScript
        # cannot iterate: hold their children in plain ones)
        self.latents = torch.nn.ModuleList([m for _, m in module.latents.named_children()])
        self.tps = torch.nn.ModuleList([m for _, m in module.tps.named_children()])
        self.num_layers = int(module.num_layers)
        self.num_scalar_features = int(module.num_scalar_features)
        self.env_weight_numel = int(module._env_weighter.weight_numel)
        self.n_scalar_outs = [int(n) for n in module._n_scalar_outs]
        self.tensor_basis_in_field = str(module.tensor_basis_in_field)
        self.tensor_features_in_field = str(module.tensor_features_in_field)
        self.scalar_in_field = str(module.scalar_in_field)
        self.scalar_out_field = str(module.scalar_out_field)

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        edge_center = data["edge_index"][0]
        tensor_basis = data[self.tensor_basis_in_field]
        tensor_features = data[self.tensor_features_in_field]
        projection = self.projection(data[self.scalar_in_field])
        accumulated = [torch.narrow(projection, -1, 0, self.num_scalar_features)]
        env_w = torch.narrow(projection, -1, self.num_scalar_features, self.env_weight_numel)
        layer_index = 0
        for latent, tp in zip(self.latents, self.tps):
            env = self.aggregation.scatter(self.env_weighter(tensor_basis, env_w), edge_center, num_out, route)
            size0, size1, size2 = env.shape[0], env.shape[1], env.shape[2]
            normed: Dict[str, torch.Tensor] = {"node_features": env.view(size0, size1 * size2),
                                               "atom_types": data["atom_types"]}
            env = self.norm(normed)["node_features"].view(size0, size1, size2)
            tensor_features = tp(tensor_features, env, edge_center)
            num_scalars = self.n_scalar_outs[layer_index]
            scalars = tensor_features[:, :, :num_scalars].reshape(
                tensor_features.shape[0], tensor_features.shape[1] * num_scalars
            )
            latents = latent(torch.cat(accumulated + [scalars], dim=-1))
            accumulated.append(torch.narrow(latents, -1, 0, self.num_scalar_features))
            if layer_index < self.num_layers - 1:
                env_w = torch.narrow(latents, -1, self.num_scalar_features, self.env_weight_numel)
            layer_index += 1
        data[self.scalar_out_field] = torch.cat(accumulated, dim=-1)
        return data


class AllegroLayer(torch.nn.Module):
    """Allegro's one staged layer: ``ReceiverAllegro``, the edge-wise modules
    between it and the reduce (the edge energy readout), and the
    ``EdgewiseReduce`` into the first ``num_out`` centers."""

    out_field: str

    def __init__(self, allegro: torch.nn.Module, edge_readout: List[torch.nn.Module], reduce: torch.nn.Module):
        super().__init__()
        self.allegro = allegro
        self.edge_readout = torch.nn.ModuleList(edge_readout)
        self.reduce = reduce
        self.out_field = reduce.out_field

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        data = self.allegro(data, num_out, route)
        for module in self.edge_readout:
            data = module(data)
        return self.reduce(data, num_out, route)


class StagedNequIPModern(StagedGraphNetwork):
    """nequip >= 0.7 on the NequIP family's staged loop
    (``kim_gnn/nequip/graph_stages.py``): KIM species mapped to the model's
    atom types, positions in float64 as nequip's data pipeline gives them.
    ``layers``: each a ``ReceiverLayer`` / ``AllegroLayer`` /
    ``ReceiverEdgewiseReduce`` / ``WholeLayer``."""

    def __init__(
        self,
        node_modules: List[torch.nn.Module],
        edge_modules: List[torch.nn.Module],
        layers: List[torch.nn.Module],
        readout: List[torch.nn.Module],
        type_of_species: List[int],
        runtime: StagedRuntime,
        readout_is_edgewise: List[bool],
        readout_is_pair: List[bool],
        energy_field: str = ATOMIC_ENERGY,
    ):
        super().__init__(node_modules, edge_modules, layers, readout, runtime,
                         readout_is_edgewise, readout_is_pair, energy_field)
        # KIM species index -> the model's atom type index
        self.register_buffer("type_of_species", torch.tensor(type_of_species, dtype=torch.int64))

    def node_inputs(self, species: torch.Tensor, coordinates: torch.Tensor, plan: StagePlan) -> Dict[str, torch.Tensor]:
        # species of particles no layer reads are never looked up
        atom_types = torch.index_select(self.type_of_species, 0, self.runtime.needed(species.view(-1), plan))
        return {"pos": self.runtime.needed(coordinates, plan), "atom_types": atom_types}

    def finish_energy(self, energy: torch.Tensor) -> torch.Tensor:
        return energy.to(torch.float64)
