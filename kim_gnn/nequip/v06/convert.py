"""Recognise a NequIP 0.5.x / 0.6.x ``deployed.pth`` and rewrite it as a
staged KIM model.

The adapter accepts exactly the module tree that ``nequip-deploy build``
writes for the default energy models and refuses anything else by name:

    GraphModel (0.6; absent in 0.5)
      RescaleOutput (zero or more; global scale, local shifts only)
        StressOutput | GradientOutput | ForceOutput
          SequentialGraphNetwork:
            OneHotAtomEncoding, SphericalHarmonicEdgeAttrs,
            RadialBasisEdgeEncoding, AtomwiseLinear,
            ConvNetLayer(InteractionBlock) x L,
            AtomwiseLinear x 2, PerSpeciesScaleShift?,
            ZBL | LennardJones | SimpleLennardJones?,
            AtomwiseReduce(sum)

One module (about 470 lines) on purpose: the accepted module tree above is
checked in the order it is listed, and each refusal names its module next to
the check that makes it; the staged form itself lives in staged.py /
graph_stages.py and the last layer in scalar_last.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ... import contract
from ..._version import __version__
from ...contract import StagedModelSpec
from ...archives import load_torchscript
from ...errors import KimGnnError, UnsupportedModelError, first_line
from ...torchscript_graphs import without_whole_dimension_slices
from ..graph_stages import WholeLayer
from ..module_tree import PAIR_POTENTIALS, SCALAR_TYPE_CODES, refuse_module
from ..module_tree import class_name as _original_name
from .scalar_last import ScalarOnlyLastLayer
from .staged import ReceiverLayer, StagedNequIP

METADATA_KEYS = (
    "nequip_version", "torch_version", "e3nn_version", "r_max", "n_species", "type_names",
    "default_dtype", "model_dtype", "allow_tf32", "_jit_bailout_depth", "_jit_fusion_strategy", "config",
)

GRADIENT_WRAPPERS = ("StressOutput", "GradientOutput", "ForceOutput")
NODE_ENCODERS = ("OneHotAtomEncoding", "AtomwiseLinear")
EDGE_ENCODERS = ("SphericalHarmonicEdgeAttrs", "RadialBasisEdgeEncoding")
READOUT_MODULES = ("AtomwiseLinear", "PerSpeciesScaleShift")
ENERGY_KEYS = ("total_energy", "atomic_energy")
# Inputs a local model may read; anything else (charges, spins, fields) is per-structure data.
LOCAL_INPUT_FIELDS = {"pos", "edge_index", "edge_cell_shift", "cell", "batch", "ptr", "atom_types"}
SUPPORTED_VERSIONS = ("0.5.", "0.6.")


@dataclass
class NequIPModelInfo:
    path: str
    sha256: str
    metadata: Dict[str, str]
    nequip_version: str
    r_max: float
    type_names: List[str]
    species: List[str]
    num_layers: int
    model_dtype: torch.dtype
    default_dtype: torch.dtype
    num_parameters: int
    config: Dict[str, object] = field(default_factory=dict)

    @property
    def influence_distance(self) -> float:
        return self.r_max * self.num_layers


def _dtype(name: str, default: torch.dtype) -> torch.dtype:
    name = (name or "").strip().replace("torch.", "")
    if not name:
        return default
    if name not in ("float32", "float64"):
        raise UnsupportedModelError(f"unsupported dtype {name!r} in the model metadata")
    return getattr(torch, name)


def _parse_config(text: str) -> Dict[str, object]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # nequip dumps Python tuples and objects with tags; their values are enough.
    def _any(loader, suffix, node):
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        return loader.construct_scalar(node)

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", _any)
    try:
        loaded = yaml.load(text, Loader=_Loader) if text else {}
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def load_deployed(path) -> Tuple[torch.jit.ScriptModule, Dict[str, str]]:
    """Load a ``deployed.pth`` with its metadata, or fail with a clear message."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KimGnnError(f"no such file: {path}")
    module, metadata = load_torchscript(path, METADATA_KEYS)
    if not metadata.get("nequip_version"):
        raise UnsupportedModelError(f"{path} is TorchScript but not a NequIP deployed model (no nequip_version metadata)")
    return module, metadata


