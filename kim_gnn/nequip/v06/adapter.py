"""Registration of the NequIP 0.5/0.6 adapter (cheap to import: nequip and
torch are imported only when a function runs)."""


from ...adapters import KERNELS_HELP, Adapter, ExampleModel, zip_names
from ..environments import LEGACY_ENV_HINT

PRUNE_HELP = ("pruned staged execution (default True); False emits the unpruned model, all layers on every "
              "particle out to the influence distance")


def is_nequip_deployed(path: str) -> bool:
    """A TorchScript archive carrying nequip's ``nequip_version`` metadata."""
    return any(name.endswith("/extra/nequip_version") for name in zip_names(path))


def convert(path, **options):
    from .convert import convert_nequip

    return convert_nequip(path, **options)


def describe(path, **options):
    from .convert import inspect_nequip

    info = inspect_nequip(path)
    return {
        "architecture": "nequip",
        "framework": "nequip 0.5/0.6 deployed model",
        "version": info.nequip_version,
        "layers": info.num_layers,
        "cutoff": info.r_max,
        "influence_distance": info.influence_distance,
        "species": info.species,
        "type_names": info.type_names,
        "model_dtype": str(info.model_dtype).replace("torch.", ""),
        "default_dtype": str(info.default_dtype).replace("torch.", ""),
        "parameters": info.num_parameters,
        "sha256": info.sha256,
    }


def original(path, spec=None):
    from .reference import NequIPOriginal

    return NequIPOriginal(path)


def build_example(path: str, num_layers: int, model_dtype: str):
    from .example import build_example_nequip

    return build_example_nequip(path, species=("Si",), num_layers=num_layers, model_dtype=model_dtype, seed=0)


ADAPTER = Adapter(
    name="nequip",
    detect=is_nequip_deployed,
    convert=convert,
    describe=describe,
    original=original,
    options={"prune": PRUNE_HELP, "kernels": KERNELS_HELP},
    package="nequip",
    import_names=("nequip", "e3nn", "torch_geometric"),  # nequip 0.5 used torch_geometric
    environment_hint=LEGACY_ENV_HINT,
    summary="NequIP 0.5/0.6 deployed.pth",
    exports={"convert_nequip": "kim_gnn.nequip:convert_nequip"},
    example=ExampleModel(build=build_example, file_name="deployed.pth",
                         item_name="Si_NequIP_Example__MO_000000000000_000",
                         description="a seeded random NequIP 0.6 model"),
    priority=10,
)

