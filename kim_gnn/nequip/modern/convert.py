"""Rewrite a nequip >= 0.7 model (NequIP GNN or Allegro) as a staged KIM
model: ``convert_nequip_modern``.

Accepted: ``.nequip.zip`` (nequip-package), training ``.ckpt``, compiled
TorchScript ``.nequip.pth`` and in-memory eager ``GraphModel``s. The parts,
in the order a conversion uses them: loading the file formats is
``load.py``; the accepted module trees and their checks ``network.py``;
the element -> type map ``species.py``; what the model is (``ModernModelInfo``)
``info.py``; the layers' receiver-only forms and the kernels' reach
``receivers.py``; the staged module ``staged.py`` on the family's loop
(``kim_gnn/nequip/graph_stages.py``).
"""

from __future__ import annotations

import copy
import os
from typing import List, Optional

import torch

from ... import contract
from ..._version import __version__
from ...contract import StagedModelSpec
from ...errors import KimGnnError, UnsupportedModelError, first_line, warn_not_applied
from ...torchscript_graphs import without_whole_dimension_slices
from . import load
from .info import Source, _inspect
from .network import EDGEWISE_READOUT, ENERGY_FIELD, PAIR_POTENTIALS, class_name
from .receivers import _kernel_parts, _wrap_layers
from .species import format_type_map
from .staged import StagedNequIPModern

ARCHITECTURE = "nequip-modern"


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
    # the staged module's own copies of the scripted parts, without TorchScript's whole-dimension slices
    staged = without_whole_dimension_slices(staged)
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
