"""Build small seeded MACE / ScaleShiftMACE models with random weights.

Used by the tests, the benchmarks and ``kim-gnn example --architecture
mace``. Needs mace-torch (0.3.x, with e3nn 0.4.4). The model is built the
way ``mace_run_train`` builds it and saved the way it saves it (the whole
pickled module, ``torch.save(model, path)``); E0s, scale and shift are set
to non-trivial values so that conversion must carry them.
"""

import os
import tempfile
import warnings
from typing import Optional, Sequence, Union

import numpy as np

from ..reference import default_dtype

INTERACTION_BLOCKS = (
    "RealAgnosticInteractionBlock",
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
)


def build_example_mace(
    out: Optional[str] = None,
    species: Sequence[str] = ("Si",),
    num_interactions: int = 2,
    max_ell: int = 2,
    correlation: Union[int, Sequence[int]] = 2,
    interaction: str = "RealAgnosticResidualInteractionBlock",
    interaction_first: Optional[str] = None,
    r_max: float = 3.5,
    num_channels: int = 8,
    hidden_l: int = 1,
    model_dtype: str = "float64",
    scale_shift: bool = True,
    zbl: bool = False,
    distance_transform: str = "None",
    heads: Optional[Sequence[str]] = None,
    readout: str = "NonLinearReadoutBlock",
    radial_type: str = "bessel",
    seed: int = 0,
    **model_options,
):
    """Build (and with ``out``, save) a seeded random MACE model.

    ``interaction_first`` defaults to ``interaction`` with the residual
    blocks' first layer made non-residual, as ``mace_run_train`` does.
    Further keyword arguments go to the MACE constructor as they are
    (``apply_cutoff``, ``use_last_readout_only``, ``edge_irreps``, ...);
    irreps may be given as strings.
    """
    import torch

    from .convert import import_mace

    import_mace()
    # mace compiles parts of the model with TorchScript while building it,
    # and TorchScript warns about mace's annotations: nothing a user can act on.
    with default_dtype(getattr(torch, model_dtype)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from e3nn import o3
        from mace import modules

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        from ase.data import atomic_numbers as z_of

        zs = [int(z_of[s]) for s in species]
        heads = list(heads) if heads else None
        n_heads = len(heads) if heads else 1
        if interaction_first is None:
            interaction_first = interaction.replace("Residual", "") if "Density" not in interaction else interaction
        hidden = "+".join(
            f"{num_channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(hidden_l + 1)
        )
        # E0 per element and head: [n_elements, n_heads] with several heads.
        e0 = rng.uniform(-8.0, -2.0, size=(len(zs), n_heads))
        atomic_energies = e0[:, 0] if n_heads == 1 else e0.T
        kwargs = dict(
            r_max=float(r_max),
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=int(max_ell),
            interaction_cls=getattr(modules.blocks, interaction),
            interaction_cls_first=getattr(modules.blocks, interaction_first),
            num_interactions=int(num_interactions),
            num_elements=len(zs),
            hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps("16x0e"),
            gate=torch.nn.functional.silu,
            atomic_energies=atomic_energies,
            avg_num_neighbors=float(rng.uniform(6.0, 14.0)),
            atomic_numbers=zs,
            correlation=list(correlation) if not isinstance(correlation, int) else int(correlation),
            pair_repulsion=bool(zbl),
            distance_transform=distance_transform,
            radial_MLP=[16, 16],
            radial_type=radial_type,
            heads=heads,
            readout_cls=getattr(modules.blocks, readout),
        )
        for key, value in model_options.items():
            kwargs[key] = o3.Irreps(value) if key.endswith("irreps") and isinstance(value, str) else value
        if scale_shift:
            scale = rng.uniform(0.5, 2.0, size=n_heads)
            shift = rng.uniform(-1.0, 1.0, size=n_heads)
            model = modules.ScaleShiftMACE(
                atomic_inter_scale=float(scale[0]) if n_heads == 1 else scale.tolist(),
                atomic_inter_shift=float(shift[0]) if n_heads == 1 else shift.tolist(),
                **kwargs,
            )
        else:
            model = modules.MACE(**kwargs)
        # Random weights are of order one at initialisation; make readout biases
        # and residual paths matter too.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model = model.to(getattr(torch, model_dtype)).eval()
    if out is not None:
        _save_atomically(model, out)
    return model


def _save_atomically(model, out: str) -> None:
    import torch

    out = os.path.abspath(out)
    fd, tmp = tempfile.mkstemp(prefix=".kim-gnn-", suffix=".model", dir=os.path.dirname(out))
    os.close(fd)
    try:
        torch.save(model, tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
