"""The TorchML driver contract, in one place.

Everything kim_gnn emits or executes follows ``shared/docs/torchml-contract.md``:
this module holds the facts of that contract (input order and dtypes, the
meaning of ``contributions``, graph order, the ``.param`` layout, the metadata
kim_gnn stores in a converted model) and every adapter, executor and exporter
refers to it instead of restating them.
"""

from __future__ import annotations

import linecache
import re
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

from .errors import KimGnnError

#: Name of the published OpenKIM TorchML model driver.
DEFAULT_DRIVER_NAME = "TorchML__MD_173118614730_000"

#: dtypes of the driver's inputs (species, coordinates, edge_index_k,
#: contributions) and of every output tensor, by torch dtype name. The
#: ``torch.dtype`` objects are the module attributes ``SPECIES_DTYPE``,
#: ``COORDINATES_DTYPE``, ``EDGE_INDEX_DTYPE``, ``CONTRIBUTIONS_DTYPE`` and
#: ``OUTPUT_DTYPE``, resolved on first use so that importing the contract (and
#: so ``kim-gnn --help``) does not import torch.
DTYPE_NAMES = {
    "SPECIES_DTYPE": "int64",
    "COORDINATES_DTYPE": "float64",
    "EDGE_INDEX_DTYPE": "int64",
    "CONTRIBUTIONS_DTYPE": "int64",
    "OUTPUT_DTYPE": "float64",
}


