"""Build small seeded NequIP 0.6 ``deployed.pth`` files with random weights.

Used by the built-in example (``kim-gnn example``), the tests and the
benchmarks. Needs nequip 0.6.x (and e3nn 0.4.4) installed; the rest of
kim_gnn does not. ``nequip-deploy build --model`` is run in-process, so the
file is exactly what a user's ``nequip-deploy build`` writes; the per-species
shifts/scales and the global scale, which a build without training data
leaves at 0/1, are then set to non-trivial values so that conversion must
carry them.
"""

import os
import tempfile
import warnings
from typing import Optional, Sequence

from .convert import METADATA_KEYS

DEFAULT_SPECIES = ("Si",)


def example_config(
    species: Sequence[str] = DEFAULT_SPECIES,
    num_layers: int = 2,
    l_max: int = 1,
    r_max: float = 4.0,
    num_features: int = 8,
    model_dtype: str = "float64",
    zbl: bool = False,
    seed: int = 0,
    workdir: str = ".",
    pair_style: Optional[str] = None,
    forces_only: bool = False,
    resnet: bool = False,
    use_sc: bool = True,
    parity: bool = True,
) -> dict:
    """A nequip 0.6 config; ``zbl=True`` is short for ``pair_style="ZBL"``
    (``"LJ"`` adds a simple Lennard-Jones term); ``forces_only`` builds the
    model without stress output (``ForceOutput``); ``resnet`` adds residual
    updates where a layer's input and output irreps agree; ``use_sc=False``
    drops the self-connections; ``parity=False`` builds features of one
    parity per l."""
    if zbl:
        pair_style = "ZBL"
    builders = ["SimpleIrrepsConfig", "EnergyModel", "PerSpeciesRescale"]
    if pair_style:
        builders.append("PairPotentialTerm")
    builders += ["ForceOutput" if forces_only else "StressForceOutput", "RescaleEnergyEtc"]
    config = {
        "root": os.path.join(workdir, "nequip-root"),
        "run_name": "kim-gnn-example",
        "seed": seed,
        "dataset_seed": seed,
        "model_builders": builders,
        "r_max": float(r_max),
        "num_layers": int(num_layers),
        "l_max": int(l_max),
        "parity": bool(parity),
        "num_features": int(num_features),
        "resnet": bool(resnet),
        "use_sc": bool(use_sc),
        "invariant_layers": 1,
        "invariant_neurons": 8,
        "num_basis": 8,
        "chemical_symbols": list(species),
        "avg_num_neighbors": 12.0,
        "per_species_rescale_scales": [1.0] * len(species),
        "per_species_rescale_shifts": [0.0] * len(species),
        "global_rescale_scale": 1.0,
        "default_dtype": "float64",
        "model_dtype": model_dtype,
    }
    if pair_style == "ZBL":
        config.update(pair_style="ZBL", units="metal")
    elif pair_style == "LJ":
        config.update(pair_style="LJ", lj_sigma=1.9, lj_epsilon=0.02, lj_use_cutoff=True)
    elif pair_style:
        raise ValueError(f"unknown pair style {pair_style!r}")
    return config


def build_example_nequip(out_file, global_scale: Optional[float] = 1.7, **options) -> str:
    """Write a seeded random NequIP deployed model to ``out_file``; returns its path.
    ``options``: ``example_config``'s (species, num_layers, l_max, r_max,
    num_features, model_dtype, zbl, seed, pair_style, forces_only, resnet,
    use_sc, parity); ``global_scale`` is set into the deployed model."""
    import logging

    import torch
    import yaml

    from .legacy_import import e3nn_importable

    try:
        # (e3nn 0.4.4 torch.loads its constants at import: allowed weights-only, for the import only)
        with warnings.catch_warnings(), e3nn_importable():
            warnings.simplefilter("ignore")  # nequip warns about every torch 2.x at import
            from nequip.scripts.deploy import main as deploy_main
    except ImportError as exc:
        from ...errors import KimGnnError

        raise KimGnnError(f"building the example NequIP model needs nequip 0.6.x installed ({exc})") from None

    out_file = os.fspath(out_file)
    if "workdir" in options:
        raise TypeError("build_example_nequip builds in a temporary directory of its own: no workdir")
    seed = options.get("seed", 0)
    previous_dtype = torch.get_default_dtype()
    previous_level = logging.getLogger().level
    with tempfile.TemporaryDirectory(prefix="kim-gnn-nequip-") as tmp:
        config = example_config(workdir=tmp, **options)
        config_file = os.path.join(tmp, "config.yaml")
        with open(config_file, "w") as fh:
            yaml.safe_dump(config, fh)
        built = os.path.join(tmp, "deployed.pth")
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                # nequip/e3nn/TorchScript chatter about torch versions and annotations
                warnings.simplefilter("ignore")
                deploy_main(["--verbose", "WARNING", "build", "--model", config_file, built])
        finally:
            torch.set_default_dtype(previous_dtype)
            logging.getLogger().setLevel(previous_level)

        keys = METADATA_KEYS + ("code_commits",)
        extra = {k: "" for k in keys}
        model = torch.jit.load(built, _extra_files=extra)
        generator = torch.Generator().manual_seed(seed + 12345)
        with torch.no_grad():
            rescale = model.model
            if global_scale is not None and bool(rescale.has_scale):
                rescale.scale_by.fill_(global_scale)
            per_species = rescale.model.func.per_species_rescale
            n = int(per_species.shifts.numel())
            if n:
                per_species.shifts.copy_(-2.0 - torch.rand(n, generator=generator, dtype=torch.float64))
            if int(per_species.scales.numel()):
                per_species.scales.copy_(0.5 + torch.rand(n, generator=generator, dtype=torch.float64))
        tmp_out = out_file + ".tmp"
        torch.jit.save(model, tmp_out, _extra_files={k: v for k, v in extra.items() if v})
        os.replace(tmp_out, out_file)
    return out_file
