"""The staged loop of a nequip ``SequentialGraphNetwork``, shared by the
NequIP family's adapters (0.5/0.6: ``kim_gnn/nequip/v06/staged.py``; >= 0.7 and
Allegro: ``kim_gnn/nequip/modern/staged.py``).

nequip's modules pass one dict of fields along; the schedule is the core
runtime's (``kim_gnn/runtime``), pruned or the identity plan, one loop:

* node modules (one-hot / type embedding) run once, on the particles of
  ``B_L`` (``node_inputs`` gives them their positions and types);
* layer i (0 = first) convolves over graph k = L-1-i: the edge modules run
  on that graph's kept edges in a fresh dict of the first ``n_{k+1}``
  particles (nequip caches edge vectors, lengths and cutoffs in the dict);
  the layer returns its ``out_field`` on the first ``n_k`` particles;
* the readout: node-wise modules on the first ``n_0`` particles; edge-wise
  ones (pair potentials, ``AddRadialCutoffToData``) on the last layer's
  dict, whose edges are every edge into the first ``n_0``, their energies
  added as nequip adds them (pair term + energy so far);
* ``finish_energy`` turns the per-atom energy into float64 (and applies what
  the version applies after the network), and the runtime scatters it to
  the contract's ``[N]`` output.

Each version's module subclasses ``StagedGraphNetwork`` and defines
``node_inputs`` and ``finish_energy``.
"""

from typing import Dict, List, Optional

import torch

from ..runtime import AtenAggregation, StagedModule, StagePlan, StagedRuntime

ATOMIC_ENERGY = "atomic_energy"
NODE_FEATURES = "node_features"
#: On the CPU the NequIP layers (both versions' ``ReceiverLayer``, NequIP
#: 0.6's ``ScalarOnlyLastLayer``) run their per-edge work (radial network,
#: tensor product) on blocks of this many edges and sum the blocks with
#: ``aggregation.scatter_blocks``. e3nn's tensor product
#: allocates several ``[E, weight_numel]`` temporaries per call (its backward
#: one zero-filled one per path); above glibc's mmap threshold (32 MiB at
#: most: 8192 edges of 480 float64 weights) each is fresh memory, page-faulted
#: on first touch. In blocks of 512 edges (1-2 MiB) the heap reuses them and
#: they stay in cache: the middle layer of the benchmark's nequip >= 0.7 model
#: (l_max 2) went from 1.33x the original's time per edge to 0.68x (512 atoms,
#: float64, 1 thread). Each edge's message is computed exactly as before.
EDGE_CHUNK = 512


def edge_blocks(values: torch.Tensor, sizes: List[int]) -> List[torch.Tensor]:
    """``values`` (one row per edge) in the blocks of edges a layer's
    per-edge work runs on: ``sizes`` from the aggregation's ``block_sizes``
    (``edge_chunk`` edges each on the CPU, see ``EDGE_CHUNK``, ending at
    receiver boundaries for the kernels; one block elsewhere: a GPU's
    caching allocator has no such cost, and each block is a launch of every
    kernel)."""
    if len(sizes) <= 1:
        return [values]
    return list(torch.split(values, sizes))


class WholeLayer(torch.nn.Module):
    """A layer called as it is on every particle it is given (a
    ``ConvNetLayer`` without exactly the parts the version's ``ReceiverLayer``
    knows, or, >= 0.7 Allegro, an ``EdgewiseReduce`` other than a plain sum);
    returns its output field, first ``num_out`` rows. Still pruned: it sees
    only the plan's particles and edges."""

    out_field: str

    def __init__(self, layer: torch.nn.Module, out_field: str = NODE_FEATURES):
        super().__init__()
        self.layer = layer
        self.out_field = out_field

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        return self.layer(data)[self.out_field][:num_out]


class NoSelfConnection(torch.nn.Module):
    """Stands for an absent self-connection (``use_sc: false``) in either
    version's ``ReceiverLayer``; never called, but TorchScript compiles both
    branches of ``if self.has_sc``."""

    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        return x


