"""The scalar-only last layer of a NequIP 0.5/0.6 model.

After the last ``ConvNetLayer`` a NequIP energy model reads its node
features with one ``AtomwiseLinear`` to scalar irreps (``conv_to_output_hidden``,
e.g. ``4x0e``). An e3nn ``Linear`` only connects equal irreps, so that
readout reads only some scalar channels of the last layer's output; every
other channel (the gated ``l > 0`` features, odd scalars) is computed and
thrown away, in the original as in an unpruned conversion. Of the last layer
only this is needed (NequIP's ``ConvNetLayer`` / ``InteractionBlock`` /
e3nn ``Gate``):

    y[c] = act_b(c)( linear_2(m)[pi(c)] + sc(x, node_attrs)[pi(c)] ) (+ x[c] with resnet)

for the read channels c (all among the gate's activated scalars; ``pi`` is
the gate's channel map, ``act_b`` the activation of c's block); ``linear_2``
restricted to those outputs reads only the scalar channels of ``m``, and
those come only from the tensor-product paths ``l x l -> 0``:

    m_p[u] = sum_e w_p(e)[u] * sum_{m1,m2} h[src(e), u, m1] Y(e)[m2] M_p[m1, m2] / sqrt(avg_num_neighbors)

So the converted last layer computes only those paths, only their weights
in the radial network's last linear layer, ``linear_2`` and the
self-connection restricted to the read channels, and the scalar
activations of those channels; the other output channels are zero.

The structure (irreps, tensor-product instructions, the gate's channel map)
comes from rebuilding the model's eager modules from the training config in
the file's metadata with nequip 0.5/0.6 and e3nn (not part of the converted
model); the numbers (``M_p``, the restricted matrices) are read off the
deployed file's own scripted modules by probing them with unit inputs.
The restricted layer is then checked against the deployed whole layer on
random inputs before it is used. Any step that does not hold (nequip not
importable, another config layout, a readout that reads more than the gate's
scalars, a mismatch) keeps the whole last layer, with the reason recorded.

One module (about 530 lines) on purpose: it is one derivation (which output
channels the readout reads, and the last layer rebuilt for exactly those),
whose steps refer to each other; the tests in tests/nequip/v06/test_scalar_last.py
follow the same order.
"""

from typing import Dict, List, Optional

import torch

from ...errors import first_line
from ...runtime import AtenAggregation
from ..graph_stages import EDGE_CHUNK, edge_blocks


