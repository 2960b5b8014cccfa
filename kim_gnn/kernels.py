"""The kim_gnn op library: deterministic CSR scatter kernels (``csrc/``).

``kim_gnn/lib/libkim_gnn_ops.so`` is a plain shared library (libtorch and
libc10 only, no Python) that registers, under ``TORCH_LIBRARY(kim_gnn, ...)``:

* ``torch.ops.kim_gnn.segment_sum(src, ptr)``: ``out[r]`` = sum of
  ``src[ptr[r] .. ptr[r+1]-1]`` along dim 0 in that order (entries sorted by
  receiver, ``ptr`` their CSR row pointer); backward copies each row's
  gradient to its entries;
* ``torch.ops.kim_gnn.gather(x, index, perm, ptr)``: ``x[index]`` whose
  backward (a scatter-add into the gathered rows) is a CSR sum over the
  entries sorted by index (``perm`` the stable sorting permutation, ``ptr``
  the row pointer of the sorted index).

Both sum in a fixed order (one thread per row; no atomics on the GPU), so
their results are the same bits on every call and for any number of threads;
first derivatives only (a second one raises). CPU always; CUDA when the
library was built with a CUDA toolkit and a CUDA torch.

``pip install --no-build-isolation -e .`` builds it (``setup.py`` calls
``csrc/build_ops.py``); ``python csrc/build_ops.py`` rebuilds it by hand. A
converted model uses it only when converted with ``kernels="kim_gnn"``
(``kim-gnn convert --kernels kim_gnn``); any process that runs such a model
must have loaded the library first (``load_library()`` here; a C++ driver
``dlopen``s it or gets it through ``LD_PRELOAD``).

This module imports torch only inside its functions.
"""

import json
import os
from typing import Optional

from .errors import KimGnnError

#: Values of a converted model's ``details["kernels"]``: ``kim_gnn`` when the model
#: calls the op library (``details["kernels_applied"]`` says in which parts,
#: ``details["kernels_not_applied"]`` which parts kept aten sums), else ``aten``.
ATEN = "aten"
KIM_GNN = "kim_gnn"
CHOICES = (ATEN, KIM_GNN)

LIB_NAME = "libkim_gnn_ops.so"  # (csrc/build_ops.py reads it from here)
LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
BUILD_COMMAND = "pip install --no-build-isolation -e . (or: python csrc/build_ops.py) in the kim-gnn checkout"

_loaded: Optional[str] = None


def library_path() -> str:
    """The op library's path; ``KimGnnError`` saying how to build it when it
    is not there. ``KIM_GNN_OPS_LIBRARY`` names another file."""
    path = os.environ.get("KIM_GNN_OPS_LIBRARY") or os.path.join(LIB_DIR, LIB_NAME)
    if not os.path.isfile(path):
        raise KimGnnError(
            f"the kim_gnn op library is not built ({path} does not exist); build it with {BUILD_COMMAND}, "
            "which needs a C++ compiler, or convert without --kernels"
        )
    return path


def build_info() -> dict:
    """What ``csrc/build_ops.py`` recorded about the library ({} if nothing)."""
    try:
        with open(os.path.join(LIB_DIR, "build-info.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def available() -> bool:
    """Whether the library exists and loads into this process."""
    try:
        load_library()
    except KimGnnError:
        return False
    return True


def load_library() -> str:
    """Load the op library into this process (once); returns its path.
    ``KimGnnError`` if it is missing or does not load (e.g. built for another
    torch)."""
    global _loaded
    import torch

    if _loaded is not None:
        return _loaded
    path = library_path()
    if not _ops_registered():
        try:
            torch.ops.load_library(path)
        except (OSError, RuntimeError) as exc:
            built_for = build_info().get("torch_version", "an unknown torch")
            raise KimGnnError(
                f"the kim_gnn op library {path} does not load into this process (built for torch {built_for}, "
                f"this is torch {torch.__version__}): {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                f"rebuild it with {BUILD_COMMAND}"
            ) from None
    _loaded = path
    return path


def _ops_registered() -> bool:
    import torch

    try:
        torch.ops.kim_gnn.segment_sum  # noqa: B018 (raises if the namespace has no such op)
        return True
    except (AttributeError, RuntimeError):
        return False


def check_choice(kernels: Optional[str], prune: bool = True) -> str:
    """The kernels choice of a conversion ('aten' by default); an unknown
    one, 'kim_gnn' for an unpruned model, or 'kim_gnn' without the built
    library is an error. Loads the library for 'kim_gnn' (TorchScript
    compiles calls to its ops only once they are registered)."""
    if kernels is None:
        return ATEN
    if kernels not in CHOICES:
        raise KimGnnError(f"unknown kernels {kernels!r}: choose one of {', '.join(CHOICES)}")
    if kernels == KIM_GNN:
        if not prune:
            raise KimGnnError("--kernels kim_gnn applies to the pruned model only; drop --no-prune (prune=False)")
        load_library()
    return kernels


def archive_uses_ops(path: str) -> bool:
    """Whether a TorchScript archive's code calls kim_gnn ops (it then loads
    only once the library is loaded). Reads the code, not the metadata, so it
    also holds for models re-saved without kim-gnn's extra files."""
    from .archives import code_contains

    return code_contains(path, b"ops.kim_gnn.")


def ensure_for_spec(spec) -> None:
    """Load the op library when a converted model's spec says it uses it."""
    if spec is not None and getattr(spec, "details", {}).get("kernels") == KIM_GNN:
        load_library()