class ReceiverConvLayer(torch.nn.Module):
    """What both versions' ``ReceiverLayer`` share of nequip's
    ``ConvNetLayer(InteractionBlock)``: the self-connection on the receivers
    (``self_connection``) and, after the convolution, ``+ sc``, the gate and
    the residual (``gate``), in nequip's order. Each version's subclass does
    the convolution between the two with the runtime's ``aggregation``."""

    has_sc: bool
    resnet: bool
    out_field: str
    edge_chunk: int

    def __init__(self, layer: torch.nn.Module, aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        self.out_field = NODE_FEATURES
        self.edge_chunk = EDGE_CHUNK
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        sc = getattr(layer.conv, "sc", None)
        self.has_sc = isinstance(sc, torch.nn.Module)
        self.sc = sc if self.has_sc else NoSelfConnection()
        self.nonlin = layer.equivariant_nonlin
        self.resnet = bool(layer.resnet)

    def self_connection(self, x_out: torch.Tensor, node_attrs_out: torch.Tensor) -> torch.Tensor:
        if self.has_sc:
            return self.sc(x_out, node_attrs_out)
        return x_out

    def block_sizes(self, receivers: torch.Tensor, route: List[torch.Tensor]) -> List[int]:
        return self.aggregation.block_sizes(receivers, route, self.edge_chunk)

    def gate(self, y: torch.Tensor, sc: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        if self.has_sc:
            y = y + sc
        y = self.nonlin(y)
        if self.resnet:
            y = x_out + y
        return y


class StagedGraphNetwork(StagedModule):
    """``layers``: each ``forward(data, num_out, route)`` -> its
    ``out_field`` on the first ``num_out`` particles. ``readout_is_edgewise``
    flags the readout modules that run on the last graph's dict,
    ``readout_is_pair`` those of them that add to the per-atom energy."""

    num_layers: int
    energy_field: str
    readout_is_edgewise: List[bool]
    readout_is_pair: List[bool]

    def __init__(
        self,
        node_modules: List[torch.nn.Module],
        edge_modules: List[torch.nn.Module],
        layers: List[torch.nn.Module],
        readout: List[torch.nn.Module],
        runtime: StagedRuntime,
        readout_is_edgewise: List[bool],
        readout_is_pair: List[bool],
        energy_field: str,
    ):
        super().__init__()
        # nequip: edge_index[0] is the center (receiver), edge_index[1] the neighbor.
        if runtime.receiver_row != 0 or runtime.num_layers != len(layers):
            raise ValueError("a nequip model's runtime has receiver row 0 and one graph per layer")
        if not (len(readout_is_edgewise) == len(readout_is_pair) == len(readout)):
            raise ValueError("readout_is_edgewise and readout_is_pair must flag every readout module")
        self.runtime = runtime
        self.node_modules = torch.nn.ModuleList(node_modules)
        self.edge_modules = torch.nn.ModuleList(edge_modules)
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.ModuleList(readout)
        self.readout_is_edgewise = [bool(f) for f in readout_is_edgewise]
        self.readout_is_pair = [bool(f) for f in readout_is_pair]
        self.num_layers = len(layers)
        self.energy_field = energy_field

    def forward(
        self,
        species: torch.Tensor,
        coordinates: torch.Tensor,
        graphs: List[torch.Tensor],
        contributions: torch.Tensor,
        vectors_out: Optional[List[torch.Tensor]] = None,
        edges_out: Optional[List[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """The loop. Given ``vectors_out`` and ``edges_out`` (the
        contract's forward passes neither: nothing is recorded), it also
        records, per layer, the edge vectors nequip's edge modules formed
        (and cached in the dict, where every later module of that graph
        reads them: the converters admit only modules that see positions
        through them) with their edges in the caller's numbering."""
        plan = self.runtime.plan(graphs, contributions)
        nodes = self.node_inputs(species, coordinates, plan)
        for node_module in self.node_modules:
            nodes = node_module(nodes)

        data: Dict[str, torch.Tensor] = nodes
        for i, layer in enumerate(self.layers):
            k = self.runtime.graph_of_layer(i)
            num_in = plan.counts[k + 1]
            # a fresh dict per graph: the edge modules cache edge vectors in it
            data = {}
            for key, value in nodes.items():
                data[key] = value[:num_in]
            data["edge_index"] = plan.edges[k]
            for edge_module in self.edge_modules:
                data = edge_module(data)
            if vectors_out is not None and edges_out is not None:
                if "edge_vectors" not in data:
                    raise ValueError("kim-gnn model: its edge modules formed no edge_vectors: no per-atom virials")
                self.runtime.record_edges(data["edge_vectors"], plan, k, vectors_out, edges_out)
            nodes[layer.out_field] = layer(data, plan.counts[k], plan.routes[k])

        num_contributing = plan.counts[0]
        out: Dict[str, torch.Tensor] = {}
        for key, value in nodes.items():
            out[key] = value[:num_contributing]
        for i, module in enumerate(self.readout):
            if not self.readout_is_edgewise[i]:
                out = module(out)
            elif self.readout_is_pair[i]:
                # nequip's pair potentials add to "atomic_energy" (ATOMIC_ENERGY:
                # TorchScript takes no str globals)
                if "atomic_energy" in data:
                    del data["atomic_energy"]
                term = module(data)["atomic_energy"][:num_contributing]
                if "atomic_energy" in out:
                    term = term + out["atomic_energy"]
                out["atomic_energy"] = term
            else:
                data = module(data)

        energy = self.finish_energy(out[self.energy_field].reshape(-1))
        return self.runtime.particle_energies(energy, plan, contributions)

    def node_inputs(self, species: torch.Tensor, coordinates: torch.Tensor, plan: StagePlan) -> Dict[str, torch.Tensor]:
        """``pos`` and ``atom_types`` of the particles of ``B_L``, in the plan's order."""
        raise NotImplementedError

    def finish_energy(self, energy: torch.Tensor) -> torch.Tensor:
        """The per-atom energies in float64, as the original's output gives them."""
        raise NotImplementedError