def _chemical_species(type_names: List[str], config: Dict[str, object]) -> List[str]:
    """KIM species are chemical symbols. NequIP type names usually are; when
    they are not, the config's type -> symbol map says what they stand for."""
    from ase.data import chemical_symbols

    valid = set(chemical_symbols[1:])
    if all(t in valid for t in type_names):
        return list(type_names)
    mapping = config.get("type_to_chemical_symbol") or {}
    if isinstance(mapping, dict) and mapping:
        symbols = [str(mapping.get(i, mapping.get(str(i), ""))) for i in range(len(type_names))]
        if all(s in valid for s in symbols) and len(set(symbols)) == len(symbols):
            return symbols
    raise UnsupportedModelError(
        f"model type names {' '.join(type_names)} are not distinct chemical symbols, and its config maps them to "
        "no distinct elements; KIM identifies species by chemical symbol"
    )


def _child(module, name: str):
    children = dict(module.named_children())
    if name not in children:
        raise UnsupportedModelError(
            f"module {_original_name(module)!r} has no submodule {name!r}: the file is frozen or not a standard "
            "NequIP model; deploy it unfrozen with `nequip-deploy build`"
        )
    return children[name]


def _unwrap(module) -> Tuple[object, List[object], Optional[torch.dtype]]:
    """GraphModel -> RescaleOutput* -> gradient wrapper -> SequentialGraphNetwork."""
    model_dtype: Optional[torch.dtype] = None
    outer = module
    if _original_name(outer) == "GraphModel":
        fields = set(getattr(outer, "model_input_fields", []))
        extra = sorted(fields - LOCAL_INPUT_FIELDS)
        if extra:
            raise UnsupportedModelError(
                f"GraphModel takes per-structure input field(s) {', '.join(extra)}: not a local model, cannot be staged"
            )
        code = getattr(outer, "model_dtype", None)
        # TorchScript keeps a dtype attribute as its ScalarType code
        model_dtype = code if isinstance(code, torch.dtype) else SCALAR_TYPE_CODES.get(code)
        outer = _child(outer, "model")
    rescales = []
    while _original_name(outer) == "RescaleOutput":
        rescales.append(outer)
        outer = _child(outer, "model")
    if _original_name(outer) not in GRADIENT_WRAPPERS:
        raise UnsupportedModelError(
            f"unsupported module {_original_name(outer)!r} where NequIP puts its force/stress output "
            f"(expected one of {', '.join(GRADIENT_WRAPPERS)})"
        )
    func = _child(outer, "func")
    if _original_name(func) != "SequentialGraphNetwork":
        raise UnsupportedModelError(f"unsupported energy model {_original_name(func)!r} (expected SequentialGraphNetwork)")
    return func, rescales[::-1], model_dtype


def _rescale_factors(rescales, energy_field: str) -> Tuple[List[float], List[float]]:
    scales, shifts = [], []
    for r in rescales:
        scale_keys = set(r.scale_keys) if r.has_scale else set()
        shift_keys = set(r.shift_keys) if r.has_shift else set()
        if "total_energy" in shift_keys:
            raise UnsupportedModelError(
                "RescaleOutput shifts total_energy by a global per-structure constant (global_rescale_shift): "
                "not size-extensive and not local, cannot be staged; retrain with per_species_rescale_shifts instead"
            )
        energy_scaled = {k for k in scale_keys if k in ENERGY_KEYS or k == energy_field}
        if energy_scaled and not {"total_energy", energy_field} <= scale_keys:
            raise UnsupportedModelError(
                f"RescaleOutput scales {sorted(energy_scaled)} but not both total_energy and {energy_field}: "
                "per-atom energies would not sum to the total"
            )
        if energy_scaled and "forces" not in scale_keys:
            raise UnsupportedModelError("RescaleOutput scales the energy but not the forces: forces are not -dE/dx")
        other_shifts = shift_keys - {energy_field}
        if other_shifts:
            raise UnsupportedModelError(f"RescaleOutput shifts {sorted(other_shifts)}: not supported")
        scales.append(float(r.scale_by.item()) if energy_scaled else 1.0)
        shifts.append(float(r.shift_by.item()) if energy_field in shift_keys else 0.0)
    return scales, shifts


