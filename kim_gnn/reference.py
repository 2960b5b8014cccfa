"""What the verification harness needs from an architecture's original model."""

import contextlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass
class OriginalResult:
    """The original periodic model's answer on one structure (ASE units and signs)."""

    energy: float
    energies: Optional[np.ndarray]  # [n_atoms], None where the model gives none
    forces: np.ndarray  # [n_atoms, 3]
    stress: Optional[np.ndarray]  # [3, 3], eV/A^3, None without a full cell


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Run the original model in the default dtype it was built for."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
