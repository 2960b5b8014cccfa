"""``kimspec.edn``: the metadata file every OpenKIM item carries.

kim-gnn writes one into each item it makes (a converted portable model, the
driver item of ``kim-gnn install-driver --export``), with the KIM project's
own EDN library ``kim-edn``, and reads it back before the item is complete.

What goes in is only what is known: from kim-gnn, the item's name
(``extended-id``), its species in the model's order, its driver, the KIM API
version its CMake files ask for, the kind of potential (the source model's
architecture), and where it came from (``content-origin`` and the ``kim-gnn``
map: kim-gnn's version, the source file and its SHA-256, the architecture and
its version, the conversion's options); from the user, through
``kim-gnn convert --metadata FILE`` (YAML or JSON), the title, description,
developers, citations (BibTeX entries or DOIs), license, publication year and
a training-data reference. A field the user did not give is left out, never
made up.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional

from . import contract
from .citations import citation
from .errors import KimGnnError

KIMSPEC_FILE_NAME = "kimspec.edn"

#: The KIM API version the items' CMake files require (``find_package(KIM-API-ITEMS 2.2 ...)``).
KIM_API_VERSION = "2.2"

DOMAIN = "openkim.org"

#: Keys of a ``--metadata`` file, and the kimspec key each one fills.
#: ``training_data`` goes into the ``kim-gnn`` map (OpenKIM's own ``training``
#: key names KIM training-set items, which a free reference is not).
METADATA_KEYS = {
    "title": "title",
    "description": "description",
    "developers": "developer",
    "citations": "source-citations",
    "license": "license",
    "publication_year": "publication-year",
    "training_data": None,
}
#: Accepted spellings of the same keys (kimspec's own, singular forms).
METADATA_ALIASES = {
    "developer": "developers",
    "source-citations": "citations",
    "source_citations": "citations",
    "publication-year": "publication_year",
    "training-data": "training_data",
    "training": "training_data",
}

def _require_kim_edn():
    try:
        import kim_edn
    except ImportError:
        raise KimGnnError(
            "the kim-edn package is not installed: kim-gnn writes each item's kimspec.edn with it "
            "(pip install kim-edn, or reinstall kim-gnn with its extras)"
        ) from None
    return kim_edn


# --- the user's metadata -------------------------------------------------------

def load_metadata(path: str) -> Dict[str, Any]:
    """Read a ``--metadata`` file (YAML or JSON, by content) into kimspec
    entries; unknown keys and values of the wrong kind are refused."""
    import yaml

    if not os.path.isfile(path):
        raise KimGnnError(f"--metadata {path}: no such file")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise KimGnnError(f"--metadata {path} is neither valid JSON nor valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KimGnnError(f"--metadata {path} must hold a map of fields (title, description, ...)")
    return metadata_to_kimspec(data, source=path)


def metadata_to_kimspec(data: Dict[str, Any], source: str = "metadata") -> Dict[str, Any]:
    """The kimspec entries of user metadata (see ``METADATA_KEYS``)."""
    out: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    for raw_key, value in data.items():
        key = METADATA_ALIASES.get(str(raw_key), str(raw_key)).replace("-", "_")
        if key not in METADATA_KEYS:
            raise KimGnnError(
                f"{source}: unknown field {raw_key!r} (kim-gnn takes {', '.join(METADATA_KEYS)}; the rest of "
                "kimspec.edn is filled from the model)"
            )
        if value is None or (isinstance(value, (str, list)) and not value):
            continue
        if key in ("title", "description", "license"):
            if not isinstance(value, str):
                raise KimGnnError(f"{source}: {raw_key} must be text")
            out[METADATA_KEYS[key]] = " ".join(value.split()) if key != "description" else value.strip()
        elif key == "developers":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                raise KimGnnError(f"{source}: developers must be a name or a list of names")
            out["developer"] = [n.strip() for n in names]
        elif key == "citations":
            items = value if isinstance(value, list) else [value]
            out["source-citations"] = [entry for item in items for entry in citation(item)]
        elif key == "publication_year":
            year = str(value).strip()
            if not re.fullmatch(r"\d{4}", year):
                raise KimGnnError(f"{source}: publication_year must be a year (e.g. 2024), got {value!r}")
            out["publication-year"] = year
        elif key == "training_data":
            if not isinstance(value, str):
                raise KimGnnError(f"{source}: training_data must be text (a DOI, an address or a description)")
            extra["training-data"] = value.strip()
    if extra:
        out["kim-gnn"] = extra
    return out


# --- what kim-gnn knows ------------------------------------------------------------

def model_kimspec(item_name: str, spec: contract.StagedModelSpec, driver_name: str,
                  metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The kimspec of a converted portable model: what kim-gnn knows, then
    the user's ``metadata`` (from ``load_metadata``)."""
    from ._version import __version__

    provenance: Dict[str, Any] = {"kim-gnn-version": spec.kim_gnn_version or __version__}
    for key, value in (("architecture", spec.architecture), ("architecture-version", spec.architecture_version),
                       ("source-file", spec.source_file), ("source-sha256", spec.source_sha256)):
        if value:
            provenance[key] = value
    provenance.update({
        "model-dtype": spec.model_dtype,
        "cutoff": float(spec.cutoff),
        "num-layers": int(spec.num_layers),
        "influence-distance": float(spec.influence_distance),
    })
    details = {key.replace("_", "-"): value for key, value in sorted(spec.details.items())
               if isinstance(value, (str, int, float, bool)) and value != ""}
    if details:
        provenance["conversion"] = details
    origin = f"Converted by kim-gnn {provenance['kim-gnn-version']}"
    if spec.architecture:
        origin += f" from a {spec.architecture}" + (f" {spec.architecture_version}" if spec.architecture_version else "")
        origin += " model"
    if spec.source_file:
        origin += f" ({os.path.basename(spec.source_file)}"
        origin += f", sha256 {spec.source_sha256})" if spec.source_sha256 else ")"
    kimspec: Dict[str, Any] = {
        "extended-id": item_name,
        "domain": DOMAIN,
        "kim-api-version": KIM_API_VERSION,
        "model-driver": driver_name,
        "species": list(spec.species),
    }
    if spec.architecture:
        kimspec["potential-type"] = spec.architecture.lower()
    kimspec["content-origin"] = origin + "."
    kimspec["kim-gnn"] = provenance
    return _merge(kimspec, metadata)


