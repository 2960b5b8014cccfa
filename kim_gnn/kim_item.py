"""The files of a KIM portable model item (docs/contract.md, "The portable
model directory"): item and driver names, the driver's ``.param`` file
(render and parse) and the item's ``CMakeLists.txt``.
"""

from __future__ import annotations

import re
from typing import Dict, Sequence

from .driver_facts import DEFAULT_DRIVER_NAME, PREPROCESSING
from .errors import KimGnnError
from .model_spec import StagedModelSpec

#: KIM item names of portable models: ``Prefix__MO_<12 digits>_<3 digits>``.
ITEM_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MO_[0-9]{12}_[0-9]{3}$")
DRIVER_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__MD_[0-9]{12}_[0-9]{3}$")

PARAM_FILE_NAME = "file.param"
MODEL_FILE_NAME = "model.pt"


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
            f"invalid KIM model driver name {name!r}: it must look like {DEFAULT_DRIVER_NAME}"
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
        f"{PREPROCESSING}\n"
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
    if preprocessing != PREPROCESSING:
        raise KimGnnError(f".param file preprocessing is {preprocessing!r}; kim-gnn models need {PREPROCESSING!r}")
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