def _split_network(func) -> Tuple[list, list, list, list, str, List[str]]:
    """Classify the SequentialGraphNetwork's children; refuse the unknown."""
    node_encoders, edge_encoders, layers, readout = [], [], [], []
    pair_styles: List[str] = []
    children = list(func.named_children())
    if not children or _original_name(children[-1][1]) != "AtomwiseReduce":
        raise UnsupportedModelError("the energy model does not end in an AtomwiseReduce energy sum")
    reduce_name, reduce = children[-1]
    if reduce.reduce != "sum" or float(reduce.constant) != 1.0:
        kind = "normalized_sum" if reduce.reduce == "sum" else reduce.reduce
        raise UnsupportedModelError(
            f"module {reduce_name!r} reduces per-atom energies with {kind!r}: not a local sum, cannot be staged"
        )
    if reduce.out_field != "total_energy":
        raise UnsupportedModelError(f"module {reduce_name!r} writes {reduce.out_field!r}, not total_energy")
    energy_field = reduce.field

    for name, child in children[:-1]:
        kind = _original_name(child)
        if kind == "ConvNetLayer":
            conv_kind = _original_name(child.conv)
            if conv_kind != "InteractionBlock":
                raise UnsupportedModelError(f"layer {name!r} uses convolution {conv_kind!r}; only InteractionBlock is supported")
            if readout:
                raise UnsupportedModelError(f"layer {name!r} comes after the readout: unsupported layout")
            layers.append(child)
        elif not layers and kind in NODE_ENCODERS:
            node_encoders.append(child)
        elif not layers and kind in EDGE_ENCODERS:
            edge_encoders.append(child)
        elif layers and kind in READOUT_MODULES:
            readout.append(child)
        elif layers and kind in PAIR_POTENTIALS:
            readout.append(child)
            pair_styles.append(kind)
        else:
            raise refuse_module(name, kind, bool(layers))
    if not layers:
        raise UnsupportedModelError("the model has no message-passing (ConvNetLayer) layers")
    if not edge_encoders:
        raise UnsupportedModelError("the model has no edge encoders (spherical harmonics / radial basis)")
    return node_encoders, edge_encoders, layers, readout, energy_field, pair_styles


#: The parts of a ConvNetLayer(InteractionBlock) that ReceiverLayer calls itself.
CONV_PARTS = {"linear_1", "fc", "tp", "linear_2"}


def receiver_layer_reason(layer) -> str:
    """"" where the layer has exactly the parts ``ReceiverLayer``
    reimplements the order of; else why not (the layer then runs whole:
    still pruned, only not on receivers alone)."""
    layer_parts = {name for name, _ in layer.named_children()}
    conv_parts = {name for name, _ in layer.conv.named_children()}
    if layer_parts != {"conv", "equivariant_nonlin"}:
        return f"ConvNetLayer parts {' '.join(sorted(layer_parts))} differ from conv + equivariant_nonlin"
    if not CONV_PARTS <= conv_parts <= CONV_PARTS | {"sc"}:
        return f"InteractionBlock parts {' '.join(sorted(conv_parts))} differ from linear_1 fc tp linear_2 (sc)"
    nonlin = _original_name(layer.equivariant_nonlin)
    if nonlin not in ("Gate", "Activation"):
        return f"nonlinearity {nonlin} is neither Gate nor Activation"
    return ""


def _receiver_layer_applies(layer) -> bool:
    return not receiver_layer_reason(layer)


def inspect_nequip(path) -> NequIPModelInfo:
    """Read what a NequIP deployed model is, without converting it."""
    module, metadata = load_deployed(path)
    return _info(os.fspath(path), module, metadata)


def _info(path: str, module, metadata: Dict[str, str]) -> NequIPModelInfo:
    version = metadata["nequip_version"]
    if not version.startswith(SUPPORTED_VERSIONS):
        raise UnsupportedModelError(
            f"{path} was deployed with nequip {version}; this adapter supports nequip 0.5.x and 0.6.x deployed models"
        )
    config = _parse_config(metadata.get("config", ""))
    type_names = metadata.get("type_names", "").split()
    if not type_names:
        raise UnsupportedModelError(f"{path} has no type_names metadata")
    try:
        r_max = float(metadata["r_max"])
    except (KeyError, ValueError):
        raise UnsupportedModelError(f"{path} has no valid r_max metadata") from None
    default_dtype = _dtype(metadata.get("default_dtype", ""), torch.float64)
    func, _, graph_dtype = _unwrap(module)
    model_dtype = graph_dtype or _dtype(metadata.get("model_dtype", ""), default_dtype)
    num_layers = sum(1 for _, c in func.named_children() if _original_name(c) == "ConvNetLayer")
    return NequIPModelInfo(
        path=path,
        sha256=contract.file_sha256(path),
        metadata=metadata,
        nequip_version=version,
        r_max=r_max,
        type_names=type_names,
        species=_chemical_species(type_names, config),
        num_layers=num_layers,
        model_dtype=model_dtype,
        default_dtype=default_dtype,
        num_parameters=sum(p.numel() for p in module.parameters()),
        config=config,
    )


