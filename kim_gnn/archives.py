"""The one place kim-gnn opens model archives: zip members (TorchScript,
``torch.save`` and ``.nequip.zip`` files are zip archives), TorchScript
files with their extra files, and pickled torch files.

The zip readers need only the standard library (detection must not import
torch); ``load_torchscript`` and ``load_pickled`` import torch when called.
None of them interprets what it reads: the callers say what a member's
presence means and word their own errors.
"""

import os
import zipfile
from typing import Dict, Iterable, List, Optional, Tuple

from .errors import KimGnnError, first_line


def is_zip(path: str) -> bool:
    """Whether ``path`` is a zip archive (by its content, not its name)."""
    return zipfile.is_zipfile(path)


def list_zip(path: str) -> List[str]:
    """The member names of a zip archive; raises ``zipfile.BadZipFile`` or
    ``OSError`` when it cannot be read (see ``zip_names`` for the lenient form)."""
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def zip_names(path: str) -> List[str]:
    """The member names of a zip archive (TorchScript, torch.save, torch.package), or []."""
    try:
        return list_zip(path)
    except (zipfile.BadZipFile, OSError):
        return []


def read_member(path: str, suffix: str, limit: Optional[int] = None) -> Optional[bytes]:
    """The first member whose name ends with ``suffix`` (and no larger than
    ``limit`` bytes), or None: no such member, or not a readable zip archive."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(suffix) and (limit is None or info.file_size <= limit):
                    return zf.read(info.filename)
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    return None


def pickle_bytes(path: str) -> Optional[bytes]:
    """The pickle stream of a ``torch.save`` zip archive (its ``data.pkl``), or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return None
            return zf.read(names[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def code_contains(path: str, needle: bytes) -> bool:
    """Whether any TorchScript code member (``*/code/*.py``) of the archive
    contains ``needle``; False for anything that is not a readable zip archive."""
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if "/code/" in name and name.endswith(".py"):
                    if needle in zf.read(name):
                        return True
    except (zipfile.BadZipFile, OSError):
        return False
    return False


def is_torchscript(names: Iterable[str]) -> bool:
    """Whether zip member names are those of a TorchScript archive
    (``torch.jit.save``: code/ and constants.pkl)."""
    names = list(names)
    return any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names)


def has_torchscript_member(names: Iterable[str]) -> bool:
    """Whether any member name is one only a TorchScript archive has (code/
    or constants.pkl): the lenient test that refuses a ``torch.save`` file
    offered where TorchScript, or the other way round, is expected."""
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_torchscript(path: str, extra_files: Iterable[str], map_location="cpu",
                     refusal: str = "is not a TorchScript file that torch can load") -> Tuple[object, Dict[str, str]]:
    """``torch.jit.load`` with the named extra files: (module, {name: text}),
    each extra file decoded ("" when the archive lacks it). A file torch
    cannot load is a ``KimGnnError``: "<path> <refusal> (<torch's first line>)"."""
    import torch

    extra = {k: "" for k in extra_files}
    try:
        module = torch.jit.load(path, map_location=map_location, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError with long C++ traces
        raise KimGnnError(f"{path} {refusal} ({first_line(exc)})") from None
    return module, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in extra.items()}


def load_pickled(path: str, map_location="cpu", quiet: bool = False):
    """A pickled torch file (``torch.save``: a whole module, a checkpoint),
    unpickled in full (``weights_only=False``: it runs code from the file,
    as its own package loads it; kim-gnn says so in ``kim-gnn info``), so
    that torch >= 2.6's weights-only default does not refuse model classes.
    ``quiet``: torch's warnings while loading are not shown. Errors are
    torch's (the callers word them)."""
    import warnings

    import torch

    if not quiet:
        return torch.load(os.fspath(path), map_location=map_location, weights_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(os.fspath(path), map_location=map_location, weights_only=False)