def __getattr__(name):
    if name in DTYPE_NAMES:
        import torch

        return getattr(torch, DTYPE_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: ``contributions`` values: note the inversion of KIM's own flag.
CONTRIBUTING = 0
NOT_CONTRIBUTING = 1

#: The TorchScript fusion strategy the driver sets after freezing (process-wide).
FUSION_STRATEGY = [("DYNAMIC", 3)]

#: Where the driver puts the dummy partner of a single isolated atom.
DUMMY_PARTICLE_POSITION = (999.0, 999.0, 999.0)

#: Units the driver accepts.
LENGTH_UNIT = "A"
ENERGY_UNIT = "eV"

#: KIM item names of portable models: ``Prefix__MO_<12 digits>_<3 digits>``.
ITEM_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MO_[0-9]{12}_[0-9]{3}$")
DRIVER_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MD_[0-9]{12}_[0-9]{3}$")

PARAM_FILE_NAME = "file.param"
MODEL_FILE_NAME = "model.pt"

#: Prefix of the TorchScript extra files in which kim_gnn records what a
#: converted model is (read back by the executor, ``info`` and ``verify``).
METADATA_PREFIX = "kim_gnn/"
METADATA_KEYS = (
    "kim_gnn_version",
    "architecture",
    "architecture_version",
    "source_file",
    "source_sha256",
    "species",
    "cutoff",
    "num_layers",
    "model_dtype",
    "details",
)


@dataclass
class StagedModelSpec:
    """What the driver must know to feed a converted model.

    ``species`` defines the species indices (position in the list),
    ``cutoff`` the graph cutoff rc in Angstrom and ``num_layers`` L, so the
    influence distance is ``cutoff * num_layers``.
    """

    species: List[str]
    cutoff: float
    num_layers: int
    model_dtype: str = "float64"
    architecture: str = ""
    architecture_version: str = ""
    kim_gnn_version: str = ""
    source_file: str = ""
    source_sha256: str = ""
    details: Dict[str, str] = field(default_factory=dict)

    @property
    def influence_distance(self) -> float:
        return self.cutoff * self.num_layers

    @property
    def num_inputs(self) -> int:
        return self.num_layers + 3

    def to_extra_files(self) -> Dict[str, str]:
        import json

        values = {
            "kim_gnn_version": self.kim_gnn_version,
            "architecture": self.architecture,
            "architecture_version": self.architecture_version,
            "source_file": self.source_file,
            "source_sha256": self.source_sha256,
            "species": " ".join(self.species),
            "cutoff": repr(float(self.cutoff)),
            "num_layers": str(int(self.num_layers)),
            "model_dtype": self.model_dtype,
            "details": json.dumps(self.details, sort_keys=True),
        }
        return {METADATA_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_extra_files(cls, files: Dict[str, str]) -> "StagedModelSpec":
        import json

        values = {
            k[len(METADATA_PREFIX):]: (v.decode() if isinstance(v, bytes) else v)
            for k, v in files.items()
            if k.startswith(METADATA_PREFIX)
        }
        if not values.get("species") or not values.get("cutoff") or not values.get("num_layers"):
            raise KimGnnError("not a kim-gnn converted model: it carries no kim_gnn/ metadata (species, cutoff, layers)")
        return cls(
            species=values["species"].split(),
            cutoff=float(values["cutoff"]),
            num_layers=int(values["num_layers"]),
            model_dtype=values.get("model_dtype", "float64"),
            architecture=values.get("architecture", ""),
            architecture_version=values.get("architecture_version", ""),
            kim_gnn_version=values.get("kim_gnn_version", ""),
            source_file=values.get("source_file", ""),
            source_sha256=values.get("source_sha256", ""),
            details=json.loads(values.get("details") or "{}"),
        )


def script_staged(staged, spec: StagedModelSpec, label: str):
    """Wrap a staged module in the driver's positional entry point, compile it
    to TorchScript and attach its spec; a model that does not compile is
    refused (``label`` names it in the message), never half-emitted."""
    import torch

    from .errors import UnsupportedModelError, first_line

    entry = positional_entry_class(spec.num_layers)(staged).eval()
    try:
        scripted = torch.jit.script(entry)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the staged {label} model could not be compiled to TorchScript ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return attach_spec(scripted, spec)


def file_sha256(path: str) -> str:
    """SHA-256 of a source model file, as recorded in ``source_sha256``."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def attach_spec(scripted, spec: StagedModelSpec):
    """Give a scripted staged model its spec, so that ``scripted.save(path)``
    writes the ``kim_gnn/*`` provenance extra files with it."""
    scripted.kim_gnn_spec = spec
    original_save = scripted.save

    def save(f, _extra_files=None, **kwargs):
        files = dict(spec.to_extra_files())
        files.update(_extra_files or {})
        return original_save(f, _extra_files=files, **kwargs)

    scripted.save = save
    return scripted


def empty_extra_files() -> Dict[str, str]:
    """The dict to pass as ``_extra_files`` to ``torch.jit.load`` to read kim_gnn metadata."""
    return {METADATA_PREFIX + k: "" for k in METADATA_KEYS}


def validate_item_name(name: str) -> str:
    if not ITEM_NAME_PATTERN.match(name):
        raise KimGnnError(
            f"invalid KIM portable model name {name!r}: it must look like Name__MO_000000000000_000 "
            "(a letter, then letters, digits or '_', then '__MO_', 12 digits, '_', 3 digits)"
        )
    return name


def validate_driver_name(name: str) -> str:
    if not DRIVER_NAME_PATTERN.match(name):
        raise KimGnnError(
            f"invalid KIM model driver name {name!r}: it must look like TorchML__MD_173118614730_000"
        )
    return name


def render_param_file(spec: StagedModelSpec, model_file: str = MODEL_FILE_NAME) -> str:
    """The driver's ``.param`` file. Blank lines are part of the format: the
    driver's parser consumes one line after each value unconditionally."""
    return (
        "# Number of elements and their symbols\n"
        f"{len(spec.species)}\n"
        f"{' '.join(spec.species)}\n"
        "\n"
        "# Preprocessing\n"
        "Graph\n"
        "\n"
        "# Cutoff (Angstrom), then number of message-passing layers\n"
        f"{float(spec.cutoff)!r}\n"
        f"{int(spec.num_layers)}\n"
        "\n"
        "# TorchScript file name\n"
        f"{model_file}\n"
        "\n"
        "# Does the model return forces?\n"
        "False\n"
        "\n"
        "# Number of model inputs: species, coordinates, L graphs, contributions\n"
        f"{spec.num_inputs}\n"
        "\n"
        "# Descriptor\n"
        "None\n"
    )


def parse_param_file(text: str) -> Dict[str, object]:
    """Read a ``.param`` file the way the driver does: skip ``#`` lines and
    blank lines between values, take the values in their fixed order."""
    values = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    try:
        n_elements = int(values[0])
        species = values[1].split()
        preprocessing = values[2]
        cutoff = float(values[3])
        num_layers = int(values[4])
        model_file = values[5]
        returns_forces = values[6]
        num_inputs = int(values[7])
    except (IndexError, ValueError) as exc:
        raise KimGnnError(f"malformed TorchML .param file ({exc})") from None
    if len(species) != n_elements:
        raise KimGnnError(f".param file lists {len(species)} elements but says {n_elements}")
    if preprocessing != "Graph":
        raise KimGnnError(f".param file preprocessing is {preprocessing!r}; kim-gnn models need 'Graph'")
    return {
        "species": species,
        "cutoff": cutoff,
        "num_layers": num_layers,
        "model_file": model_file,
        "returns_forces": returns_forces == "True",
        "num_inputs": num_inputs,
    }


def render_cmakelists(item_name: str, driver_name: str = DEFAULT_DRIVER_NAME,
                      param_files: Sequence[str] = (PARAM_FILE_NAME, MODEL_FILE_NAME)) -> str:
    files = " ".join(f'"{f}"' for f in param_files)
    return (
        "cmake_minimum_required(VERSION 3.10)\n"
        "\n"
        "list(APPEND CMAKE_PREFIX_PATH $ENV{KIM_API_CMAKE_PREFIX_DIR})\n"
        "find_package(KIM-API-ITEMS 2.2 REQUIRED CONFIG)\n"
        "\n"
        'kim_api_items_setup_before_project(ITEM_TYPE "portableModel")\n'
        f"project({item_name})\n"
        'kim_api_items_setup_after_project(ITEM_TYPE "portableModel")\n'
        "\n"
        "add_kim_api_model_library(\n"
        "  NAME            ${PROJECT_NAME}\n"
        f'  DRIVER_NAME     "{driver_name}"\n'
        f"  PARAMETER_FILES {files}\n"
        "  )\n"
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
        "from typing import List\n"
        "\n"
        f"class {class_name}(torch.nn.Module):\n"
        '    """Driver entry point: species, coordinates, L edge lists (edge_index_0 the\n'
        '    smallest), contributions (0 = contributing). Returns per-particle energies [N]\n'
        '    float64, zero on non-contributing particles."""\n'
        "\n"
        "    def __init__(self, staged: torch.nn.Module):\n"
        "        super().__init__()\n"
        "        self.staged = staged\n"
        "\n"
        f"    def forward(\n        {args},\n    ) -> torch.Tensor:\n"
        f"        return self.staged(species, coordinates, [{graphs}], contributions)\n"
    )
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: Dict[str, object] = {"__name__": "kim_gnn._generated"}
    exec(compile(source, filename, "exec"), namespace)
    cls = namespace[class_name]
    cls.__module__ = "kim_gnn._generated"
    return cls
