"""The staged form of a MACE / ScaleShiftMACE energy model (one head).

The compiled children of the original model are reused as they are (a
copy's: ``convert.drop_whole_dimension_slices`` takes TorchScript's no-op
whole-dimension slices out of e3nn's generated code); only the graph each
one sees changes:

* node attributes (one-hot of the species index), the E0 energies and the
  node embedding are computed once on all particles;
* interaction i (0 = first) and its product basis run on
  ``edge_index_{L-1-i}``: edge vectors, spherical harmonics and the radial
  embedding are recomputed on that graph. MACE sends along
  ``edge_index[0] -> edge_index[1]``; the staged graphs hold every edge in
  both directions, so they are passed on unchanged;
* the product basis (a node-wise map) runs on blocks of nodes
  (``ChunkedProduct``, block size from ``convert.product_chunk``): same
  values, intermediates small enough to stay on the heap;
* the readout of layer i is applied to the features after layer i; only
  contributing particles keep their energy, and every staged graph holds
  all edges of every contributing particle, so those features are exact;
* the ZBL pair term runs on ``edge_index_0`` (all edges of contributing
  particles) in the model's dtype (MACE's own ZBL forms ``14.3996 * Z * Z``
  in torch's default dtype; the driver runs with float32 as default).

The schedule is the core runtime's (``kim_gnn/runtime``): pruned (the
default), the node embedding runs on ``B_L`` only, interaction i on the first
``n_{k+1}`` particles of the plan with the edges into the first ``n_k``, its
message cut to those ``n_k`` rows before the product basis; E0, readouts,
ZBL and scale/shift on the contributing particles only. Unpruned, the same
loop runs on the identity plan.

Multi-head models are fixed to one head: its column of the readouts, E0 and
scale/shift, and a constant mask in place of ``mask_head`` (which builds its
mask in the default dtype).

One module (about 400 lines) on purpose: MACE's staged interaction blocks,
product basis and readouts are compiled together into one TorchScript class
tree, and each block's receiver-only form sits beside its whole form so that
the two can be read against each other.
"""


from typing import List, Optional, Tuple

import torch

from ..runtime import AtenAggregation, StagedModule, StagedRuntime


class LinearHeadReadout(torch.nn.Module):
    """MACE's ``LinearReadoutBlock``, one head's column."""

    head: int

    def __init__(self, readout: torch.nn.Module, head: int):
        super().__init__()
        self.linear = readout.linear
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, self.head]


