"""Recognise a nequip >= 0.7 model (NequIP GNN or Allegro) and rewrite it
as a staged KIM model.

Accepted: ``.nequip.zip`` (nequip-package), training ``.ckpt``, compiled
TorchScript ``.nequip.pth`` and in-memory eager ``GraphModel``s. The module
tree is checked against what nequip's and allegro's model builders make,
and anything else is refused by name:

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

One module (about 650 lines) on purpose: the accepted module trees of NequIP
GNN and Allegro above are checked in the order listed, each refusal next to
its check, and the layers' receiver-only forms are chosen here per module
class; loading the file formats is load.py, the staged loop the family's
graph_stages.py. Splitting NequIP from Allegro is the next step (issue 19).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch

from ... import contract
from ..._version import __version__
from ...contract import StagedModelSpec
from ...errors import KimGnnError, UnsupportedModelError, first_line, warn_not_applied
from . import load
from .staged import (AllegroLayer, ReceiverAllegro, ReceiverEdgewiseReduce, ReceiverLayer, StagedNequIPModern,
                     WholeLayer)

ARCHITECTURE = "nequip-modern"

#: Inputs a local model may read (GraphModel's standard fields); anything
#: else (total charge, spin, external fields) is per-structure data.
LOCAL_INPUT_FIELDS = {
    "pos", "edge_index", "edge_transpose_perm", "edge_cell_shift", "edge_vectors", "cell", "batch",
    "num_atoms", "atom_types", "lmp_mliap_data", "num_local_ghost_atoms",
}
NODE_MODULES = ("NodeTypeEmbed",)
EDGE_MODULES = ("SphericalHarmonicEdgeAttrs", "EdgeLengthNormalizer", "BesselEdgeLengthEncoding", "ApplyFactor")
PAIR_POTENTIALS = ("ZBL", "LennardJones", "SimpleLennardJones")
READOUT_MODULES = ("ScalarMLP", "PerTypeScaleShift", "AddRadialCutoffToData") + PAIR_POTENTIALS
ALLEGRO_MODULES = (
    "EdgeLengthNormalizer", "BesselEdgeLengthEncoding", "ProductTypeEmbedding", "TwoBodySplineScalarEmbed",
    "ScalarMLP", "TwoBodySphericalHarmonicTensorEmbed", "Allegro_Module", "EdgewiseReduce",
    "PerTypeScaleShift", "AddRadialCutoffToData",
) + PAIR_POTENTIALS
ENERGY_FIELD = "atomic_energy"
SCALAR_TYPE_CODES = {6: torch.float32, 7: torch.float64}

Source = Union[str, "os.PathLike[str]", torch.nn.Module]


@dataclass
class ModernModelInfo:
    source_file: str
    sha256: str
    artifact: str  # package | checkpoint | compiled | in-memory
    model: str  # NequIP | Allegro
    nequip_version: str
    r_max: float
    type_names: List[str]
    species: List[str]
    type_map: Dict[str, str]  # element -> type name
    type_map_source: str
    num_layers: int
    model_dtype: torch.dtype
    per_edge_type_cutoff: str
    pair_potentials: List[str]
    num_parameters: int
    details: Dict[str, str] = field(default_factory=dict)

    @property
    def influence_distance(self) -> float:
        return self.r_max * self.num_layers


def class_name(module) -> str:
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


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
            where = "after" if layers else "before"
            raise UnsupportedModelError(
                f"unsupported module {name!r} ({kind}) {where} the message-passing layers: "
                "kim-gnn cannot prove it local, so it will not convert it"
            )
    if not layers:
        raise UnsupportedModelError("the model has neither message-passing layers (ConvNetLayer) nor an Allegro module")
    if not node:
        raise UnsupportedModelError("the model has no NodeTypeEmbed type embedding")
    return "NequIP", node, edge, layers, readout, pair


# --- species ---------------------------------------------------------------

def parse_type_map(type_map) -> Optional[Dict[str, str]]:
    """``{"C": "C_sp3", ...}`` or ``"C=C_sp3,H=H"`` -> dict (element -> type name)."""
    if type_map is None or type_map == "":
        return None
    if isinstance(type_map, dict):
        return {str(k): str(v) for k, v in type_map.items()}
    pairs = {}
    for item in str(type_map).replace(" ", ",").split(","):
        if not item:
            continue
        if "=" not in item:
            raise KimGnnError(f"--type-map entry {item!r} is not ELEMENT=TYPE (e.g. C=C_sp3,H=H)")
        k, v = item.split("=", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def _zbl_elements(func, type_names: List[str]) -> Optional[List[str]]:
    """The element of each type as the model's own ZBL term knows it."""
    from ase.data import chemical_symbols

    for _, module in func.named_children():
        if class_name(module) == "ZBL":
            z = [int(round(float(x))) for x in module.atomic_numbers.reshape(-1).tolist()]
            if len(z) == len(type_names) and all(0 < k < len(chemical_symbols) for k in z):
                return [chemical_symbols[k] for k in z]
    return None


