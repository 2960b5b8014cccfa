"""Which layers of a nequip >= 0.7 model run their node-wise work and sums
over edges on the receivers only (``ReceiverLayer``, ``ReceiverAllegro``,
``ReceiverEdgewiseReduce`` of ``staged.py``: where they reimplement exactly
the module's order of calls), which run whole (still pruned), and which
parts a ``--kernels kim_gnn`` model sums with the kernels."""

from __future__ import annotations

from typing import Dict, List, Tuple

from ..graph_stages import WholeLayer
from .network import class_name
from .staged import AllegroLayer, ReceiverAllegro, ReceiverEdgewiseReduce, ReceiverLayer

#: The parts of a ConvNetLayer(InteractionBlock) that ReceiverLayer calls itself
#: (``ghost_exchange`` is checked to be nequip's no-op and skipped).
CONV_PARTS = {"avg_num_neighbors_norm", "linear_1", "tp_scatter", "edge_mlp", "linear_2"}
CONV_OPTIONAL_PARTS = {"sc", "ghost_exchange"}
NONLINEARITIES = ("Gate", "NormActivation")


def _children(module) -> Dict[str, object]:
    return {name: child for name, child in module.named_children()}


def receiver_layer_reason(layer) -> str:
    """"" where ``ReceiverLayer`` reimplements exactly this layer's order of
    calls, else why not (the layer then runs whole, still pruned)."""
    parts = set(_children(layer))
    if parts != {"conv", "equivariant_nonlin"}:
        return f"ConvNetLayer parts {' '.join(sorted(parts))} are not conv + equivariant_nonlin"
    conv = _children(layer)["conv"]
    conv_parts = set(_children(conv))
    if not CONV_PARTS <= conv_parts <= CONV_PARTS | CONV_OPTIONAL_PARTS:
        return f"InteractionBlock parts {' '.join(sorted(conv_parts))} differ from nequip 0.19's"
    if set(_children(_children(conv)["tp_scatter"])) != {"tp"}:
        return "TensorProductScatter holds more than its tensor product"
    nonlin = class_name(_children(layer)["equivariant_nonlin"])
    if nonlin not in NONLINEARITIES:
        return f"nonlinearity {nonlin} is neither Gate nor NormActivation"
    return ""


def receiver_reduce_reason(reduce) -> str:
    """"" where ``ReceiverEdgewiseReduce`` reimplements this EdgewiseReduce."""
    if str(reduce.reduce) != "sum":
        return f"EdgewiseReduce reduces with {reduce.reduce!r}, not a sum"
    if set(_children(reduce)) != {"norm_module"}:
        return "EdgewiseReduce holds more than its avg_num_neighbors norm"
    return ""


def _kernel_parts(model: str, wrapped: list, pair_potentials: List[str]) -> Tuple[List[str], List[str]]:
    """(parts that sum and gather with the kim_gnn kernels, parts that stay
    aten) of a model converted with --kernels kim_gnn."""
    applied, not_applied = [], []
    if model == "Allegro":
        layer = wrapped[0]
        if isinstance(layer, AllegroLayer):
            applied.append("Allegro's environment sums")
            not_applied.append("the gathers of the environment by center inside Allegro's tensor products")
        else:
            not_applied.append("the Allegro module (runs whole)")
        reduce = layer.reduce if isinstance(layer, AllegroLayer) else layer
        (applied if isinstance(reduce, ReceiverEdgewiseReduce) else not_applied).append("EdgewiseReduce")
    else:
        on = [str(i + 1) for i, w in enumerate(wrapped) if isinstance(w, ReceiverLayer)]
        whole = [str(i + 1) for i, w in enumerate(wrapped) if not isinstance(w, ReceiverLayer)]
        if on:
            applied.append(f"layers {' '.join(on)}")
        if whole:
            not_applied.append(f"layer(s) {' '.join(whole)} (run whole, nequip's own scatter)")
    if pair_potentials:
        not_applied.append(f"pair potential {' '.join(pair_potentials)} (nequip's own scatter)")
    return applied, not_applied


ALLEGRO_PARTS = {"first_layer_env_embed_projection", "_env_weighter", "avg_num_neighbors_norm", "latents", "tps"}
ALLEGRO_ATTRIBUTES = ("num_layers", "num_scalar_features", "_n_scalar_outs", "tensor_basis_in_field",
                      "tensor_features_in_field", "scalar_in_field", "scalar_out_field")


def allegro_module_reason(module) -> str:
    """"" where ``ReceiverAllegro`` reimplements this Allegro_Module."""
    parts = set(_children(module))
    if parts != ALLEGRO_PARTS:
        return f"Allegro_Module parts {' '.join(sorted(parts))} differ from nequip-allegro 0.8's"
    missing = [name for name in ALLEGRO_ATTRIBUTES if not hasattr(module, name)]
    if missing or not hasattr(module._env_weighter, "weight_numel"):
        return f"Allegro_Module lacks {' '.join(missing) or '_env_weighter.weight_numel'}"
    sizes = (len(_children(module.latents)), len(_children(module.tps)), len(list(module._n_scalar_outs)))
    if not sizes[0] == sizes[1] == sizes[2] == int(module.num_layers):
        return "Allegro_Module's latents, tensor products and layer count disagree"
    return ""


def _wrap_layers(model: str, edge: list, layers: list, kernels: str):
    """(edge modules, staged layers, number of layers whose node-wise work and
    sums over edges run on the receivers only, why the others run whole)."""
    from ...runtime import make_aggregation

    if model == "Allegro":
        reduce = layers[0]
        reasons = [r for r in (receiver_reduce_reason(reduce),) if r]
        wrapped = WholeLayer(reduce, str(reduce.out_field)) if reasons else \
            ReceiverEdgewiseReduce(reduce, make_aggregation(kernels))
        at = [class_name(m) for m in edge].index("Allegro_Module")
        allegro_reason = allegro_module_reason(edge[at])
        if allegro_reason:
            reasons.append(allegro_reason)
        else:
            wrapped = AllegroLayer(ReceiverAllegro(edge[at], make_aggregation(kernels)), edge[at + 1:], wrapped)
            edge = edge[:at]
        return edge, [wrapped], 0 if reasons else 1, "; ".join(reasons)
    wrapped, reasons = [], []
    for layer in layers:
        reason = receiver_layer_reason(layer)
        wrapped.append(WholeLayer(layer) if reason else ReceiverLayer(layer, make_aggregation(kernels)))
        if reason:
            reasons.append(reason)
    return edge, wrapped, len(layers) - len(reasons), "; ".join(sorted(set(reasons)))
