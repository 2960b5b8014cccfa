"""Architecture-independent entry point: convert whatever model file this is."""

import os

from .adapters import detect_adapter


def convert(source, **options):
    """Detect the architecture of ``source`` (a model file, or an in-memory
    module an adapter accepts) and convert it with its adapter.
    ``options`` (e.g. ``head="Default"`` for MACE) go to the adapter; one it
    does not take is an error."""
    adapter = detect_adapter(source)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    return adapter.convert(source, **adapter.check_options(options))