def choose_type_map(type_names: List[str], given, trained: Dict[str, str], zbl: Optional[List[str]]) -> Tuple[Dict[str, str], str]:
    """element -> type name, and where it came from."""
    from ase.data import chemical_symbols

    valid = set(chemical_symbols[1:])
    # a training config may hold unresolved interpolations or other types: keep what applies
    trained = {e: t for e, t in (trained or {}).items() if e in valid and t in type_names}
    given_map = parse_type_map(given)
    if given_map:
        mapping, source = given_map, "given"
    elif trained:
        mapping, source = dict(trained), "training config"
    elif all(t in valid for t in type_names):
        mapping, source = {t: t for t in type_names}, "type names"
    elif zbl is not None:
        by_element: Dict[str, List[str]] = {}
        for t, e in zip(type_names, zbl):
            by_element.setdefault(e, []).append(t)
        ambiguous = {e: ts for e, ts in by_element.items() if len(ts) > 1}
        if ambiguous:
            choices = "; ".join(f"{e}: {' or '.join(ts)}" for e, ts in ambiguous.items())
            raise UnsupportedModelError(
                f"several of the model's types stand for one element ({choices}); KIM species are elements, "
                "so say which type each element uses with --type-map (e.g. "
                + ",".join(f"{e}={ts[0]}" for e, ts in by_element.items()) + ")"
            )
        mapping, source = {e: ts[0] for e, ts in by_element.items()}, "ZBL chemical species"
    else:
        raise UnsupportedModelError(
            f"the model's type names ({' '.join(type_names)}) are not chemical symbols and the model says nothing "
            "about their elements; give the element of each type with --type-map ELEMENT=TYPE,... "
            "(Python: type_map={'C': 'C_sp3', ...})"
        )
    for element, type_name in mapping.items():
        if element not in valid:
            raise KimGnnError(f"type map: {element!r} is not a chemical symbol")
        if type_name not in type_names:
            raise KimGnnError(f"type map: {element}={type_name}, but the model's types are {' '.join(type_names)}")
    return mapping, source


def _species_order(mapping: Dict[str, str], type_names: List[str]) -> List[str]:
    """KIM species in the order of the model's types they map to."""
    return sorted(mapping, key=lambda e: (type_names.index(mapping[e]), e))


# --- loading -----------------------------------------------------------------

def _load(source: Source):
    """(graph model, artifact kind, metadata, source file, sha256, training species map)."""
    if isinstance(source, torch.nn.Module):
        if not is_modern_module(source):
            raise UnsupportedModelError(
                f"an in-memory {type(source).__name__} is not a nequip >= 0.7 GraphModel"
            )
        metadata = {}
        if not isinstance(source, torch.jit.ScriptModule):
            try:
                metadata = dict(source.metadata)
            except Exception:
                metadata = {}
        return source, "in-memory", metadata, "", "", {}
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise KimGnnError(f"no such file: {path}")
    model, kind, metadata = load.load_any(path)
    trained: Dict[str, str] = {}
    if kind == "package":
        trained = load.trained_species_map(load.package_config(path))
    elif kind == "checkpoint":
        trained = load.trained_species_map(load.checkpoint_info(path))
    return model, kind, metadata, os.path.basename(path), contract.file_sha256(path), trained


def _type_names(graph_model, metadata: Dict[str, str]) -> List[str]:
    names = str(metadata.get("type_names", "") or "").split()
    if not names:
        names = [str(t) for t in (getattr(graph_model, "type_names", None) or [])]
    if not names:
        raise UnsupportedModelError("the model carries no type_names")
    return names


