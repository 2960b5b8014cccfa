"""What both NequIP adapters know of nequip's module trees (0.5/0.6
``v06/convert.py`` and >= 0.7 ``modern/network.py`` check their own trees
with these)."""

import torch

from ..errors import UnsupportedModelError

#: The pair potentials nequip adds to the per-atom energy after the network.
PAIR_POTENTIALS = ("ZBL", "LennardJones", "SimpleLennardJones")

#: TorchScript keeps a dtype attribute (``GraphModel.model_dtype``) as its
#: ScalarType code.
SCALAR_TYPE_CODES = {6: torch.float32, 7: torch.float64}


def class_name(module) -> str:
    """The class a module was built from: a scripted module's
    ``original_name``, else its type's name."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


def refuse_module(name: str, kind: str, after_layers: bool) -> UnsupportedModelError:
    """The error for a child of the network that neither family knows: its
    locality cannot be proven, so it is not converted."""
    where = "after" if after_layers else "before"
    return UnsupportedModelError(
        f"unsupported module {name!r} ({kind}) {where} the message-passing layers: "
        "kim-gnn cannot prove it local, so it will not convert it"
    )
