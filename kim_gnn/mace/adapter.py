"""Registration of the MACE adapter (cheap to import: mace and torch are
imported only when a function runs)."""

from ..adapters import KERNELS_HELP, Adapter, ExampleModel
from .detect import is_mace_file

#: How to get an environment that converts (and verifies) these models.
ENVIRONMENT_HINT = (
    "convert it in the legacy environment: `bash scripts/setup.sh`, then `.venv/bin/kim-gnn ...` "
    "(e3nn 0.4.4, nequip 0.6, mace-torch)"
)


def is_mace_module(module) -> bool:
    return any(c.__module__.startswith("mace.") for c in type(module).__mro__)


def convert(source, head=None, prune=True, kernels=None):
    from .convert import convert_mace

    return convert_mace(source, head=head, prune=prune, kernels=kernels)


def describe(path, head=None):
    from .convert import inspect_mace

    info = inspect_mace(path, head=head)
    return {
        "architecture": "mace",
        "version": info.mace_version,
        "model_class": info.model_class,
        "layers": info.num_layers,
        "cutoff": info.r_max,
        "influence_distance": info.influence_distance,
        "species": info.species,
        "heads": info.heads,
        "head": info.head,
        "interactions": info.interactions,
        "readouts": info.readouts,
        "correlation": info.correlation,
        "max_ell": info.max_ell,
        "pair_repulsion": "ZBL" if info.pair_repulsion else "none",
        "distance_transform": info.distance_transform,
        "model_dtype": str(info.model_dtype).replace("torch.", ""),
        "parameters": info.num_parameters,
        "sha256": info.sha256,
    }


def original(source, spec=None):
    from .reference import MACEOriginal

    head = (spec.details.get("head") if spec is not None else None) or None
    return MACEOriginal(source, head=head)


def build_example(path: str, num_layers: int, model_dtype: str):
    from .example import build_example_mace

    return build_example_mace(path, species=("Si",), num_interactions=num_layers, model_dtype=model_dtype, seed=0)


ADAPTER = Adapter(
    name="mace",
    detect=is_mace_file,
    convert=convert,
    describe=describe,
    original=original,
    options={"head": "multi-head MACE models: the head (default: the only head, else the one named 'default', "
                     "in any case); recorded in the converted model",
             "prune": "pruned staged execution (default True); False emits the unpruned model",
             "kernels": KERNELS_HELP},
    detect_module=is_mace_module,
    package="mace-torch",
    import_names=("mace", "e3nn"),
    environment_hint=ENVIRONMENT_HINT,
    summary="MACE / ScaleShiftMACE .model",
    exports={"convert_mace": "kim_gnn.mace.convert:convert_mace"},
    example=ExampleModel(build=build_example, file_name="example.model",
                         item_name="Si_MACE_Example__MO_000000000000_000",
                         description="a seeded random ScaleShiftMACE model"),
    priority=20,
)
