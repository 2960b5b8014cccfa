"""Build small seeded nequip >= 0.7 (NequIP GNN and Allegro) models with
random weights, and save them in each artifact format a user has.

Needs nequip 0.19 (and nequip-allegro for Allegro) installed: the modern
environment (``scripts/setup_modern.sh``). Used by the tests and by
``kim-gnn example --architecture nequip-modern``. Models are built from
Python with nequip's own model builders (no training data); the weights
nequip initialises are then perturbed with a seeded generator so that
every parameter matters, and per-type scales/shifts are non-trivial.

* ``build_model(...)``            -> in-memory eager ``GraphModel``
* ``save_checkpoint(...)``        -> ``.ckpt`` as Lightning writes it in training
* ``save_package(ckpt, ...)``     -> ``.nequip.zip`` through ``nequip-package build``
* ``save_compiled(model, ...)``   -> ``.nequip.pth`` through nequip's ``save_torchscript_model``
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Sequence

from .load import _quiet_logging, import_nequip, restore_torch_state

DEFAULT_SPECIES = ("Si",)


def model_config(
    species: Sequence[str] = DEFAULT_SPECIES,
    architecture: str = "nequip",
    num_layers: int = 2,
    l_max: int = 1,
    r_max: float = 4.0,
    num_features: int = 8,
    model_dtype: str = "float64",
    seed: int = 0,
    avg_num_neighbors=None,
    per_edge_type_cutoff: Optional[Dict] = None,
    pair_potential: Optional[str] = None,
    type_names: Optional[Sequence[str]] = None,
    chemical_species: Optional[Sequence[str]] = None,
    scalar_embed: str = "bessel",
) -> dict:
    """The model section of a nequip config (``_target_`` + builder kwargs).

    ``avg_num_neighbors``: a float, a dict type -> float (per-type), or None
    (a default per type). ``pair_potential``: None, ``"ZBL"`` or ``"LJ"``.
    ``type_names`` default to ``species``; ``chemical_species`` (one per type)
    lets several type names stand for one element (used by ZBL).
    ``scalar_embed``: Allegro's two-body embedding, ``"bessel"`` or ``"spline"``."""
    type_names = list(type_names or species)
    chemical_species = list(chemical_species or type_names)
    if avg_num_neighbors is None:
        avg_num_neighbors = {t: 8.0 + 3.0 * k for k, t in enumerate(type_names)}
    config = {
        "seed": int(seed),
        "model_dtype": model_dtype,
        "type_names": type_names,
        "r_max": float(r_max),
        "avg_num_neighbors": avg_num_neighbors,
        "per_type_energy_scales": {t: 0.5 + 0.25 * k for k, t in enumerate(type_names)},
        "per_type_energy_shifts": {t: -2.0 - 0.5 * k for k, t in enumerate(type_names)},
    }
    if per_edge_type_cutoff:
        config["per_edge_type_cutoff"] = per_edge_type_cutoff
    if pair_potential == "ZBL":
        config["pair_potential"] = {
            "_target_": "nequip.nn.pair_potential.ZBL",
            "units": "metal",
            "chemical_species": chemical_species,
        }
    elif pair_potential == "LJ":
        config["pair_potential"] = {
            "_target_": "nequip.nn.pair_potential.LennardJones",
            "lj_sigma": 1.8,
            "lj_epsilon": 0.05,
        }
    elif pair_potential:
        raise ValueError(f"unknown pair potential {pair_potential!r}")
    if architecture == "nequip":
        config.update(
            _target_="nequip.model.NequIPGNNModel",
            num_layers=int(num_layers),
            l_max=int(l_max),
            parity=True,
            num_features=int(num_features),
            radial_mlp_depth=1,
            radial_mlp_width=16,
            num_bessels=8,
        )
    elif architecture == "allegro":
        config.update(
            _target_="allegro.model.AllegroModel",
            l_max=int(l_max),
            parity=True,
            num_layers=int(num_layers),
            num_scalar_features=int(num_features),
            num_tensor_features=max(2, int(num_features) // 2),
            radial_chemical_embed=(
                {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8}
                if scalar_embed == "bessel"
                else {"_target_": "allegro.nn.TwoBodySplineScalarEmbed", "num_splines": 8, "spline_span": 6}
            ),
            scalar_embed_mlp_hidden_layers_width=16,
            allegro_mlp_hidden_layers_width=16,
            readout_mlp_hidden_layers_width=8,
        )
    else:
        raise ValueError(f"unknown architecture {architecture!r} (nequip or allegro)")
    return config


def _perturb(model, seed: int) -> None:
    """Give every parameter seeded random values of the scale nequip
    initialises (zeros stay meaningful only where nequip put them on purpose,
    so everything is moved)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 4242)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
            scale = float(p.detach().abs().mean()) if p.numel() else 0.0
            p.add_(0.3 * max(scale, 0.1) * noise)


def _builder(config: dict):
    from hydra.utils import get_method

    config = dict(config)
    return get_method(config.pop("_target_")), config


def build_model(seed: int = 0, perturb: bool = True, **options):
    """An eager nequip ``GraphModel`` in eval mode (options: see ``model_config``)."""
    import_nequip(need_allegro=options.get("architecture") == "allegro")
    with restore_torch_state():
        from nequip.utils.global_state import set_global_state

        set_global_state()
        builder, kwargs = _builder(model_config(seed=seed, **options))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = builder(**kwargs)
        if perturb:
            _perturb(model, seed)
    return model.eval()


def _info_dict(config: dict, data_file: str, type_names: Sequence[str]) -> dict:
    from nequip.utils.versions import get_current_code_versions

    return {
        "versions": get_current_code_versions(verbose=False),
        "training_module": {"_target_": "nequip.train.NequIPLightningModule"},
        "model": config,
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 0,
            "train_file_path": data_file,
            "val_file_path": data_file,
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": list(type_names),
                },
                {
                    "_target_": "nequip.data.transforms.NeighborListTransform",
                    "r_max": config["r_max"],
                    "backend": "ase",
                },
            ],
        },
    }


def _example_structures(path: str, species: Sequence[str], r_max: float, seed: int) -> str:
    """A tiny structure file: nequip-package stores one frame of the
    training data in the package (for AOT export); no labels are needed."""
    import numpy as np
    from ase.build import bulk
    from ase.io import write

    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=max(0.45 * r_max * 4 / np.sqrt(3), 4.0), cubic=True)
    atoms.set_chemical_symbols([species[k % len(species)] for k in range(len(atoms))])
    atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
    write(path, [atoms], format="extxyz")
    return path


def save_checkpoint(path, seed: int = 0, **options) -> str:
    """A ``.ckpt`` in the form Lightning writes during ``nequip-train``
    (hyper_parameters with nequip's ``info_dict``, the Lightning module's
    state_dict), holding a seeded random model; no training is run."""
    import_nequip(need_allegro=options.get("architecture") == "allegro")
    import lightning
    import torch

    path = os.fspath(path)
    with restore_torch_state():
        from nequip.train import NequIPLightningModule
        from nequip.utils.global_state import set_global_state

        set_global_state()
        config = model_config(seed=seed, **options)
        type_names = config["type_names"]
        chemical = options.get("chemical_species") or type_names
        data_file = _example_structures(path + ".data.xyz", list(chemical), config["r_max"], seed)
        info = _info_dict(config, os.path.abspath(data_file), type_names)
        info["data"]["transforms"][0]["chemical_species_to_atom_type_map"] = {
            c: t for c, t in zip(chemical, type_names)
        }
        num_datasets = {"train": 1, "val": 0, "test": 0, "predict": 0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = NequIPLightningModule(model=config, num_datasets=num_datasets, info_dict=info)
        _perturb(module.model, seed)
        checkpoint = {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": lightning.__version__,
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "hparams_name": "kwargs",
        }
        torch.save(checkpoint, path)
    return path


def save_package(checkpoint, path) -> str:
    """``nequip-package build checkpoint path`` (path must end in .nequip.zip)."""
    import_nequip()
    path = os.fspath(path)
    with restore_torch_state():
        # importing it configures logging (hydra); quieten it afterwards
        from nequip.scripts.package import main as package_main

        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            package_main(["build", os.fspath(checkpoint), path])
    return path


def save_compiled(model, path) -> str:
    """What ``nequip-compile --mode torchscript`` writes (the CLI refuses
    TorchScript on torch >= 2.10; its Python function does not): the
    scripted model with the model's metadata as extra files."""
    import copy

    import_nequip()
    path = os.fspath(path)
    with restore_torch_state():
        from nequip.model.inference_models.torchscript import save_torchscript_model
        from nequip.utils.global_state import get_latest_global_state, set_global_state

        set_global_state()
        metadata = dict(model.metadata)
        metadata.update(get_latest_global_state(only_metadata_related=True))
        metadata = {k: str(int(v)) if isinstance(v, bool) else v for k, v in metadata.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_torchscript_model(copy.deepcopy(model), metadata, path, "cpu")
    return path