def _r_max(graph_model, metadata: Dict[str, str], func) -> float:
    value = metadata.get("r_max")
    if value:
        return float(value)
    for _, module in func.named_modules() if not isinstance(func, torch.jit.ScriptModule) else func.named_children():
        if class_name(module) == "EdgeLengthNormalizer":
            return float(module.r_max)
    raise UnsupportedModelError("cannot tell the model's cutoff r_max (no metadata, no EdgeLengthNormalizer)")


def _nequip_version(kind: str) -> str:
    version = load.nequip_version() or ""
    if kind == "compiled" and not load.is_modern_version(version):
        return ">=0.7"
    return version


def _inspect(source: Source, type_map=None):
    graph_model, kind, metadata, source_file, sha, trained = _load(source)
    func = _unwrap(graph_model)
    model_kind, node, edge, layers, readout, pair = split_network(func)
    type_names = _type_names(graph_model, metadata)
    mapping, map_source = choose_type_map(type_names, type_map, trained, _zbl_elements(func, type_names))
    species = _species_order(mapping, type_names)
    model_dtype = _model_dtype(graph_model, metadata)
    info = ModernModelInfo(
        source_file=source_file,
        sha256=sha,
        artifact=kind,
        model=model_kind,
        nequip_version=_nequip_version(kind),
        r_max=_r_max(graph_model, metadata, func),
        type_names=type_names,
        species=species,
        type_map=mapping,
        type_map_source=map_source,
        num_layers=max(1, len(layers)),
        model_dtype=model_dtype,
        per_edge_type_cutoff=str(metadata.get("per_edge_type_cutoff", "") or ""),
        pair_potentials=pair,
        num_parameters=sum(p.numel() for p in graph_model.parameters()),
    )
    return info, graph_model, (node, edge, layers, readout)


def inspect_nequip_modern(source: Source, type_map=None) -> ModernModelInfo:
    """What a nequip >= 0.7 model is, without converting it."""
    return _inspect(source, type_map)[0]


def format_type_map(mapping: Dict[str, str]) -> str:
    return ",".join(f"{e}={t}" for e, t in mapping.items())


def _compile_eager(staged: torch.nn.Module) -> torch.nn.Module:
    """e3nn's compiler scripts the eager e3nn/nequip submodules (fx code
    generated modules included) in place; the caller then scripts the rest."""
    try:
        from e3nn.util.jit import compile as e3nn_compile
    except ImportError as exc:
        raise KimGnnError(f"converting an eager nequip model needs e3nn 0.6 ({exc}); {load.MODERN_ENV_HINT}") from None
    import warnings

    with warnings.catch_warnings(), load.restore_torch_state():
        warnings.simplefilter("ignore")
        try:
            return e3nn_compile(staged)
        except Exception as exc:
            raise UnsupportedModelError(
                f"a module of the model could not be compiled to TorchScript ({type(exc).__name__}: {first_line(exc)})"
            ) from None


#: The parts of a ConvNetLayer(InteractionBlock) that ReceiverLayer calls itself
#: (``ghost_exchange`` is checked to be nequip's no-op and skipped).
CONV_PARTS = {"avg_num_neighbors_norm", "linear_1", "tp_scatter", "edge_mlp", "linear_2"}
CONV_OPTIONAL_PARTS = {"sc", "ghost_exchange"}
NONLINEARITIES = ("Gate", "NormActivation")
EDGEWISE_READOUT = ("AddRadialCutoffToData",) + PAIR_POTENTIALS


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


