"""Recognise a MACE model file without importing torch or mace."""

from ..archives import pickle_bytes


def is_mace_file(path: str) -> bool:
    """A ``torch.save`` archive whose pickle refers to mace's model classes."""
    data = pickle_bytes(path)
    return data is not None and b"mace.modules.models" in data
