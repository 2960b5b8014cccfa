"""The provenance spec a converted model carries (docs/contract.md, "What
kim-gnn records in a model"): :class:`StagedModelSpec`, its serialisation as
TorchScript extra files ``kim_gnn/*`` and as JSON inside the model's own
code, and reading it back from a module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .driver_facts import INPUTS_BESIDES_EDGE_LISTS, SPEC_ATTRIBUTE
from .errors import KimGnnError

#: Model dtypes kim_gnn converts (and has verification tolerances for).
MODEL_DTYPES = ("float32", "float64")

#: Prefix of the spec JSON that a converted model carries inside its own
#: code (attribute ``kim_gnn_spec_json`` and the messages of its input
#: checks), so that provenance survives ``torch.jit.save`` to a buffer and
#: ``torch.jit.freeze``, which drop extra files and attributes.
SPEC_MARKER = "kim_gnn_spec:"

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
        return self.num_layers + INPUTS_BESIDES_EDGE_LISTS

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


def file_sha256(path: str) -> str:
    """SHA-256 of a source model file, as recorded in ``source_sha256``."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ConvertedModel:
    """What ``convert`` returns: the converted TorchScript ``module`` and its
    ``spec``.

    ``save(path)`` / ``save_to_buffer()`` (and so ``torch.jit.save(converted,
    path_or_buffer)``) write the module with the ``kim_gnn/*`` provenance
    extra files of its spec. Everything else is the module's: calls and
    attributes (``eval``, ``forward``, ``code``, ...) are forwarded to it, so
    ``converted(species, coordinates, ...)`` runs it; ``torch.jit.freeze``
    and other functions that need the ScriptModule itself take
    ``converted.module``. (The spec also lives in the module's own code,
    ``spec_of_module``, for the ways of saving that drop extra files: saving
    a reloaded or frozen module.) ``kim_gnn_spec`` is the spec under the name
    converted modules carried before.
    """

    def __init__(self, module, spec: StagedModelSpec):
        self.module = module
        self.spec = spec

    @property
    def kim_gnn_spec(self) -> StagedModelSpec:
        return self.spec

    def extra_files(self, extra_files: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """The spec's extra files, with ``extra_files`` added."""
        files = dict(self.spec.to_extra_files())
        files.update(extra_files or {})
        return files

    def save(self, f, _extra_files=None, **kwargs):
        return self.module.save(f, _extra_files=self.extra_files(_extra_files), **kwargs)

    def save_to_buffer(self, _extra_files=None, **kwargs):
        return self.module.save_to_buffer(_extra_files=self.extra_files(_extra_files), **kwargs)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        if name in ("module", "spec"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"ConvertedModel({self.spec.architecture or 'model'}, {' '.join(self.spec.species)}, " \
               f"{self.spec.num_layers} layers, cutoff {self.spec.cutoff:g} A)"


def attach_spec(scripted, spec: StagedModelSpec) -> ConvertedModel:
    """``scripted`` with its spec, as ``convert`` returns it (a
    :class:`ConvertedModel`; the name is kept for callers of the former
    function that patched the module's ``save``)."""
    return ConvertedModel(scripted, spec)


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

    if isinstance(module, ConvertedModel):
        return module.spec
    spec = getattr(module, "kim_gnn_spec", None)
    if isinstance(spec, StagedModelSpec):
        return spec
    texts = []
    try:
        texts.append(str(getattr(module, SPEC_ATTRIBUTE)))
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