class ScalarPath(torch.nn.Module):
    """One ``uvu`` tensor-product path with a scalar output:
    ``out[e, u] = w[e, u] * sum_{m1,m2} h[e, u, m1] y[e, m2] M[m1, m2]``."""

    h_start: int
    mul: int
    dim1: int
    y_start: int
    dim2: int
    w_start: int

    def __init__(self, h_start: int, mul: int, dim1: int, y_start: int, dim2: int, w_start: int,
                 matrix: torch.Tensor):
        super().__init__()
        self.h_start, self.mul, self.dim1 = h_start, mul, dim1
        self.y_start, self.dim2, self.w_start = y_start, dim2, w_start
        # M^T, so that y @ M^T gives the [E, dim1] vector to contract h with.
        self.register_buffer("matrix_t", matrix.t().contiguous())

    def forward(self, h: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        num_edges = h.shape[0]
        hp = h.narrow(1, self.h_start, self.mul * self.dim1).reshape(num_edges, self.mul, self.dim1)
        t = torch.mm(y.narrow(1, self.y_start, self.dim2), self.matrix_t)
        return (hp * t.unsqueeze(1)).sum(-1) * weight.narrow(1, self.w_start, self.mul)


class LinearPart(torch.nn.Module):
    """One path of an e3nn ``Linear`` between blocks of the same irrep:
    ``out[n, w, m] = sum_u x[n, u, m] W[u, w]`` (normalisation folded into W)."""

    start: int
    mul_in: int
    dim: int

    def __init__(self, start: int, mul_in: int, dim: int, weight: torch.Tensor):
        super().__init__()
        self.start, self.mul_in, self.dim = start, mul_in, dim
        self.register_buffer("weight", weight.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = x.narrow(1, self.start, self.mul_in * self.dim)
        if self.dim == 1:
            return torch.mm(block, self.weight)
        block = block.reshape(x.shape[0], self.mul_in, self.dim)
        return torch.einsum("nud,uw->nwd", block, self.weight).reshape(x.shape[0], -1)


class LinearBlock(torch.nn.Module):
    """One output block of an e3nn ``Linear``: the sum of its paths."""

    def __init__(self, parts: List[LinearPart]):
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(0)
        first = True
        for part in self.parts:
            if first:
                out = part(x)
                first = False
            else:
                out = out + part(x)
        return out


class ScalarOnlyLastLayer(torch.nn.Module):
    """The last ``ConvNetLayer(InteractionBlock)`` computing only the output
    channels the readout reads (``read_channels``); ``forward(data, num_out,
    route)`` returns the layer's full-width features on the first ``num_out``
    particles, zero outside the read channels."""

    out_field: str
    has_sc: bool
    resnet: bool
    has_avg: bool
    avg_num_neighbors: float
    out_dim: int
    act_bounds: List[int]
    restricted_linear_1: bool
    edge_chunk: int

    def __init__(self, fc_hidden: List[torch.nn.Module], fc_last: torch.Tensor, linear_1: torch.nn.Module,
                 h_columns: torch.Tensor, linear_1_blocks: Optional[List[LinearBlock]], paths: List[ScalarPath],
                 linear_2: torch.Tensor,
                 sc_rows: Optional[torch.Tensor], sc_matrix: Optional[torch.Tensor], acts: List[torch.nn.Module],
                 act_bounds: List[int], read_channels: torch.Tensor, out_dim: int, resnet: bool,
                 avg_num_neighbors: Optional[float], aggregation: Optional[torch.nn.Module] = None):
        super().__init__()
        self.out_field = "node_features"
        # gather / scatter-sum of the edges: aten, or the kim_gnn ops (kim_gnn/runtime/aggregation.py)
        self.aggregation = aggregation if aggregation is not None else AtenAggregation()
        self.edge_chunk = EDGE_CHUNK
        self.fc_hidden = torch.nn.ModuleList(fc_hidden)
        self.register_buffer("fc_last", fc_last)
        # linear_1's needed output blocks (or, where its structure was not
        # proven, the whole linear_1 and the needed columns of its output)
        self.restricted_linear_1 = linear_1_blocks is not None
        self.linear_1 = torch.nn.Identity() if linear_1_blocks is not None else linear_1
        self.linear_1_blocks = torch.nn.ModuleList(linear_1_blocks if linear_1_blocks is not None else [])
        self.register_buffer("h_columns", h_columns)
        self.paths = torch.nn.ModuleList(paths)
        self.register_buffer("linear_2", linear_2)
        self.has_sc = sc_rows is not None
        self.register_buffer("sc_rows", sc_rows if sc_rows is not None else torch.zeros(0, dtype=torch.int64))
        # [rows, species * channels]
        self.register_buffer("sc_matrix", sc_matrix if sc_matrix is not None else torch.zeros(0, 0))
        self.acts = torch.nn.ModuleList(acts)
        self.act_bounds = list(act_bounds)
        self.register_buffer("read_channels", read_channels)
        self.out_dim = int(out_dim)
        self.resnet = bool(resnet)
        self.has_avg = avg_num_neighbors is not None
        self.avg_num_neighbors = float(avg_num_neighbors) if avg_num_neighbors is not None else 1.0

    def forward(self, data: Dict[str, torch.Tensor], num_out: int, route: List[torch.Tensor]) -> torch.Tensor:
        x = data["node_features"]
        edge_src = data["edge_index"][1]
        edge_dst = data["edge_index"][0]
        x_out = x[:num_out]
        num_read = self.read_channels.shape[0]

        # linear_1 on the senders, then only the blocks the scalar paths read, per edge.
        if self.restricted_linear_1:
            blocks: List[torch.Tensor] = []
            for block in self.linear_1_blocks:
                blocks.append(block(x))
            h = torch.cat(blocks, dim=1)
        else:
            h = self.linear_1(x).index_select(1, self.h_columns)
        # Per block of edges on the CPU (graph_stages.edge_blocks): the radial
        # network, its last linear layer on the weights of the scalar paths
        # only, and the paths.
        sizes = self.aggregation.block_sizes(edge_dst, route, self.edge_chunk)
        gathered = edge_blocks(self.aggregation.gather(h, edge_src, route), sizes)
        edge_attrs = edge_blocks(data["edge_attrs"], sizes)
        embedding = edge_blocks(data["edge_embedding"], sizes)
        blocks: List[torch.Tensor] = []
        for i in range(len(gathered)):
            z = embedding[i]
            for layer in self.fc_hidden:
                z = layer(z)
            weight = torch.mm(z, self.fc_last)
            parts: List[torch.Tensor] = []
            for path in self.paths:
                parts.append(path(gathered[i], edge_attrs[i], weight))
            edge_features = torch.cat(parts, dim=1)
            if self.has_avg:
                edge_features = edge_features.div(self.avg_num_neighbors**0.5)
            blocks.append(edge_features)
        aggregated = self.aggregation.scatter_blocks(blocks, edge_dst, num_out, route)
        out = torch.mm(aggregated, self.linear_2)
        if self.has_sc:
            attrs = data["node_attrs"][:num_out]
            products = torch.mm(x_out.index_select(1, self.sc_rows), self.sc_matrix)
            products = products.reshape(num_out, attrs.shape[1], num_read)
            out = out + (products * attrs.unsqueeze(-1)).sum(1)
        # The gate's scalar activations, block by block.
        activated: List[torch.Tensor] = []
        for i, act in enumerate(self.acts):
            start = self.act_bounds[i]
            activated.append(act(out.narrow(1, start, self.act_bounds[i + 1] - start)))
        out = torch.cat(activated, dim=1)
        if self.resnet:
            out = x_out.index_select(1, self.read_channels) + out
        features = torch.zeros((num_out, self.out_dim), dtype=out.dtype, device=out.device)
        return features.index_copy(1, self.read_channels, out)


# --------------------------------------------------------------------------------------------
# Building it at conversion time


class NotApplicable(Exception):
    """The scalar-only last layer cannot be proven exact for this model; the reason."""


def _eager_network(info, scripted_func):
    """The eager ``SequentialGraphNetwork`` nequip builds from the file's
    training config (structure only: irreps, instructions), checked to have
    exactly the deployed file's parameters."""
    import contextlib
    import io
    import logging
    import warnings

    from importlib import metadata

    try:
        version = metadata.version("nequip")
    except metadata.PackageNotFoundError:
        version = None
    if version is not None and not version.startswith(("0.5.", "0.6.")):
        # (not imported: a modern nequip changes global torch settings at import)
        raise NotApplicable(f"nequip {version} is installed here, not 0.5/0.6 "
                            "(its structure is read with nequip 0.5/0.6)")
    from .legacy_import import e3nn_importable

    try:
        # (e3nn 0.4.4 torch.loads its constants at import: allowed weights-only, for the import only)
        with warnings.catch_warnings(), e3nn_importable():
            warnings.simplefilter("ignore")
            import e3nn
            from nequip.model import model_from_config
            from nequip.utils import Config
    except Exception as exc:  # ImportError, or a nequip whose API differs
        raise NotApplicable(f"nequip 0.5/0.6 and e3nn are not importable here ({type(exc).__name__}: "
                            f"{first_line(exc, 120)})") from None
    if not info.config.get("model_builders"):
        raise NotApplicable("the file's metadata holds no training config (model_builders)")

    previous_dtype = torch.get_default_dtype()
    previous_opts = e3nn.get_optimization_defaults()
    previous_level = logging.getLogger().level
    try:
        # No TorchScript / codegen: only the module structure is used.
        e3nn.set_optimization_defaults(specialized_code=False, optimize_einsums=False, jit_script_fx=False)
        torch.set_default_dtype(info.default_dtype)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model = model_from_config(Config.from_dict(dict(info.config)), initialize=False, deploy=True)
    except Exception as exc:
        raise NotApplicable(f"nequip could not rebuild the model from its config ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        torch.set_default_dtype(previous_dtype)
        e3nn.set_optimization_defaults(**previous_opts)
        logging.getLogger().setLevel(previous_level)

    func = model
    for _ in range(8):
        if type(func).__name__ == "SequentialGraphNetwork":
            break
        func = getattr(func, "model", None) if hasattr(func, "model") else getattr(func, "func", None)
        if func is None:
            break
    if type(func).__name__ != "SequentialGraphNetwork":
        raise NotApplicable("the rebuilt model has no SequentialGraphNetwork")
    eager_params = {k: tuple(v.shape) for k, v in func.named_parameters()}
    deployed_params = {k: tuple(v.shape) for k, v in scripted_func.named_parameters()}
    if eager_params != deployed_params:
        raise NotApplicable("the model rebuilt from the config does not have the deployed file's parameters")
    return func


def _eye(n: int, dtype) -> torch.Tensor:
    return torch.eye(n, dtype=dtype)


def _nonzero(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).reshape(-1)


def build(info, scripted_func, layer_name: str, readout_name: str,
          aggregation: Optional[torch.nn.Module] = None) -> ScalarOnlyLastLayer:
    """The scalar-only form of the scripted last layer ``layer_name`` read by
    ``readout_name``; raises ``NotApplicable`` with the reason where it
    cannot be proven exact."""
    eager = _eager_network(info, scripted_func)
    children = dict(eager.named_children())
    scripted = dict(scripted_func.named_children())
    layer_e, readout_e = children.get(layer_name), children.get(readout_name)
    layer_s, readout_s = scripted[layer_name], scripted[readout_name]
    if layer_e is None or readout_e is None:
        raise NotApplicable("the rebuilt model names its modules differently")
    if type(readout_e).__name__ != "AtomwiseLinear":
        raise NotApplicable(f"the module after the last layer is {type(readout_e).__name__}, not AtomwiseLinear")
    if readout_e.field != "node_features" or readout_e.out_field != "node_features":
        raise NotApplicable("the readout after the last layer does not replace node_features")
    gate = layer_e.equivariant_nonlin
    if type(gate).__name__ != "Gate":
        raise NotApplicable(f"the last layer's nonlinearity is {type(gate).__name__}, not Gate")
    conv_e, conv_s = layer_e.conv, layer_s.conv
    dtype = info.model_dtype

    with torch.no_grad():
        # 1. The channels the readout reads (a linear map: nonzero rows of its matrix).
        out_dim = gate.irreps_out.dim
        if readout_e.linear.irreps_in.dim != out_dim:
            raise NotApplicable("the readout's input is not the last layer's output")
        if bool(readout_s.linear(torch.zeros(1, out_dim, dtype=dtype)).abs().max() != 0):
            raise NotApplicable("the readout after the last layer has a bias")
        read = _nonzero((readout_s.linear(_eye(out_dim, dtype)) != 0).any(dim=1))
        if read.numel() == 0:
            raise NotApplicable("the readout reads no channel of the last layer")
        # 2. Gate: its first irreps_scalars.dim outputs are act_b(scalars[c]); the rest are gated.
        act_irreps = gate.act_scalars.irreps_in
        if int(read.max()) >= act_irreps.dim:
            raise NotApplicable("the readout reads gated (non-scalar) channels of the last layer")
        acts_s = [m for _, m in layer_s.equivariant_nonlin.act_scalars.acts.named_children()]
        if any(a is None for a in gate.act_scalars.acts) or len(acts_s) != len(act_irreps):
            raise NotApplicable("the gate has scalars without activation")
        cut = gate.sc.cut
        gate_in = []  # gate input channel of each scalar channel
        cut_slices = cut.irreps_in.slices()
        for block in cut.instructions[0]:
            gate_in.extend(range(cut_slices[block].start, cut_slices[block].stop))
        if len(gate_in) != act_irreps.dim:
            raise NotApplicable("the gate's scalar channels do not match its activations")
        acts, act_bounds, read_list = [], [0], read.tolist()
        for b, s in enumerate(act_irreps.slices()):
            in_block = [c for c in read_list if s.start <= c < s.stop]
            if in_block:
                acts.append(acts_s[b])
                act_bounds.append(act_bounds[-1] + len(in_block))
        conv_channels = torch.tensor([gate_in[c] for c in read_list], dtype=torch.int64)

        # 3. linear_2 restricted to those outputs: its input rows that can reach them.
        tp = conv_e.tp
        mid_dim = tp.irreps_out.dim
        if bool(conv_s.linear_2(torch.zeros(1, mid_dim, dtype=dtype)).abs().max() != 0):
            raise NotApplicable("linear_2 has a bias")
        linear_2 = conv_s.linear_2(_eye(mid_dim, dtype)).index_select(1, conv_channels)
        mid_needed = set(_nonzero((linear_2 != 0).any(dim=1)).tolist())

        # 4. The tensor-product paths into those rows, and their weights in the radial network.
        weight_starts, offset = [], 0
        for ins in tp.instructions:
            weight_starts.append(offset)
            if ins.has_weight:
                offset += int(torch.Size(ins.path_shape).numel())
        if offset != tp.weight_numel:
            raise NotApplicable("unexpected tensor-product weight layout")
        in1_slices, in2_slices, out_slices = tp.irreps_in1.slices(), tp.irreps_in2.slices(), tp.irreps_out.slices()
        needed_ins = [i for i, ins in enumerate(tp.instructions)
                      if any(c in mid_needed for c in range(out_slices[ins.i_out].start, out_slices[ins.i_out].stop))]
        if not needed_ins:
            raise NotApplicable("no tensor-product path reaches the read channels")
        h_blocks = sorted({tp.instructions[i].i_in1 for i in needed_ins})
        h_start, h_columns = {}, []
        for block in h_blocks:
            h_start[block] = len(h_columns)
            h_columns.extend(range(in1_slices[block].start, in1_slices[block].stop))
        paths, weight_columns, mid_rows = [], [], []
        d1_dim, d2_dim = tp.irreps_in1.dim, tp.irreps_in2.dim
        for i in needed_ins:
            ins = tp.instructions[i]
            mul1, ir1 = tp.irreps_in1[ins.i_in1]
            mul2, ir2 = tp.irreps_in2[ins.i_in2]
            mul_out, ir_out = tp.irreps_out[ins.i_out]
            if ins.connection_mode != "uvu" or not ins.has_weight or mul2 != 1 or ir_out.l != 0 or mul_out != mul1:
                raise NotApplicable("a tensor-product path into the read channels is not a scalar uvu path")
            # M[m1, m2] = the path's output u=0 for h = e(u=0, m1), y = e(m2), weights 1.
            d1, d2 = ir1.dim, ir2.dim
            x_probe = torch.zeros(d1 * d2, d1_dim, dtype=dtype)
            y_probe = torch.zeros(d1 * d2, d2_dim, dtype=dtype)
            for m1 in range(d1):
                for m2 in range(d2):
                    x_probe[m1 * d2 + m2, in1_slices[ins.i_in1].start + m1] = 1.0
                    y_probe[m1 * d2 + m2, in2_slices[ins.i_in2].start + m2] = 1.0
            w_probe = torch.ones(d1 * d2, tp.weight_numel, dtype=dtype)
            matrix = conv_s.tp(x_probe, y_probe, w_probe)[:, out_slices[ins.i_out].start].reshape(d1, d2)
            paths.append(ScalarPath(h_start[ins.i_in1], mul1, d1, in2_slices[ins.i_in2].start, d2,
                                    len(weight_columns), matrix))
            weight_columns.extend(range(weight_starts[i], weight_starts[i] + mul1))
            mid_rows.extend(range(out_slices[ins.i_out].start, out_slices[ins.i_out].stop))
        if not mid_needed <= set(mid_rows):
            raise NotApplicable("linear_2 reads tensor-product outputs that are not scalar paths")
        linear_2 = linear_2.index_select(0, torch.tensor(mid_rows, dtype=torch.int64)).contiguous()

        linear_1_blocks = _linear_blocks(conv_e.linear_1, conv_s.linear_1, h_blocks, dtype)
        if linear_1_blocks is not None and conv_e.linear_1.irreps_out != tp.irreps_in1:
            linear_1_blocks = None

        fc_children = [m for _, m in conv_s.fc.named_children()]
        if not fc_children:
            raise NotApplicable("the radial network has no layers")
        hidden_dim = conv_e.fc.hs[-2]
        last = fc_children[-1]
        probe = _eye(hidden_dim, dtype)
        fc_last = last(probe)
        if not torch.equal(last(2 * probe), 2 * fc_last) or bool(last(0 * probe).abs().max() != 0):
            raise NotApplicable("the radial network's last layer is not linear")
        fc_last = fc_last.index_select(1, torch.tensor(weight_columns, dtype=torch.int64)).contiguous()

        # 5. The self-connection (bilinear in features and node attributes) on the read channels.
        sc_rows = sc_matrix = None
        if getattr(conv_e, "sc", None) is not None:
            in_dim = conv_e.sc.irreps_in1.dim
            num_attrs = conv_e.sc.irreps_in2.dim
            x_probe = _eye(in_dim, dtype).repeat(num_attrs, 1)
            a_probe = _eye(num_attrs, dtype).repeat_interleave(in_dim, dim=0)
            full = conv_s.sc(x_probe, a_probe).index_select(1, conv_channels)
            full = full.reshape(num_attrs, in_dim, -1).permute(1, 0, 2)  # [in, attrs, read]
            rows = _nonzero((full != 0).reshape(in_dim, -1).any(dim=1))
            if rows.numel() == 0:
                rows = torch.zeros(1, dtype=torch.int64)
            sc_rows = rows
            sc_matrix = full.index_select(0, rows).reshape(rows.numel(), -1).contiguous()

    restricted = ScalarOnlyLastLayer(
        fc_hidden=fc_children[:-1],
        fc_last=fc_last,
        linear_1=conv_s.linear_1,
        h_columns=torch.tensor(h_columns, dtype=torch.int64),
        linear_1_blocks=linear_1_blocks,
        paths=paths,
        linear_2=linear_2,
        sc_rows=sc_rows,
        sc_matrix=sc_matrix,
        acts=acts,
        act_bounds=act_bounds,
        read_channels=read,
        out_dim=out_dim,
        resnet=bool(layer_s.resnet),
        avg_num_neighbors=getattr(conv_s, "avg_num_neighbors", None),
        aggregation=aggregation,
    )
    dims = {"in": tp.irreps_in1.dim, "edge_attrs": tp.irreps_in2.dim, "edge_embedding": conv_e.fc.hs[0],
            "attrs": len(info.type_names)}
    for seed in (0, 1):
        check(restricted, layer_s, readout_s.linear, dtype, dims, seed)
    return restricted


def _linear_blocks(eager, scripted, out_blocks: List[int], dtype) -> Optional[List[LinearBlock]]:
    """The output blocks ``out_blocks`` of an e3nn ``Linear`` as
    ``LinearBlock``s, their weights probed from the scripted module; None
    where its matrix is not the block (W x identity) structure its
    instructions say (then the caller keeps the whole ``Linear``)."""
    in_dim, out_dim = eager.irreps_in.dim, eager.irreps_out.dim
    if bool(scripted(torch.zeros(1, in_dim, dtype=dtype)).abs().max() != 0):
        return None  # biases
    matrix = scripted(_eye(in_dim, dtype))
    if matrix.shape != (in_dim, out_dim):
        return None
    in_slices, out_slices = eager.irreps_in.slices(), eager.irreps_out.slices()
    covered = torch.zeros(in_dim, out_dim, dtype=torch.bool)
    blocks = []
    for k in out_blocks:
        mul_out, ir_out = eager.irreps_out[k]
        parts = []
        for ins in eager.instructions:
            if ins.i_out != k:
                continue
            mul_in, ir_in = eager.irreps_in[ins.i_in]
            if ir_in != ir_out:
                return None
            d = ir_in.dim
            rows, cols = in_slices[ins.i_in], out_slices[k]
            sub = matrix[rows, cols]
            weight = sub[0::d, 0::d]  # [mul_in, mul_out], m = 0
            expected = torch.kron(weight, torch.eye(d, dtype=dtype))
            if not torch.allclose(sub, expected, rtol=0, atol=1e-300):
                return None
            covered[rows, cols] = True
            parts.append(LinearPart(rows.start, mul_in, d, weight))
        if not parts:
            return None
        blocks.append(LinearBlock(parts))
    # every other entry of the needed output columns is structurally zero
    for k in out_blocks:
        cols = out_slices[k]
        if bool((matrix[:, cols][~covered[:, cols]] != 0).any()):
            return None
    return blocks


def check(restricted: ScalarOnlyLastLayer, scripted_layer, readout, dtype: torch.dtype, dims: Dict[str, int],
          seed: int = 0) -> None:
    """The restricted layer against the deployed whole layer on random
    inputs (channel by channel on what the readout reads, and through the
    readout); raises ``NotApplicable`` where they differ."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    num_in, num_out, num_edges = 9, 6, 40
    species = torch.randint(0, dims["attrs"], (num_in,), generator=generator)
    data = {
        "node_features": rand(num_in, dims["in"]),
        "node_attrs": torch.nn.functional.one_hot(species, dims["attrs"]).to(dtype),
        "edge_attrs": rand(num_edges, dims["edge_attrs"]),
        "edge_embedding": rand(num_edges, dims["edge_embedding"]),
        # receivers (row 0) sorted, as the pruned model hands them to a layer
        # (the kim_gnn kernels' CSR sums need that order; aten does not care)
        "edge_index": torch.stack([torch.sort(torch.randint(0, num_out, (num_edges,), generator=generator))[0],
                                   torch.randint(0, num_in, (num_edges,), generator=generator)]),
    }
    with torch.no_grad():
        full = scripted_layer(dict(data))["node_features"][:num_out]
        edges = data["edge_index"]
        route = restricted.aggregation.plan(edges[1], edges[0], num_in, num_out)
        mine = restricted(dict(data), num_out, route)
        read = restricted.read_channels
        tol = 1e-11 if dtype == torch.float64 else 2e-5
        err = float((full.index_select(1, read) - mine.index_select(1, read)).abs().max())
        err /= max(1.0, float(full.abs().max()))
        out_full, out_mine = readout(full), readout(mine)
        err_out = float((out_full - out_mine).abs().max()) / max(1.0, float(out_full.abs().max()))
    if not (err <= tol and err_out <= tol):
        raise NotApplicable(f"the restricted last layer differs from the whole layer by {max(err, err_out):.1e}")
