"""Registration of the nequip >= 0.7 adapter (NequIP GNN and Allegro):
detect, convert, describe, original, examples. Cheap to import (no torch, no
nequip until a function runs)."""

from __future__ import annotations

import os
from typing import Dict

from ...adapters import KERNELS_HELP, Adapter, ExampleModel
from ..environments import MODERN_ENV_HINT

NAME = "nequip-modern"


def detect(path: str) -> bool:
    from .load import artifact_kind

    return artifact_kind(path) is not None


def detect_module(module) -> bool:
    from .network import is_modern_module

    return is_modern_module(module)


def convert(source, type_map=None, prune=True, kernels=None):
    from .convert import convert_nequip_modern

    return convert_nequip_modern(source, type_map=type_map, prune=prune, kernels=kernels)


def describe(path, type_map=None) -> Dict[str, object]:
    from . import load
    from .info import inspect_nequip_modern
    from .species import format_type_map

    kind = load.artifact_kind(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "in-memory"
    load.refuse_aotinductor(os.fspath(path), kind)
    info = inspect_nequip_modern(path, type_map=type_map)
    return {
        "architecture": NAME,
        "model": info.model,
        "framework": "nequip >= 0.7 (not a 0.5/0.6 deployed model)",
        "artifact": info.artifact,
        "version": info.nequip_version,
        "layers": info.num_layers,
        "cutoff": info.r_max,
        "influence_distance": info.influence_distance,
        "species": info.species,
        "type_names": info.type_names,
        "type_map": format_type_map(info.type_map) + f" (from {info.type_map_source})",
        "per_edge_type_cutoff": info.per_edge_type_cutoff or "none",
        "pair_potentials": " ".join(info.pair_potentials) or "none",
        "model_dtype": str(info.model_dtype).replace("torch.", ""),
        "parameters": info.num_parameters,
        "sha256": info.sha256,
    }


def original(source, spec=None):
    from .reference import NequIPModernOriginal

    return NequIPModernOriginal(source, spec)


def build_example(path: str, num_layers: int, model_dtype: str, architecture: str = "nequip") -> str:
    """Write a seeded random model as a ``.nequip.zip`` at ``path`` (its
    checkpoint next to it); the registry's ExampleModel.build signature."""
    from .example import save_checkpoint, save_package

    path = os.fspath(path)
    ckpt = save_checkpoint(path[: -len(".nequip.zip")] + ".ckpt" if path.endswith(".nequip.zip") else path + ".ckpt",
                           species=("Si",), architecture=architecture, num_layers=num_layers,
                           model_dtype=model_dtype)
    return save_package(ckpt, path)


def build_allegro_example(path: str, num_layers: int, model_dtype: str) -> str:
    return build_example(path, num_layers, model_dtype, architecture="allegro")


ADAPTER = Adapter(
    name=NAME,
    detect=detect,
    convert=convert,
    describe=describe,
    original=original,
    options={
        "type_map": "nequip >= 0.7 models: the model type each element (KIM species) uses, ELEMENT=TYPE,... "
                    "(default: the training data's map, else type names that are chemical symbols, else the "
                    "elements of the model's ZBL term)",
        "prune": "pruned staged execution (default True): NequIP layers on the particles and edges that reach a "
                 "contributing atom, Allegro on the edges of contributing centers; False emits the unpruned model",
        "kernels": KERNELS_HELP + "; Allegro: its final EdgewiseReduce only",
    },
    detect_module=detect_module,
    package="nequip",
    import_names=("nequip", "allegro", "e3nn"),
    environment_hint=MODERN_ENV_HINT,
    summary="nequip >= 0.7 NequIP / Allegro .nequip.zip, .ckpt, TorchScript .nequip.pth",
    exports={"convert_nequip_modern": "kim_gnn.nequip.modern.convert:convert_nequip_modern"},
    example={
        NAME: ExampleModel(build=build_example, file_name="example.nequip.zip",
                           item_name="Si_NequIP019_Example__MO_000000000000_000",
                           description="a seeded random nequip 0.19 NequIP model (.ckpt -> nequip-package)"),
        "allegro": ExampleModel(build=build_allegro_example, file_name="example.nequip.zip",
                                item_name="Si_Allegro_Example__MO_000000000000_000",
                                description="a seeded random nequip-allegro 0.8 Allegro model "
                                            "(.ckpt -> nequip-package)"),
    },
    priority=15,
)
