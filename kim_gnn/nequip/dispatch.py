"""``convert_nequip`` for every NequIP (the family's entry point): tells a
0.5/0.6 ``deployed.pth`` (``v06/``) from nequip >= 0.7 artifacts and in-memory
models (``modern/``) by itself."""

import os


def is_modern(source) -> bool:
    """Whether ``source`` (a file or an in-memory module) is a nequip >= 0.7
    model rather than a 0.5/0.6 ``deployed.pth``."""
    if isinstance(source, (str, os.PathLike)):
        from .modern.load import artifact_kind

        return artifact_kind(os.fspath(source)) is not None
    from .modern.network import is_modern_module

    return is_modern_module(source)


def convert_nequip(source, type_map=None, prune=True, kernels=None, scalar_only_last_layer=True):
    """Convert a NequIP model into a staged TorchScript model that follows the
    TorchML driver contract: a 0.5/0.6 ``deployed.pth``, or a nequip >= 0.7
    (0.19) ``.nequip.zip`` / ``.ckpt`` / compiled ``.nequip.pth`` / in-memory
    ``GraphModel``, NequIP or Allegro. ``type_map`` (element -> type name)
    applies to nequip >= 0.7 models only; ``prune`` (pruned staged execution,
    the default) and ``kernels`` ("aten", the default, or "kim_gnn": the
    deterministic CSR kernels of ``kim_gnn/kernels.py``) to every NequIP;
    ``scalar_only_last_layer`` (the default) to 0.5/0.6 models only (nequip
    >= 0.7 builds its last layer scalar-only itself)."""
    from ..errors import KimGnnError

    if is_modern(source):
        from .modern.convert import convert_nequip_modern

        return convert_nequip_modern(source, type_map=type_map, prune=prune, kernels=kernels)
    if type_map is not None:
        raise KimGnnError("type_map applies to nequip >= 0.7 models; 0.5/0.6 deployed models map species themselves")
    import torch

    if isinstance(source, torch.nn.Module):
        raise KimGnnError(
            f"an in-memory {type(source).__name__} is not a nequip >= 0.7 GraphModel; NequIP 0.5/0.6 models are "
            "converted from their deployed.pth file"
        )
    from .v06.convert import convert_nequip as convert_nequip_legacy

    return convert_nequip_legacy(source, prune=prune, kernels=kernels,
                                 scalar_only_last_layer=scalar_only_last_layer)
