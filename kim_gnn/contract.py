"""Facade of the TorchML contract (``docs/contract.md``), kept so that
``from kim_gnn import contract`` / ``contract.NAME`` keep working.

The contract's facts live by concern in their own modules, re-exported here:

- :mod:`kim_gnn.driver_facts`: what the C++ driver needs too (driver names,
  input dtypes, ``contributions`` values, the fusion strategy, the dummy
  particle, units), held equal to ``csrc/driver/contract_facts.hpp`` by a test;
- :mod:`kim_gnn.model_spec`: the provenance spec (:class:`StagedModelSpec`,
  its extra files and the JSON in the model's code, ``spec_of_module``);
- :mod:`kim_gnn.kim_item`: the KIM item's files (names, ``.param``,
  ``CMakeLists.txt``).

What is still defined here: the driver's positional entry point
(``input_names``, ``positional_entry_class``) and ``script_staged`` /
``check_finite_weights``, which wrap a staged module in it.
"""

from __future__ import annotations

from typing import List

from . import driver_facts as _driver_facts
from .driver_facts import (  # noqa: F401  (re-exported)
    CONTRIBUTING,
    DEFAULT_DRIVER_NAME,
    DTYPE_NAMES,
    DUMMY_PARTICLE_POSITION,
    EDGE_VECTORS_METHOD,
    ENERGY_UNIT,
    FUSION_STRATEGY,
    INPUTS_BESIDES_EDGE_LISTS,
    KIM_GNN_DRIVER_NAME,
    LENGTH_UNIT,
    NOT_CONTRIBUTING,
    PARAM_FILE_VALUES,
    PREPROCESSING,
    SPEC_ATTRIBUTE,
)
from .kim_item import (  # noqa: F401  (re-exported)
    DRIVER_NAME_PATTERN,
    ITEM_NAME_PATTERN,
    MODEL_FILE_NAME,
    PARAM_FILE_NAME,
    parse_param_file,
    render_cmakelists,
    render_param_file,
    validate_driver_name,
    validate_item_name,
)
from .model_spec import (  # noqa: F401  (re-exported)
    METADATA_KEYS,
    METADATA_PREFIX,
    MODEL_DTYPES,
    SPEC_MARKER,
    ConvertedModel,
    StagedModelSpec,
    attach_spec,
    empty_extra_files,
    file_sha256,
    spec_of_module,
)


def __getattr__(name):
    # SPECIES_DTYPE, COORDINATES_DTYPE, ...: torch dtypes, resolved on first use.
    if name in DTYPE_NAMES:
        return getattr(_driver_facts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def script_staged(staged, spec: StagedModelSpec, label: str):
    """Wrap a staged module in the driver's positional entry point (which
    checks the driver's inputs and carries the spec in its code), compile it
    to TorchScript and return it with its spec (a
    :class:`~kim_gnn.model_spec.ConvertedModel`, whose ``save`` writes the
    spec's extra files); a model that does not compile, or
    whose weights or spec are unusable, is refused (``label`` names it in the
    message), never half-emitted."""
    import torch

    from .errors import UnsupportedModelError, first_line

    spec.validate()
    check_finite_weights(staged, label)
    from ase.data import atomic_numbers

    entry = positional_entry_class(spec.num_layers)(
        staged, num_species=len(spec.species), species_names=" ".join(spec.species), spec_json=spec.to_json(),
        atomic_numbers=[atomic_numbers[s] for s in spec.species],
    ).eval()
    try:
        scripted = torch.jit.script(entry)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the staged {label} model could not be compiled to TorchScript ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return ConvertedModel(scripted, spec)


def check_finite_weights(module, label: str = "") -> None:
    """Refuse a model with NaN or infinite parameters or buffers: it would
    give NaN energies in the simulator, far from where the mistake is."""
    import torch

    from .errors import UnsupportedModelError

    for kind, named in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, value in named:
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise UnsupportedModelError(
                    f"the {label + ' ' if label else ''}model has non-finite (NaN or inf) values in its {kind} "
                    f"{name!r}: refusing to convert a broken model"
                )


# --- The driver's positional calling convention ------------------------------
# The emitted top-level class lives in checked code, ``kim_gnn/entry.py``; only
# its L-ary ``forward`` is generated. Here for existing callers (importing the
# contract does not import torch).

def input_names(num_layers: int) -> List[str]:
    """Names of the driver's positional inputs, in order (``entry.input_names``)."""
    from .entry import input_names as names

    return names(num_layers)


def positional_entry_class(num_layers: int, edge_vectors: bool = True) -> type:
    """The emitted top-level class for L layers (``entry.positional_entry_class``)."""
    from .entry import positional_entry_class as entry_class

    return entry_class(num_layers, edge_vectors)