def driver_kimspec(driver_name: str = contract.KIM_GNN_DRIVER_NAME,
                   metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The kimspec of kim-gnn's model driver item."""
    from ._version import __version__

    kimspec: Dict[str, Any] = {
        "extended-id": driver_name,
        "domain": DOMAIN,
        "kim-api-version": KIM_API_VERSION,
        "title": "kim-gnn model driver: staged TorchScript graph neural network potentials",
        "description": (
            "Runs the portable models that kim-gnn converts from NequIP, Allegro and MACE potentials "
            "(TorchScript model.pt and file.param, the TorchML format): builds one neighbor graph per "
            "message-passing layer from the KIM neighbor list, calls the model and returns energy, "
            "forces, per-particle energies, the virial and, for models with energy_and_edge_vectors, "
            "per-particle virials (edge-force decomposition) by automatic differentiation. Needs libtorch "
            "(the torch wheel of the Python that builds it)."
        ),
        "content-origin": f"kim-gnn {__version__}, csrc/driver.",
        "kim-gnn": {"kim-gnn-version": __version__},
    }
    return _merge(kimspec, metadata)


def _merge(kimspec: Dict[str, Any], metadata: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    for key, value in (metadata or {}).items():
        if key == "kim-gnn":
            kimspec["kim-gnn"] = {**kimspec.get("kim-gnn", {}), **value}
        else:
            kimspec[key] = value
    if "kim-gnn" in kimspec:  # kim-gnn's own map last, after the standard keys
        kimspec["kim-gnn"] = kimspec.pop("kim-gnn")
    return kimspec


# --- writing and reading --------------------------------------------------------

def render(kimspec: Dict[str, Any]) -> str:
    """The EDN text of ``kimspec``, checked by reading it back with kim-edn."""
    kim_edn = _require_kim_edn()
    text = kim_edn.dumps(kimspec, indent=2) + "\n"
    if kim_edn.loads(text) != kimspec:
        raise KimGnnError("kimspec.edn does not read back as written (kim-edn round trip)")
    return text


def write(directory: str, kimspec: Dict[str, Any]) -> str:
    path = os.path.join(directory, KIMSPEC_FILE_NAME)
    text = render(kimspec)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def read(path: str) -> Dict[str, Any]:
    """A ``kimspec.edn`` (or the one in an item directory), read with kim-edn."""
    kim_edn = _require_kim_edn()
    if os.path.isdir(path):
        path = os.path.join(path, KIMSPEC_FILE_NAME)
    try:
        with open(path, encoding="utf-8") as fh:
            data = kim_edn.load(fh)
    except OSError as exc:
        raise KimGnnError(f"cannot read {path}: {exc.strerror}") from None
    except Exception as exc:
        raise KimGnnError(f"{path} is not valid EDN ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise KimGnnError(f"{path} is not an EDN map")
    return data