class NonLinearHeadReadout(torch.nn.Module):
    """MACE's ``NonLinearReadoutBlock`` (``with_mid=False``) or
    ``NonLinearBiasReadoutBlock`` (``with_mid=True``), one head's column.

    With several heads, MACE's ``mask_head`` zeroes the hidden features of the
    other heads after each activation; ``hidden_mask`` is that mask for the
    chosen head, as a constant in the model's dtype.
    """

    head: int
    masked: bool
    with_mid: bool

    def __init__(self, readout: torch.nn.Module, head: int, hidden_mask: Optional[torch.Tensor], with_mid: bool):
        super().__init__()
        self.linear_1 = readout.linear_1
        self.non_linearity = readout.non_linearity
        self.linear_2 = readout.linear_2
        self.linear_mid = readout.linear_mid if with_mid else torch.nn.Identity()
        self.with_mid = with_mid
        self.head = head
        self.masked = hidden_mask is not None
        self.register_buffer("hidden_mask", hidden_mask if hidden_mask is not None else torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.non_linearity(self.linear_1(x))
        if self.masked:
            x = x * self.hidden_mask
        if self.with_mid:
            x = self.non_linearity(self.linear_mid(x))
            if self.masked:
                x = x * self.hidden_mask
        return self.linear_2(x)[:, self.head]


class NoPairRepulsion(torch.nn.Module):
    def forward(
        self, x: torch.Tensor, node_attrs: torch.Tensor, edge_index: torch.Tensor, atomic_numbers: torch.Tensor,
        num_out: int, route: List[torch.Tensor],
    ) -> torch.Tensor:
        return torch.zeros((num_out,), dtype=node_attrs.dtype, device=node_attrs.device)


class NoScaleShift(torch.nn.Module):
    def forward(self, x: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return x


class StagedZBL(torch.nn.Module):
    """MACE's ZBL pair repulsion (0.3.x formula) on one graph, computed in
    the dtype of the edge lengths whatever torch's default dtype is, summed
    into the first ``num_out`` particles (the receivers) along ``route``."""

    def __init__(self, zbl: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        # sums the edge energies into receivers (kim_gnn/aggregation.py)
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        self.register_buffer("c", zbl.c.detach().clone())
        self.register_buffer("p", zbl.p.detach().clone())
        self.register_buffer("covalent_radii", zbl.covalent_radii.detach().clone())
        self.register_buffer("a_exp", zbl.a_exp.detach().clone())
        self.register_buffer("a_prefactor", zbl.a_prefactor.detach().clone())

    def forward(
        self,
        x: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        atomic_numbers: torch.Tensor,
        num_out: int,
        route: List[torch.Tensor],
    ) -> torch.Tensor:
        sender = edge_index[0]
        receiver = edge_index[1]
        z = atomic_numbers[torch.argmax(node_attrs, dim=1)].unsqueeze(-1)
        z_u = z[sender].to(torch.int64)
        z_v = z[receiver].to(torch.int64)
        a = self.a_prefactor * 0.529 / (torch.pow(z_u, self.a_exp) + torch.pow(z_v, self.a_exp))
        r_over_a = x / a
        phi = (
            self.c[0] * torch.exp(-3.2 * r_over_a)
            + self.c[1] * torch.exp(-0.9423 * r_over_a)
            + self.c[2] * torch.exp(-0.4028 * r_over_a)
            + self.c[3] * torch.exp(-0.2016 * r_over_a)
        )
        # z_u, z_v in the lengths' dtype: the one place MACE's formula
        # depends on the default dtype.
        v_edges = (14.3996 * z_u.to(x.dtype) * z_v.to(x.dtype)) / x * phi
        r_max = self.covalent_radii[z_u] + self.covalent_radii[z_v]
        p = self.p
        r = x / r_max
        envelope = (
            1.0
            - ((p + 1.0) * (p + 2.0) / 2.0) * torch.pow(r, p)
            + p * (p + 2.0) * torch.pow(r, p + 1)
            - (p * (p + 1.0) / 2) * torch.pow(r, p + 2)
        ) * (x < r_max)
        v_edges = 0.5 * v_edges * envelope
        out = self.aggregation.scatter(v_edges, receiver, num_out, route)
        return out.squeeze(-1)


class WholeInteraction(torch.nn.Module):
    """A MACE interaction block called as it is (on every particle it is
    given); message and self-connection cut to the first ``num_out`` rows."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.block = block

    def forward(
        self,
        node_attrs: torch.Tensor,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor],
        num_out: int,
        route: List[torch.Tensor],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        message, sc = self.block(
            node_attrs=node_attrs,
            node_feats=node_feats,
            edge_attrs=edge_attrs,
            edge_feats=edge_feats,
            edge_index=edge_index,
            cutoff=cutoff,
        )
        if sc is not None:
            sc = sc[:num_out]
        return message[:num_out], sc


class ReceiverInteraction(torch.nn.Module):
    """One of MACE's four RealAgnostic* interaction blocks whose node-wise
    work after the up-projection runs only on the first ``num_out``
    particles (the receivers asked for). The parts of the block are called in
    the block's own order (mace-torch 0.3.x ``modules/blocks.py``)::

        sc = skip_tp(x, attrs)                       # residual blocks, receivers only
        h = linear_up(x)                             # every particle: senders need it
        w = conv_tp_weights(edge_feats) * cutoff
        m = scatter_sum(conv_tp(h[sender], edge_attrs, w), receiver)
        m = linear(m) / avg_num_neighbors            # density blocks: / (density + 1)
        m = skip_tp(m, attrs)                        # non-residual blocks

    The gather ``h[sender]`` and the scatter sums are ``aggregation``'s
    (``kim_gnn/runtime/aggregation.py``: aten, or the kim_gnn kernels on
    receiver-sorted edges), along the ``route`` the runtime planned.
    """

    residual: bool
    density: bool
    avg_num_neighbors: float

    def __init__(self, block: torch.nn.Module, residual: bool, density: bool,
                 aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        self.linear_up = block.linear_up
        self.conv_tp_weights = block.conv_tp_weights
        self.conv_tp = block.conv_tp
        self.linear = block.linear
        self.skip_tp = block.skip_tp
        self.reshape = block.reshape
        self.density_fn = block.density_fn if density else torch.nn.Identity()
        self.residual = residual
        self.density = density
        self.avg_num_neighbors = float(block.avg_num_neighbors)

    def forward(
        self,
        node_attrs: torch.Tensor,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor],
        num_out: int,
        route: List[torch.Tensor],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        attrs_out = node_attrs[:num_out]
        sc: Optional[torch.Tensor] = None
        if self.residual:
            sc = self.skip_tp(node_feats[:num_out], attrs_out)
        h = self.linear_up(node_feats)
        tp_weights = self.conv_tp_weights(edge_feats)
        if cutoff is not None:
            tp_weights = tp_weights * cutoff
        sender = edge_index[0]
        receiver = edge_index[1]
        mji = self.conv_tp(self.aggregation.gather(h, sender, route), edge_attrs, tp_weights)
        message = self.aggregation.scatter(mji, receiver, num_out, route)
        if self.density:
            edge_density = torch.tanh(self.density_fn(edge_feats) ** 2)
            if cutoff is not None:
                edge_density = edge_density * cutoff
            density = self.aggregation.scatter(edge_density, receiver, num_out, route)
            message = self.linear(message) / (density + 1)
        else:
            message = self.linear(message) / self.avg_num_neighbors
        if not self.residual:
            message = self.skip_tp(message, attrs_out)
        return self.reshape(message), sc


class ChunkedProduct(torch.nn.Module):
    """MACE's product basis (``EquivariantProductBasisBlock``: symmetric
    contraction, linear, + sc), a node-wise map, run on blocks of at most
    ``chunk`` nodes and the blocks' results concatenated; ``chunk <= 0``, or
    off the CPU (a GPU's caching allocator has no mmap cost, and each block
    would launch every kernel again): one call on all nodes. The values are
    the block's own; only the size of its intermediates changes (see
    ``product_chunk``)."""

    chunk: int

    def __init__(self, product: torch.nn.Module, chunk: int):
        super().__init__()
        self.product = product
        self.chunk = chunk

    def forward(self, node_feats: torch.Tensor, sc: Optional[torch.Tensor], node_attrs: torch.Tensor) -> torch.Tensor:
        if self.chunk <= 0 or node_feats.device.type != "cpu" or node_feats.shape[0] <= self.chunk:
            return self.product(node_feats=node_feats, sc=sc, node_attrs=node_attrs)
        feats = node_feats.split(self.chunk)
        attrs = node_attrs.split(self.chunk)
        outs: List[torch.Tensor] = []
        if sc is None:
            for i in range(len(feats)):
                outs.append(self.product(node_feats=feats[i], sc=None, node_attrs=attrs[i]))
        else:
            scs = sc.split(self.chunk)
            for i in range(len(feats)):
                outs.append(self.product(node_feats=feats[i], sc=scs[i], node_attrs=attrs[i]))
        return torch.cat(outs, dim=0)


class StagedMACE(StagedModule):
    model_dtype: torch.dtype
    num_layers: int
    num_elements: int
    head: int
    has_scale_shift: bool
    last_readout_only: bool

    def __init__(
        self,
        atomic_energies_fn: torch.nn.Module,
        node_embedding: torch.nn.Module,
        spherical_harmonics: torch.nn.Module,
        radial_embedding: torch.nn.Module,
        interactions: List[torch.nn.Module],
        products: List[torch.nn.Module],
        readouts: List[torch.nn.Module],
        atomic_numbers: torch.Tensor,
        head: int,
        model_dtype: torch.dtype,
        runtime: StagedRuntime,
        pair_repulsion: Optional[torch.nn.Module] = None,
        scale_shift: Optional[torch.nn.Module] = None,
    ):
        super().__init__()
        # MACE sends along edge_index[0] -> edge_index[1]: the receiver is row 1.
        if runtime.receiver_row != 1 or runtime.num_layers != len(interactions):
            raise ValueError("MACE's runtime has receiver row 1 and one graph per interaction")
        self.runtime = runtime
        self.atomic_energies_fn = atomic_energies_fn
        self.node_embedding = node_embedding
        self.spherical_harmonics = spherical_harmonics
        self.radial_embedding = radial_embedding
        # WholeInteraction or ReceiverInteraction wrappers: (attrs, feats, edge
        # attrs, edge feats, edge_index, cutoff, num_out, route) -> (message, sc).
        self.interactions = torch.nn.ModuleList(interactions)
        self.products = torch.nn.ModuleList(products)
        self.readouts = torch.nn.ModuleList(readouts)
        self.register_buffer("atomic_numbers", atomic_numbers.detach().clone().to(torch.int64))
        self.num_layers = len(interactions)
        self.num_elements = int(atomic_numbers.numel())
        self.head = head
        self.model_dtype = model_dtype
        self.last_readout_only = len(readouts) == 1
        self.pair_repulsion = pair_repulsion if pair_repulsion is not None else NoPairRepulsion()
        self.has_scale_shift = scale_shift is not None
        self.scale_shift = scale_shift if scale_shift is not None else NoScaleShift()

    def forward(
        self,
        species: torch.Tensor,
        coordinates: torch.Tensor,
        graphs: List[torch.Tensor],
        contributions: torch.Tensor,
        vectors_out: Optional[List[torch.Tensor]] = None,
        edges_out: Optional[List[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """In the plan's numbering interaction i runs on the first
        ``n_{k+1}`` particles with the edges into the first ``n_k``, and the
        product basis, the readouts, E0 and ZBL on what is kept. Positions
        enter only through each graph's edge vectors, recorded into
        ``vectors_out`` / ``edges_out`` when given (the contract's forward
        passes neither); ZBL reuses graph 0's lengths."""
        plan = self.runtime.plan(graphs, contributions)
        pos = self.runtime.needed(coordinates, plan).to(self.model_dtype)
        node_attrs = torch.nn.functional.one_hot(self.runtime.needed(species, plan), self.num_elements).to(
            self.model_dtype
        )
        node_feats = self.node_embedding(node_attrs)

        features: List[torch.Tensor] = []
        lengths = torch.zeros((0, 1), dtype=self.model_dtype, device=pos.device)
        edge_index = torch.zeros((2, 0), dtype=torch.int64, device=pos.device)
        for i, (interaction, product) in enumerate(zip(self.interactions, self.products)):
            k = self.runtime.graph_of_layer(i)
            num_in = plan.counts[k + 1]
            num_out = plan.counts[k]
            edge_index = plan.edges[k]
            attrs_in = node_attrs[:num_in]
            vectors = self.runtime.edge_vectors(pos, plan, k)
            if vectors_out is not None and edges_out is not None:
                self.runtime.record_edges(vectors, plan, k, vectors_out, edges_out)
            lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
            edge_attrs = self.spherical_harmonics(vectors)
            edge_feats, cutoff = self.radial_embedding(lengths, attrs_in, edge_index, self.atomic_numbers)
            # Message and self-connection of the first num_out particles only:
            # the others' are not needed (and would be partial); the product
            # basis, the dominant node-wise cost, runs on those num_out.
            message, sc = interaction(attrs_in, node_feats[:num_in], edge_attrs, edge_feats, edge_index, cutoff,
                                      num_out, plan.routes[k])
            node_feats = product(node_feats=message, sc=sc, node_attrs=node_attrs[:num_out])
            features.append(node_feats)

        num_contributing = plan.counts[0]
        attrs_0 = node_attrs[:num_contributing]
        node_heads = torch.full((num_contributing,), self.head, dtype=torch.int64, device=species.device)
        node_e0 = self.atomic_energies_fn(attrs_0)[:, self.head]
        # After the loop, lengths and edge_index belong to graph 0: the edges
        # into the first n_0 particles, senders among the first n_1.
        pair = self.pair_repulsion(lengths, node_attrs[: plan.counts[1]], edge_index, self.atomic_numbers,
                                   num_contributing, plan.routes[0])
        node_es: List[torch.Tensor] = [pair]
        for i, readout in enumerate(self.readouts):
            if self.last_readout_only:
                node_es.append(readout(features[-1][:num_contributing]))
            else:
                node_es.append(readout(features[i][:num_contributing]))

        if self.has_scale_shift:
            inter = torch.sum(torch.stack(node_es, dim=0), dim=0)
            inter = self.scale_shift(inter, node_heads)
            energy = node_e0.to(torch.float64) + inter.to(torch.float64)
        else:
            energy = torch.sum(torch.stack([node_e0] + node_es, dim=-1), dim=-1).to(torch.float64)
        return self.runtime.particle_energies(energy, plan, contributions)