def _scalar_only_last_layer(info: NequIPModelInfo, func, wrapped: list, aggregation) -> str:
    """Replace the last wrapped layer by its scalar-only form
    (``scalar_last.py``) where that is proven exact; returns "" or the
    reason it is not used."""
    from . import scalar_last

    names = [name for name, _ in func.named_children()]
    kinds = [_original_name(child) for _, child in func.named_children()]
    last = max(i for i, kind in enumerate(kinds) if kind == "ConvNetLayer")
    if not isinstance(wrapped[-1], ReceiverLayer):
        return "the last layer is not a plain ConvNetLayer(InteractionBlock) with a gate"
    try:
        wrapped[-1] = scalar_last.build(info, func, names[last], names[last + 1], aggregation)
    except scalar_last.NotApplicable as exc:
        return str(exc)
    except Exception as exc:  # a model layout the builder did not foresee: the whole layer is always exact
        return f"the scalar-only last layer could not be built ({type(exc).__name__}: {first_line(exc)})"
    return ""


def _layers_list(indices: List[int]) -> str:
    return " ".join(str(i + 1) for i in indices)


def applied_optimisations(wrapped: list, prune: bool, kernels: str, scalar_reason: str, whole_reason: str,
                          pair_styles: List[str]) -> Tuple[Dict[str, str], List[str]]:
    """(the spec's details on what was applied, one warning line per
    optimisation asked for but not applied). Layers are numbered from 1."""
    receiver = [i for i, w in enumerate(wrapped) if isinstance(w, (ReceiverLayer, ScalarOnlyLastLayer))]
    whole = [i for i, w in enumerate(wrapped) if isinstance(w, WholeLayer)]
    details = {
        "pruned": "true" if prune else "false",
        "receiver_only_layers": str(len(receiver)),
        "whole_layers": str(len(whole)),
        "scalar_only_last_layer": "false" if scalar_reason else "true",
    }
    warnings_out: List[str] = []
    if prune and whole:
        details["whole_layers_reason"] = whole_reason
        warnings_out.append(f"receiver-only layers not applied to layer(s) {_layers_list(whole)} of {len(wrapped)} "
                            f"(they run whole: pruned, but their node-wise work on every particle they see): "
                            f"{whole_reason}")
    if scalar_reason:
        details["scalar_only_last_layer_reason"] = scalar_reason
        if prune and scalar_reason != "not requested":
            warnings_out.append(f"scalar-only last layer not applied (the whole last layer runs): {scalar_reason}")
    # The kim_gnn kernels sum and gather where kim-gnn's own layers do; a
    # whole layer and nequip's pair potentials sum with nequip's own scatter.
    on_kernels = receiver if kernels == "kim_gnn" else []
    details["kernels"] = "kim_gnn" if on_kernels else "aten"
    details["kernels_applied"] = f"layers {_layers_list(on_kernels)}" if on_kernels else "none"
    if kernels == "kim_gnn":
        missing = []
        if whole:
            missing.append(f"layer(s) {_layers_list(whole)} (run whole, nequip's own scatter)")
        if pair_styles:
            missing.append(f"pair potential {' '.join(pair_styles)} (nequip's own scatter)")
        if missing:
            details["kernels_not_applied"] = "; ".join(missing)
            warnings_out.append(f"--kernels kim_gnn not applied to {'; '.join(missing)}: those sums stay aten")
    return details, warnings_out


