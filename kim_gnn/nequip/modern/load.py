"""Recognise and load nequip >= 0.7 artifacts.

Recognising a file needs only the standard library (so the legacy
environment can tell a user which environment converts it); loading
``.nequip.zip`` and ``.ckpt`` needs nequip >= 0.7, loading a compiled
``.nequip.pth`` needs only torch.
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Optional, Tuple

from ...archives import load_pickled, load_torchscript, read_member, zip_names
from ...errors import KimGnnError, UnsupportedModelError, first_line
# MODERN_ENV_HINT: how to get an environment that converts these files (this
# adapter's ``environment_hint``); both hints are the family's, still
# importable from here.
from ..environments import LEGACY_ENV_HINT, MODERN_ENV_HINT  # noqa: F401

#: Metadata keys of a compiled (TorchScript) nequip >= 0.7 model.
COMPILED_METADATA_KEYS = (
    "model_dtype", "type_names", "num_types", "r_max", "per_edge_type_cutoff",
    "nequip_custom_ops_libs", "allow_tf32",
)

KINDS = ("package", "checkpoint", "compiled", "aotinductor")


def _read_member(path: str, suffix: str, limit: int = 1 << 26) -> Optional[bytes]:
    return read_member(path, suffix, limit)


def artifact_kind(path: str) -> Optional[str]:
    """'package' (.nequip.zip), 'checkpoint' (.ckpt), 'compiled'
    (TorchScript .nequip.pth), 'aotinductor' (.nequip.pt2), or None when the
    file is not a nequip >= 0.7 artifact. Reads the archive, not only the name."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    if path.endswith(".nequip.pt2"):
        return "aotinductor"
    names = zip_names(path)
    if not names:
        return None
    if any(n.endswith("/model/package_metadata.txt") for n in names):
        return "package"
    if any(n.endswith("/extra/type_names") for n in names) and any(n.endswith("/extra/r_max") for n in names):
        # 0.5/0.6 deployed files carry nequip_version and config; 0.7+ compiled files do not
        if not any(n.endswith("/extra/nequip_version") for n in names):
            return "compiled"
        return None
    if any("aotinductor" in n or n.endswith(".so") or n.endswith(".wrapper.cpp") for n in names):
        if any(n.endswith("extra/type_names") or "nequip" in n for n in names) or path.endswith(".pt2"):
            return "aotinductor"
    data = _read_member(path, "/data.pkl")
    if data is not None and b"info_dict" in data and b"nequip" in data and b"state_dict" in data:
        return "checkpoint"
    return None


def nequip_version() -> Optional[str]:
    """The installed nequip version, or None (without importing it)."""
    try:
        from importlib.metadata import version

        return version("nequip")
    except Exception:
        return None


def is_modern_version(version: Optional[str]) -> bool:
    if not version:
        return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (0, 7)


