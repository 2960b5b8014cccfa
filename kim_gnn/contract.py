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
from typing import Dict, List, Optional, Sequence

from .errors import KimGnnError

#: Name of the published OpenKIM TorchML model driver.
DEFAULT_DRIVER_NAME = "TorchML__MD_173118614730_000"

#: Name of kim-gnn's own KIM model driver (``csrc/driver``, installed by
#: ``kim-gnn install-driver``): it runs the same portable-model directories;
#: ``kim-gnn convert --driver-name KimGnn__MD_000000000000_000`` names it.
KIM_GNN_DRIVER_NAME = "KimGnn__MD_000000000000_000"

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

#: Where the driver puts the dummy partner of a single isolated atom. It
#: has no edges (whatever the atom's position), does not contribute, and
#: kim_gnn gives it the species of the atom: a valid index, and with no
#: edges and no contribution its species cannot change any result.
DUMMY_PARTICLE_POSITION = (999.0, 999.0, 999.0)

#: Units the driver accepts.
LENGTH_UNIT = "A"
ENERGY_UNIT = "eV"

#: KIM item names of portable models: ``Prefix__MO_<12 digits>_<3 digits>``.
ITEM_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MO_[0-9]{12}_[0-9]{3}$")
DRIVER_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MD_[0-9]{12}_[0-9]{3}$")

#: Model dtypes kim_gnn converts (and has verification tolerances for).
MODEL_DTYPES = ("float32", "float64")

#: Prefix of the spec JSON that a converted model carries inside its own
#: code (attribute ``kim_gnn_spec_json`` and the messages of its input
#: checks), so that provenance survives ``torch.jit.save`` to a buffer and
#: ``torch.jit.freeze``, which drop extra files and attributes.
SPEC_MARKER = "kim_gnn_spec:"

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

    def validate(self) -> "StagedModelSpec":
        """Refuse a spec the driver could not use: unknown or repeated
        element names, a cutoff that is not a positive number, no layers, a
        dtype kim_gnn has no tolerances for."""
        import math

        from ase.data import chemical_symbols

        if not self.species:
            raise KimGnnError("the model lists no species")
        valid = set(chemical_symbols[1:])
        unknown = [s for s in self.species if s not in valid]
        if unknown:
            raise KimGnnError(
                f"the model's species list has unknown element name(s) {' '.join(map(repr, unknown))}: "
                "KIM identifies species by chemical symbol (e.g. Si, C)"
            )
        repeated = sorted({s for s in self.species if self.species.count(s) > 1})
        if repeated:
            raise KimGnnError(f"the model's species list {' '.join(self.species)} repeats {' '.join(repeated)}")
        if not (isinstance(self.cutoff, (int, float)) and math.isfinite(self.cutoff) and self.cutoff > 0):
            raise KimGnnError(f"the model's cutoff {self.cutoff!r} is not a positive number of Angstrom")
        if not (isinstance(self.num_layers, int) and self.num_layers >= 1):
            raise KimGnnError(f"the model's number of layers {self.num_layers!r} is not a positive integer")
        if self.model_dtype not in MODEL_DTYPES:
            raise KimGnnError(
                f"unknown model dtype {self.model_dtype!r} (kim-gnn knows {', '.join(MODEL_DTYPES)})"
            )
        return self

    def _values(self) -> Dict[str, str]:
        import json

        return {
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

    def to_extra_files(self) -> Dict[str, str]:
        return {METADATA_PREFIX + k: v for k, v in self._values().items()}

    def to_json(self) -> str:
        """The spec as JSON, as the converted model carries it in its code
        (``<`` escaped so that it can be found again in any string)."""
        import json

        return json.dumps(self._values(), sort_keys=True).replace("<", "\\u003c")

    @classmethod
    def from_json(cls, text: str) -> "StagedModelSpec":
        import json

        return cls._from_values(json.loads(text))

    @classmethod
    def from_extra_files(cls, files: Dict[str, str]) -> "StagedModelSpec":
        values = {
            k[len(METADATA_PREFIX):]: (v.decode() if isinstance(v, bytes) else v)
            for k, v in files.items()
            if k.startswith(METADATA_PREFIX)
        }
        return cls._from_values(values)

    @classmethod
    def _from_values(cls, values: Dict[str, str]) -> "StagedModelSpec":
        import json

        if not values.get("species") or not values.get("cutoff") or not values.get("num_layers"):
            raise KimGnnError("not a kim-gnn converted model: it carries no kim_gnn/ metadata (species, cutoff, layers)")
        try:
            cutoff, num_layers = float(values["cutoff"]), int(values["num_layers"])
            details = json.loads(values.get("details") or "{}")
        except ValueError:
            raise KimGnnError("the converted model's kim_gnn/ metadata is corrupt (cutoff, layers or details)") from None
        return cls(
            species=values["species"].split(),
            cutoff=cutoff,
            num_layers=num_layers,
            model_dtype=values.get("model_dtype", "float64"),
            architecture=values.get("architecture", ""),
            architecture_version=values.get("architecture_version", ""),
            kim_gnn_version=values.get("kim_gnn_version", ""),
            source_file=values.get("source_file", ""),
            source_sha256=values.get("source_sha256", ""),
            details=details,
        ).validate()


def script_staged(staged, spec: StagedModelSpec, label: str):
    """Wrap a staged module in the driver's positional entry point (which
    checks the driver's inputs and carries the spec in its code), compile it
    to TorchScript and attach its spec; a model that does not compile, or
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
    return attach_spec(scripted, spec)


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
    and ``torch.jit.save(scripted, path_or_buffer)`` write the ``kim_gnn/*``
    provenance extra files with it. (The spec also lives in the model's own
    code, ``spec_of_module``, for the ways of saving that drop extra files:
    saving a reloaded or frozen module.)"""
    scripted.kim_gnn_spec = spec
    original_save = scripted.save
    original_save_to_buffer = scripted.save_to_buffer

    def with_spec(extra_files):
        files = dict(spec.to_extra_files())
        files.update(extra_files or {})
        return files

    def save(f, _extra_files=None, **kwargs):
        return original_save(f, _extra_files=with_spec(_extra_files), **kwargs)

    def save_to_buffer(_extra_files=None, **kwargs):
        return original_save_to_buffer(_extra_files=with_spec(_extra_files), **kwargs)

    scripted.save = save
    scripted.save_to_buffer = save_to_buffer
    return scripted


def _string_constants(graph):
    for node in graph.findAllNodes("prim::Constant", True):
        if node.hasAttribute("value") and node.kindOf("value") == "s":
            yield node.s("value")


def spec_of_module(module) -> Optional[StagedModelSpec]:
    """The spec a converted TorchScript module carries in its code: the
    Python attribute set at conversion, the ``kim_gnn_spec_json`` attribute
    of an unfrozen module, or the string constant it became in a frozen one.
    None if there is none."""
    import json

    spec = getattr(module, "kim_gnn_spec", None)
    if isinstance(spec, StagedModelSpec):
        return spec
    texts = []
    try:
        texts.append(str(module.kim_gnn_spec_json))
    except Exception:
        pass
    try:
        for method in ("forward",):
            texts.extend(_string_constants(getattr(module, method).graph))
    except Exception:
        pass
    for text in texts:
        at = text.find(SPEC_MARKER)
        if at >= 0:
            try:
                values, _ = json.JSONDecoder().raw_decode(text, at + len(SPEC_MARKER))
            except ValueError:
                continue
            if isinstance(values, dict):
                return StagedModelSpec._from_values(values)
    return None


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