def convert_nequip(path, prune: bool = True, kernels: Optional[str] = None,
                   scalar_only_last_layer: bool = True) -> torch.jit.ScriptModule:
    """Convert a NequIP 0.5/0.6 ``deployed.pth`` into a staged TorchScript
    model that follows the TorchML driver contract.

    Returns the scripted module with its spec (``ConvertedModel``);
    ``staged.save("model.pt")`` writes it with its provenance (``kim_gnn/*``
    extra files). Raises ``UnsupportedModelError``
    naming the module for anything that cannot be converted exactly.

    ``prune`` (default): the model computes only what reaches a contributing
    atom's energy (``kim_gnn/runtime``); ``prune=False`` emits the
    unpruned staged model (every layer on every particle of its graph).

    ``kernels``: ``"aten"`` (default: aten ops only, runs with any torch) or
    ``"kim_gnn"``: the pruned layers gather and sum with the kim_gnn op
    library (``kim_gnn/kernels.py``; deterministic CSR sums), which must be
    built, and loaded in any process that runs the model.

    ``scalar_only_last_layer`` (default, pruned models only): where the
    readout reads only scalar channels of the last layer, the last layer
    computes only those (``scalar_last.py``).

    Every optimisation asked for that cannot be applied exactly (a layer
    whose parts ``ReceiverLayer`` does not know runs whole; the whole last
    layer where the scalar-only one cannot be proven exact; aten sums where
    the kernels do not reach) is kept in its slower exact form with one
    ``OptimisationNotApplied`` warning line saying which and why, and the
    spec's details record what was applied: ``pruned``,
    ``receiver_only_layers`` / ``whole_layers`` (+ ``whole_layers_reason``),
    ``scalar_only_last_layer`` (+ ``_reason``), ``kernels`` (``kim_gnn`` when
    the model calls the op library), ``kernels_applied`` (which layers) and
    ``kernels_not_applied``.
    """
    from ... import kernels as kernel_lib
    from ...errors import warn_not_applied
    from ...runtime import StagedRuntime, make_aggregation

    kernels = kernel_lib.check_choice(kernels, prune)
    path = os.fspath(path)
    module, metadata = load_deployed(path)
    info = _info(path, module, metadata)
    func, rescales, _ = _unwrap(module)
    node_encoders, edge_encoders, layers, readout, energy_field, pair_styles = _split_network(func)
    scales, shifts = _rescale_factors(rescales, energy_field)
    whole_reasons = [receiver_layer_reason(layer) if prune else "" for layer in layers]
    wrapped = [ReceiverLayer(layer, make_aggregation(kernels)) if prune and not reason else WholeLayer(layer)
               for layer, reason in zip(layers, whole_reasons)]
    if not prune:
        scalar_reason = "unpruned model"
    elif not scalar_only_last_layer:
        scalar_reason = "not requested"
    else:
        scalar_reason = _scalar_only_last_layer(info, func, wrapped, make_aggregation(kernels))
    applied, not_applied = applied_optimisations(
        wrapped, bool(prune), kernels, scalar_reason, "; ".join(sorted({r for r in whole_reasons if r})), pair_styles)
    kernels = applied["kernels"]

    staged = StagedNequIP(
        node_encoders=node_encoders,
        edge_encoders=edge_encoders,
        layers=wrapped,
        readout=readout,
        energy_field=energy_field,
        rescale_scales=scales,
        rescale_shifts=shifts,
        model_dtype=info.model_dtype,
        runtime=StagedRuntime(len(wrapped), receiver_row=0, prune=bool(prune), kernels=kernels),
        readout_is_pair=[_original_name(m) in PAIR_POTENTIALS for m in readout],
    )
    # the staged module's own copies of the loaded parts, without TorchScript's whole-dimension slices
    staged = without_whole_dimension_slices(staged)
    spec = StagedModelSpec(
        species=info.species,
        cutoff=info.r_max,
        num_layers=info.num_layers,
        model_dtype=str(info.model_dtype).replace("torch.", ""),
        architecture="nequip",
        architecture_version=info.nequip_version,
        kim_gnn_version=__version__,
        source_file=os.path.basename(path),
        source_sha256=info.sha256,
        details={
            "type_names": " ".join(info.type_names),
            "pair_potentials": " ".join(pair_styles),
            "global_scales": " ".join(repr(s) for s in scales),
            "torch_version": metadata.get("torch_version", ""),
            "e3nn_version": metadata.get("e3nn_version", ""),
            **applied,
        },
    )
    staged = contract.script_staged(staged, spec, "NequIP")
    for line in not_applied:
        warn_not_applied(line)
    return staged