def import_nequip(need_allegro: bool = False):
    """Import nequip >= 0.7 (and allegro), or say which environment has it."""
    version = nequip_version()
    if not is_modern_version(version):
        found = f"nequip {version}" if version else "no nequip"
        raise KimGnnError(f"this model needs nequip >= 0.7, but this environment has {found}; {MODERN_ENV_HINT}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import nequip  # noqa: F401
            import nequip.nn  # noqa: F401
            if need_allegro:
                import allegro  # noqa: F401
        except ImportError as exc:
            raise KimGnnError(f"cannot import the nequip framework ({first_line(exc)}); {MODERN_ENV_HINT}") from None
    import sys

    return sys.modules["nequip"]


@contextlib.contextmanager
def restore_torch_state():
    """nequip sets process-wide state when it loads or builds models (default
    dtype float64, seeded random generators); give the caller theirs back."""
    import random

    import numpy as np
    import torch

    dtype = torch.get_default_dtype()
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        # nequip's global state seeds every generator the first time it is set
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def load_compiled(path: str):
    """A compiled (TorchScript) ``.nequip.pth``: (module, metadata)."""
    module, metadata = load_torchscript(path, COMPILED_METADATA_KEYS)
    if not metadata.get("type_names") or not metadata.get("r_max"):
        raise UnsupportedModelError(f"{path} is TorchScript but carries no nequip type_names / r_max metadata")
    return module, metadata


def load_eager(path: str, kind: str):
    """The eager ``GraphModel`` of a ``.nequip.zip`` or ``.ckpt`` (nequip's
    own ``load_saved_model``), in eval mode."""
    import warnings

    import_nequip(need_allegro=_mentions_allegro(path))
    with restore_torch_state():
        from nequip.model.saved_models.load_utils import load_saved_model
        from nequip.utils.global_state import set_global_state

        set_global_state()
        try:
            with warnings.catch_warnings(), _quiet_logging(), _with_suffix(path, kind) as named:
                warnings.simplefilter("ignore")
                model = load_saved_model(named, compile_mode="eager")
        except KimGnnError:
            raise
        except Exception as exc:
            what = "packaged model" if kind == "package" else "training checkpoint"
            raise KimGnnError(f"{path}: nequip could not load this {what} ({type(exc).__name__}: {first_line(exc)})") from None
    return model.eval()


@contextlib.contextmanager
def _with_suffix(path: str, kind: str):
    """nequip tells packages from checkpoints by the name (``.nequip.zip``);
    kim-gnn by the content, so a renamed package is given under its proper name."""
    if kind != "package" or path.endswith(".nequip.zip"):
        yield path
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kim-gnn-package-") as tmp:
        named = os.path.join(tmp, "model.nequip.zip")
        os.symlink(os.path.abspath(path), named)
        yield named


def _mentions_allegro(path: str) -> bool:
    names = zip_names(path)
    if any("/allegro/" in n for n in names):
        return True
    data = _read_member(path, "/data.pkl")
    return data is not None and b"allegro" in data


def package_config(path: str) -> Dict[str, object]:
    """The training config stored in a package or checkpoint (empty if none)."""
    import yaml

    text = _read_member(path, "/model/config.yaml")
    if text is not None:
        try:
            loaded = yaml.safe_load(text.decode("utf-8", "replace"))
            return loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            return {}
    return {}


def checkpoint_info(path: str) -> Dict[str, object]:
    try:
        ckpt = load_pickled(path)
        return dict(ckpt["hyper_parameters"]["info_dict"])
    except Exception:
        return {}


def trained_species_map(config: Dict[str, object]) -> Dict[str, str]:
    """chemical symbol -> type name from the training data transforms
    (``ChemicalSpeciesToAtomTypeMapper``), if the config has one."""
    found: Dict[str, str] = {}

    def visit(node):
        if isinstance(node, dict):
            target = str(node.get("_target_", ""))
            if target.endswith("ChemicalSpeciesToAtomTypeMapper") and isinstance(
                node.get("chemical_species_to_atom_type_map"), dict
            ):
                for k, v in node["chemical_species_to_atom_type_map"].items():
                    found.setdefault(str(k), str(v))
            for v in node.values():
                visit(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)

    visit(config.get("data", config))
    return found


@contextlib.contextmanager
def _quiet_logging():
    """nequip and hydra log at INFO level through their own handlers."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def load_any(path: str) -> Tuple[object, str, Dict[str, str]]:
    """(model, kind, metadata): the eager GraphModel (package, checkpoint) or
    the TorchScript module (compiled) with the metadata nequip stores."""
    path = os.fspath(path)
    kind = artifact_kind(path)
    if kind is None:
        raise UnsupportedModelError(f"{path} is not a nequip >= 0.7 model file (.nequip.zip, .ckpt, .nequip.pth)")
    refuse_aotinductor(path, kind)
    if kind == "compiled":
        module, metadata = load_compiled(path)
        return module, kind, metadata
    model = load_eager(path, kind)
    return model, kind, dict(getattr(model, "metadata", {}) or {})


def refuse_aotinductor(path: str, kind: Optional[str]) -> None:
    if kind == "aotinductor":
        raise UnsupportedModelError(
            f"{path} is an AOT Inductor (.nequip.pt2) model: compiled machine code without the module structure "
            "kim-gnn rewrites; convert the .nequip.zip package (or the training .ckpt, or a TorchScript "
            ".nequip.pth) it was compiled from instead"
        )
