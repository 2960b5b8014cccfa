"""Architecture-independent entry point: convert whatever model file this is."""

import os

from .adapters import detect_adapter


def convert(path):
    """Detect the architecture of ``path`` and convert it with its adapter."""
    return detect_adapter(os.fspath(path)).convert(os.fspath(path))
