"""Recognise a MACE model file without importing torch or mace."""

import zipfile
from typing import Optional


def pickle_bytes(path: str) -> Optional[bytes]:
    """The pickle stream of a ``torch.save`` zip archive, or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return None
            return zf.read(names[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def is_mace_file(path: str) -> bool:
    """A ``torch.save`` archive whose pickle refers to mace's model classes."""
    data = pickle_bytes(path)
    return data is not None and b"mace.modules.models" in data