def convert_nequip_modern(source: Source, type_map=None, prune: bool = True, kernels: Optional[str] = None):
    """Convert a nequip >= 0.7 model (NequIP GNN or Allegro: ``.nequip.zip``,
    ``.ckpt``, compiled ``.nequip.pth`` or an in-memory ``GraphModel``) into a
    staged TorchScript model that follows the TorchML driver contract.

    ``type_map`` (element -> type name, or ``"C=C_sp3,H=H"``) says which of
    the model's types each KIM species (element) uses; by default the
    training data's map, else the type names themselves when they are
    chemical symbols, else the elements of the model's ZBL term.

    ``prune`` (default): the model computes only what reaches a contributing
    atom's energy (``kim_gnn/runtime``): NequIP layer i on the particles and
    edges of the plan, its node-wise work on its receivers only; Allegro on
    the edges whose center contributes. ``prune=False``: the identity plan
    (every layer on every particle of its graph).

    ``kernels``: ``"aten"`` (default) or ``"kim_gnn"``: the layers' gathers
    and sums over edges use the kim_gnn op library (``kim_gnn/kernels.py``).
    For Allegro that is the environment sums inside ``Allegro_Module`` and the
    final ``EdgewiseReduce``; the gathers of the environment by center inside
    allegro's tensor products stay aten (the spec says so, and a warning
    line). A layer whose parts differ from what ``ReceiverLayer`` /
    ``ReceiverAllegro`` know runs whole (pruned, aten), with a warning line.
    The spec records what was applied (``pruned``, ``kernels``,
    ``receiver_only_layers``, ``whole_layers``, ``kernels_not_applied``).
    """
    from ... import kernels as kernel_lib
    from ...runtime import StagedRuntime

    kernels = kernel_lib.check_choice(kernels, prune)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    load.refuse_aotinductor(str(source), load.artifact_kind(source) if isinstance(source, str) else None)
    info, graph_model, (node, edge, layers, readout) = _inspect(source, type_map)
    compiled_file = info.artifact == "compiled" or isinstance(graph_model, torch.jit.ScriptModule)
    if not compiled_file:
        # never touch the user's model: e3nn compiles in place
        node, edge, layers, readout = copy.deepcopy((node, edge, layers, readout))
    edge, wrapped, receiver_only, whole_reason = _wrap_layers(info.model, edge, layers, kernels)
    if whole_reason:
        warn_not_applied(f"receiver-only layers not applied to {len(layers) - receiver_only} of {len(layers)} "
                         f"layer(s): they run (partly) whole (pruned, but on every particle they see): {whole_reason}")
    on_kernels: List[str] = []
    not_on_kernels: List[str] = []
    if kernels != "aten":
        on_kernels, not_on_kernels = _kernel_parts(info.model, wrapped, info.pair_potentials)
    if not_on_kernels:
        warn_not_applied(f"--kernels kim_gnn not applied to {'; '.join(not_on_kernels)} of the {info.model} model: "
                         "those sums stay aten")
    kinds = [class_name(m) for m in readout]
    type_of_species = [info.type_names.index(info.type_map[e]) for e in info.species]
    staged = StagedNequIPModern(
        node, edge, wrapped, readout, type_of_species,
        runtime=StagedRuntime(len(wrapped), receiver_row=0, prune=bool(prune), kernels=kernels),
        readout_is_edgewise=[k in EDGEWISE_READOUT for k in kinds],
        readout_is_pair=[k in PAIR_POTENTIALS for k in kinds],
        energy_field=ENERGY_FIELD,
    )
    staged = staged.to("cpu").eval()
    for p in staged.parameters():
        p.requires_grad_(False)
    if not compiled_file:
        staged = _compile_eager(staged)
    spec = StagedModelSpec(
        species=info.species,
        cutoff=info.r_max,
        num_layers=info.num_layers,
        model_dtype=str(info.model_dtype).replace("torch.", ""),
        architecture=ARCHITECTURE,
        architecture_version=info.nequip_version,
        kim_gnn_version=__version__,
        source_file=info.source_file or f"<in-memory {info.model} GraphModel>",
        source_sha256=info.sha256,
        details={
            "model": info.model,
            "artifact": info.artifact,
            "type_names": " ".join(info.type_names),
            "type_map": format_type_map(info.type_map),
            "type_map_source": info.type_map_source,
            "per_edge_type_cutoff": info.per_edge_type_cutoff,
            "pair_potentials": " ".join(info.pair_potentials),
            "allegro_version": _allegro_version() if info.model == "Allegro" else "",
            "pruned": "true" if prune else "false",
            "kernels": "kim_gnn" if on_kernels else "aten",
            "kernels_applied": "; ".join(on_kernels) or "none",
            "receiver_only_layers": str(receiver_only),
            "whole_layers": str(len(layers) - receiver_only),
            **({"whole_layers_reason": whole_reason} if whole_reason else {}),
            **({"kernels_not_applied": "; ".join(not_on_kernels)} if not_on_kernels else {}),
        },
    )
    return contract.script_staged(staged, spec, f"nequip {info.model}")


def _allegro_version() -> str:
    try:
        from importlib.metadata import version

        return version("nequip-allegro")
    except Exception:
        return ""
