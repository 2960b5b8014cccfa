"""Importing e3nn 0.4.4 (and nequip 0.5/0.6, mace-torch 0.3.x, built on it)
under torch's defaults.

On import e3nn 0.4.4 ``torch.load``s its constants file (a tuple of tensors
and a dict of ``slice`` objects). torch >= 2.6 loads weights-only by
default, whose unpickler refuses ``slice``, so ``import e3nn`` fails with an
``UnpicklingError`` unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set (which
nequip and mace set for the whole process when imported first).

``e3nn_importable()`` instead allows ``slice`` in weights-only loads for the
duration of the import only (``torch.serialization.safe_globals``: weights-only
stays on, nothing else is allowed, the allow-list is restored on exit); it
sets no environment variable and leaves torch's settings as they were.
"""

import contextlib


@contextlib.contextmanager
def e3nn_importable():
    import torch

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # torch < 2.5: torch.load was not weights-only by default
        yield
        return
    with safe_globals([slice]):
        yield
