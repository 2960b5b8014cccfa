"""The module trees a nequip >= 0.7 model may have (NequIP GNN or Allegro),
checked against what nequip's and allegro's model builders make; anything
else is refused by name:

    GraphModel (only local input fields)
      ForceStressOutput
        SequentialGraphNetwork:
          NequIP:  NodeTypeEmbed (no graph-level field embeddings),
                   SphericalHarmonicEdgeAttrs, EdgeLengthNormalizer,
                   BesselEdgeLengthEncoding, ApplyFactor,
                   ConvNetLayer(InteractionBlock) x L,
                   ScalarMLP, PerTypeScaleShift, [AddRadialCutoffToData],
                   [ZBL | LennardJones | SimpleLennardJones],
                   AtomwiseReduce(sum)
          Allegro: EdgeLengthNormalizer, two-body scalar embedding
                   (Bessel: SequentialGraphNetwork of BesselEdgeLengthEncoding
                   + ProductTypeEmbedding; or TwoBodySplineScalarEmbed),
                   ScalarMLP, TwoBodySphericalHarmonicTensorEmbed,
                   Allegro_Module, ScalarMLP, EdgewiseReduce,
                   PerTypeScaleShift, [AddRadialCutoffToData, pair potential],
                   AtomwiseReduce(sum)

The accepted trees are checked in the order listed, each refusal next to
its check (``split_network``); what a model is made of is ``info.py``, the
choice of the layers' receiver-only forms ``receivers.py``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from ...errors import UnsupportedModelError
from ..module_tree import PAIR_POTENTIALS, SCALAR_TYPE_CODES, class_name, refuse_module

#: Inputs a local model may read (GraphModel's standard fields); anything
#: else (total charge, spin, external fields) is per-structure data.
LOCAL_INPUT_FIELDS = {
    "pos", "edge_index", "edge_transpose_perm", "edge_cell_shift", "edge_vectors", "cell", "batch",
    "num_atoms", "atom_types", "lmp_mliap_data", "num_local_ghost_atoms",
}
NODE_MODULES = ("NodeTypeEmbed",)
EDGE_MODULES = ("SphericalHarmonicEdgeAttrs", "EdgeLengthNormalizer", "BesselEdgeLengthEncoding", "ApplyFactor")
READOUT_MODULES = ("ScalarMLP", "PerTypeScaleShift", "AddRadialCutoffToData") + PAIR_POTENTIALS
ALLEGRO_MODULES = (
    "EdgeLengthNormalizer", "BesselEdgeLengthEncoding", "ProductTypeEmbedding", "TwoBodySplineScalarEmbed",
    "ScalarMLP", "TwoBodySphericalHarmonicTensorEmbed", "Allegro_Module", "EdgewiseReduce",
    "PerTypeScaleShift", "AddRadialCutoffToData",
) + PAIR_POTENTIALS
ENERGY_FIELD = "atomic_energy"
EDGEWISE_READOUT = ("AddRadialCutoffToData",) + PAIR_POTENTIALS


def is_modern_module(module) -> bool:
    """An in-memory nequip >= 0.7 GraphModel (eager, packaged or scripted)."""
    if not isinstance(module, torch.nn.Module):
        return False
    if isinstance(module, torch.jit.ScriptModule):
        return class_name(module) == "GraphModel" and _has_child(module, "model") and not hasattr(module, "nequip_version")
    return class_name(module) in ("GraphModel", "CompileGraphModel") and bool(getattr(module, "is_graph_model", False))


def _has_child(module, name: str) -> bool:
    return name in dict(module.named_children())


def _child(module, name: str, what: str):
    children = dict(module.named_children())
    if name not in children:
        raise UnsupportedModelError(f"{what} {class_name(module)!r} has no submodule {name!r}: not a standard nequip model")
    return children[name]


def _model_dtype(graph_model, metadata: Dict[str, str]) -> torch.dtype:
    name = str(metadata.get("model_dtype", "")).replace("torch.", "")
    if name in ("float32", "float64"):
        return getattr(torch, name)
    code = getattr(graph_model, "model_dtype", None)
    if isinstance(code, torch.dtype):
        dtype = code
    else:
        dtype = SCALAR_TYPE_CODES.get(code)
    if dtype not in (torch.float32, torch.float64):
        raise UnsupportedModelError(f"model dtype {dtype or name!r} is neither float32 nor float64")
    return dtype


def _unwrap(graph_model) -> object:
    """GraphModel -> ForceStressOutput -> SequentialGraphNetwork."""
    kind = class_name(graph_model)
    if kind == "CompileGraphModel":
        raise UnsupportedModelError(
            "this GraphModel was built for train-time torch.compile (CompileGraphModel); load it with "
            "compile_mode='eager' (nequip's load_saved_model default) and convert that"
        )
    if kind != "GraphModel":
        raise UnsupportedModelError(f"unsupported top-level module {kind!r} (expected nequip's GraphModel)")
    fields = set(getattr(graph_model, "model_input_fields", []) or [])
    extra = sorted(fields - LOCAL_INPUT_FIELDS)
    if extra:
        raise UnsupportedModelError(
            f"the model takes graph-level input field(s) {', '.join(extra)} (charge / spin / field embeddings): "
            "per-structure data, not a local model, cannot be staged"
        )
    outer = _child(graph_model, "model", "GraphModel")
    if class_name(outer) != "ForceStressOutput":
        raise UnsupportedModelError(
            f"unsupported module {class_name(outer)!r} where nequip puts ForceStressOutput"
        )
    func = _child(outer, "func", "ForceStressOutput")
    if class_name(func) != "SequentialGraphNetwork":
        raise UnsupportedModelError(f"unsupported energy model {class_name(func)!r} (expected SequentialGraphNetwork)")
    return func


def _check_node_embed(name: str, module) -> None:
    if bool(getattr(module, "do_categorical_graph_field_embed", False)):
        fields = []
        embeds = getattr(module, "categorical_graph_field_embed_modules", None)
        if embeds is not None:
            fields = [n for n, _ in embeds.named_children()]
        raise UnsupportedModelError(
            f"module {name!r} (NodeTypeEmbed) embeds graph-level field(s) {', '.join(fields) or '?'} "
            "(categorical_graph_field_embed: charge / spin): per-structure data, not local, cannot be staged"
        )


def _check_convnet(name: str, layer) -> None:
    conv = _child(layer, "conv", "ConvNetLayer")
    if class_name(conv) != "InteractionBlock":
        raise UnsupportedModelError(f"layer {name!r} uses convolution {class_name(conv)!r}; only InteractionBlock is supported")
    tp = _child(conv, "tp_scatter", "InteractionBlock")
    if class_name(tp) != "TensorProductScatter":
        raise UnsupportedModelError(
            f"layer {name!r} uses the accelerated tensor product {class_name(tp)!r} (custom ops a KIM driver cannot "
            "load); convert the model without acceleration modifiers (the .nequip.zip or .ckpt)"
        )
    ghost = dict(conv.named_children()).get("ghost_exchange")
    if ghost is not None and class_name(ghost) != "NoOpGhostExchangeModule":
        raise UnsupportedModelError(f"layer {name!r} has ghost exchange {class_name(ghost)!r} (LAMMPS ML-IAP); convert the unmodified model")


def _check_allegro_child(name: str, module) -> None:
    kind = class_name(module)
    if kind == "SequentialGraphNetwork":
        for sub_name, sub in module.named_children():
            _check_allegro_child(f"{name}.{sub_name}", sub)
        return
    if kind not in ALLEGRO_MODULES:
        raise UnsupportedModelError(
            f"unsupported module {name!r} ({kind}) in an Allegro model: kim-gnn cannot prove it local, so it will not convert it"
        )


def split_network(func) -> Tuple[str, list, list, list, list, List[str]]:
    """(model kind, node modules, edge modules, layers, readout, pair potentials);
    refuses unknown modules by name."""
    children = list(func.named_children())
    if not children or class_name(children[-1][1]) != "AtomwiseReduce":
        raise UnsupportedModelError("the energy model does not end in an AtomwiseReduce energy sum")
    reduce_name, reduce = children[-1]
    if str(reduce.reduce) != "sum" or float(reduce.constant) != 1.0:
        kind = "normalized_sum" if str(reduce.reduce) == "sum" else str(reduce.reduce)
        raise UnsupportedModelError(f"module {reduce_name!r} reduces per-atom energies with {kind!r}: not a local sum, cannot be staged")
    if str(reduce.field) != ENERGY_FIELD or str(reduce.out_field) != "total_energy":
        raise UnsupportedModelError(f"module {reduce_name!r} sums {reduce.field!r} into {reduce.out_field!r}, not atomic_energy into total_energy")
    body = children[:-1]
    pair = [class_name(m) for _, m in body if class_name(m) in PAIR_POTENTIALS]

    if any(class_name(m) == "Allegro_Module" for _, m in body):
        for name, module in body:
            _check_allegro_child(name, module)
        reduces = [i for i, (_, m) in enumerate(body) if class_name(m) == "EdgewiseReduce"]
        if len(reduces) != 1 or not any(class_name(m) == "Allegro_Module" for _, m in body[: reduces[0]]):
            raise UnsupportedModelError(
                "the Allegro model does not have exactly one EdgewiseReduce after its Allegro_Module: unsupported layout"
            )
        at = reduces[0]
        for name, module in body[at + 1:]:
            if class_name(module) not in READOUT_MODULES:
                raise UnsupportedModelError(
                    f"unsupported module {name!r} ({class_name(module)}) after the Allegro EdgewiseReduce: "
                    "kim-gnn cannot prove it local, so it will not convert it"
                )
        return "Allegro", [], [m for _, m in body[:at]], [body[at][1]], [m for _, m in body[at + 1:]], pair

    node, edge, layers, readout = [], [], [], []
    for name, module in body:
        kind = class_name(module)
        if kind == "ConvNetLayer":
            if readout:
                raise UnsupportedModelError(f"layer {name!r} comes after the readout: unsupported layout")
            _check_convnet(name, module)
            layers.append(module)
        elif not layers and kind in NODE_MODULES:
            _check_node_embed(name, module)
            node.append(module)
        elif not layers and kind in EDGE_MODULES:
            edge.append(module)
        elif layers and kind in READOUT_MODULES:
            readout.append(module)
        else:
            raise refuse_module(name, kind, bool(layers))
    if not layers:
        raise UnsupportedModelError("the model has neither message-passing layers (ConvNetLayer) nor an Allegro module")
    if not node:
        raise UnsupportedModelError("the model has no NodeTypeEmbed type embedding")
    return "NequIP", node, edge, layers, readout, pair
