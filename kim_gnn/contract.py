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

import linecache
from typing import Dict, List

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

def input_names(num_layers: int) -> List[str]:
    """Names of the driver's positional inputs, in order."""
    return ["species", "coordinates"] + [f"edge_index_{k}" for k in range(num_layers)] + ["contributions"]


_entry_counter = 0


def positional_entry_class(num_layers: int) -> type:
    """A ``torch.nn.Module`` class whose ``forward`` takes exactly the driver's
    L + 3 positional tensors and hands them to ``self.staged`` as
    ``(species, coordinates, [edge_index_0, ..., edge_index_{L-1}], contributions)``.

    TorchScript compiles from source, and the arity depends on L, so the class
    is generated from source registered in ``linecache`` (where ``inspect``,
    and so TorchScript, finds it).
    """
    global _entry_counter
    if num_layers < 1:
        raise ValueError("a staged model needs at least one layer")
    names = input_names(num_layers)
    graphs = ", ".join(names[2:-1])
    args = ",\n        ".join(
        ["self", "species: torch.Tensor", "coordinates: torch.Tensor"]
        + [f"{n}: torch.Tensor" for n in names[2:-1]]
        + ["contributions: torch.Tensor"]
    )
    _entry_counter += 1
    class_name = f"KIMStagedModel{num_layers}L"
    filename = f"<kim_gnn-generated-entry-{_entry_counter}>"
    source = (
        "import torch\n"
        "from typing import List, Optional\n"
        "\n"
        f"class {class_name}(torch.nn.Module):\n"
        '    """Driver entry point: species, coordinates, L edge lists (edge_index_0 the\n'
        '    smallest), contributions (0 = contributing). Returns per-particle energies [N]\n'
        '    float64, zero on non-contributing particles.\n'
        "\n"
        "    The inputs are checked first: a call that breaks the contract gets one\n"
        "    clear message (the driver does not catch exceptions) instead of an\n"
        '    indexing error deep inside the network."""\n'
        "\n"
        "    def __init__(self, staged: torch.nn.Module, num_species: int = 0, species_names: str = '',\n"
        "                 spec_json: str = '', atomic_numbers: Optional[List[int]] = None):\n"
        "        super().__init__()\n"
        "        self.staged = staged\n"
        "        self.num_species = num_species\n"
        "        self.species_names = species_names\n"
        "        numbers = atomic_numbers or []\n"
        "        table = torch.full((max(numbers) + 1 if numbers else 0,), -1, dtype=torch.int64)\n"
        "        for index, number in enumerate(numbers):\n"
        "            table[number] = index\n"
        "        # species index of each atomic number (-1: not an element of the model), for\n"
        "        # drivers that pass atomic numbers (KIM_MODEL_ELEMENTS_MAP)\n"
        "        self.register_buffer('index_of_atomic_number', table)\n"
        "        self.atomic_numbers_text = ' '.join(s + '=' + str(z) for s, z in zip(species_names.split(), numbers))\n"
        f"        self.kim_gnn_spec_json = {SPEC_MARKER!r} + spec_json if spec_json else ''\n"
        "\n"
        f"    def forward(\n        {args},\n    ) -> torch.Tensor:\n"
        f"        graphs: List[torch.Tensor] = [{graphs}]\n"
        "        n = coordinates.shape[0]\n"
        "        if (coordinates.dim() != 2 or coordinates.shape[1] != 3 or coordinates.dtype != torch.float64\n"
        "                or species.dim() != 1 or species.shape[0] != n or species.dtype != torch.int64\n"
        "                or contributions.dim() != 1 or contributions.shape[0] != n\n"
        "                or contributions.dtype != torch.int64):\n"
        "            raise ValueError('kim-gnn model: inputs break the TorchML contract: expected species [N] int64, '\n"
        "                             'coordinates [N, 3] float64, contributions [N] int64 '\n"
        "                             '(model: ' + self.kim_gnn_spec_json + ')')\n"
        "        if self.num_species > 0 and n > 0:\n"
        "            lowest = int(species.min())\n"
        "            highest = int(species.max())\n"
        "            # Atomic numbers instead of indices (the TorchML driver under KIM_MODEL_ELEMENTS_MAP):\n"
        "            # unambiguous when every value lies beyond the indices and names an element of the model.\n"
        "            if lowest >= self.num_species and highest < self.index_of_atomic_number.shape[0]:\n"
        "                mapped = self.index_of_atomic_number[species]\n"
        "                if int(mapped.min()) < 0:\n"
        "                    bad = int(species[mapped < 0][0])\n"
        "                    raise ValueError('kim-gnn model: species index ' + str(bad) + ' is out of range: this '\n"
        "                                     'model has ' + str(self.num_species) + ' species (' + self.species_names\n"
        "                                     + '); read as atomic numbers (KIM_MODEL_ELEMENTS_MAP), ' + str(bad)\n"
        "                                     + ' is not one of its elements (' + self.atomic_numbers_text + ')')\n"
        "                species = mapped\n"
        "                lowest = 0\n"
        "                highest = 0\n"
        "            if lowest < 0 or highest >= self.num_species:\n"
        "                bad = lowest if lowest < 0 else highest\n"
        "                raise ValueError('kim-gnn model: species index ' + str(bad) + ' is out of range: this model '\n"
        "                                 'has ' + str(self.num_species) + ' species (indices 0 to '\n"
        "                                 + str(self.num_species - 1) + ': ' + self.species_names + '); the driver '\n"
        "                                 'passes indices into the .param element list, or, under '\n"
        "                                 'KIM_MODEL_ELEMENTS_MAP, atomic numbers, which the model takes only '\n"
        "                                 'when all of them are atomic numbers of its elements (' + self.atomic_numbers_text\n"
        "                                 + ') and none is below ' + str(self.num_species) + '')\n"
        "        for k, edges in enumerate(graphs):\n"
        "            if edges.dim() != 2 or edges.shape[0] != 2 or edges.dtype != torch.int64:\n"
        "                raise ValueError('kim-gnn model: edge_index_' + str(k) + ' is not a [2, E] int64 tensor')\n"
        "            if edges.numel() > 0:\n"
        "                if int(edges.min()) < 0 or int(edges.max()) >= n:\n"
        "                    raise ValueError('kim-gnn model: edge_index_' + str(k) + ' refers to a particle '\n"
        "                                     'outside 0 .. ' + str(n - 1))\n"
        f"        return self.staged(species, coordinates, graphs, contributions)\n"
    )
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: Dict[str, object] = {"__name__": "kim_gnn._generated"}
    exec(compile(source, filename, "exec"), namespace)
    cls = namespace[class_name]
    cls.__module__ = "kim_gnn._generated"
    return cls
