"""An original nequip model's outputs as the harness's ``OriginalResult``:
0.5/0.6 (``v06/reference.py``) and >= 0.7 (``modern/reference.py``) name
them alike."""

from typing import Optional

import numpy as np

from ..reference import OriginalResult


def original_result(out, atoms) -> OriginalResult:
    """``out``: the original model's output dict on ``atoms``; its stress
    only where the cell is periodic in every direction."""
    stress: Optional[np.ndarray] = None
    if np.all(atoms.pbc) and "stress" in out and out["stress"].numel() == 9:
        stress = out["stress"].detach().double().numpy().reshape(3, 3)
    return OriginalResult(
        energy=float(out["total_energy"].detach().double().sum()),
        energies=out["atomic_energy"].detach().double().numpy().reshape(-1),
        forces=out["forces"].detach().double().numpy().reshape(-1, 3),
        stress=stress,
    )
