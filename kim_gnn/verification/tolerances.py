"""Every pass/fail threshold of the verification, by model dtype: one table.

``kim_gnn.contract.MODEL_DTYPES`` lists the dtypes kim-gnn converts; this
table has a row for each (tests/verification/test_check.py holds the two equal). The
harness (``verify``) and the checks (``kim-gnn check``) read their numbers
from here and nowhere else.

Per dtype:

* ``verify``: converted vs original. Energies per atom and per-atom energies
  are relative to max(1, |value|); forces and stresses absolute in eV/A and
  eV/A^3, relative to max(1, largest component). ``atomic_virial``: per-atom
  virials (eV) against the original's edge-force decomposition, relative to
  max(``atomic_virial_floor``, largest component): float64 to the largest
  component itself (floor 0), float32 to its precision (floor 1 eV, as the
  forces).
* ``fd_strain``: strain step of the finite-difference stress (Richardson
  extrapolation of central differences at h and h/2, see
  ``finite_difference.py``), for an original model that gives no stress.
* ``fd_noise``: relative rounding error of one energy evaluation, which the
  finite-difference stress's limit allows for (divided by the step).
* ``check``: the checks of a converted model alone. ``fd_step`` (A) is the
  displacement of the forces check's finite differences; ``forces_fd`` the
  relative error allowed against them; ``jump_energy`` / ``jump_forces`` the
  largest jump across the cutoff; ``beyond`` the relative change beyond it.
"""

from typing import Dict

from ..errors import KimGnnError

TABLE: Dict[str, dict] = {
    "float64": {
        "verify": {"energy_per_atom": 1e-10, "atomic_energy": 1e-10, "forces": 1e-10, "stress": 1e-10,
                   "atomic_virial": 1e-9, "atomic_virial_floor": 0.0},
        "fd_strain": 1e-3,
        "fd_noise": 1e-15,
        "check": {"fd_step": 1e-3, "forces_fd": 1e-6, "jump_energy": 1e-6, "jump_forces": 1e-5, "beyond": 1e-12},
    },
    "float32": {
        "verify": {"energy_per_atom": 5e-6, "atomic_energy": 2e-5, "forces": 1e-4, "stress": 1e-5,
                   "atomic_virial": 2e-5, "atomic_virial_floor": 1.0},
        "fd_strain": 1e-2,
        "fd_noise": 1e-6,
        "check": {"fd_step": 1e-2, "forces_fd": 2e-2, "jump_energy": 2e-4, "jump_forces": 2e-3, "beyond": 1e-5},
    },
}

#: Views of the table under the names the harness and the checks use.
TOLERANCES: Dict[str, Dict[str, float]] = {dtype: row["verify"] for dtype, row in TABLE.items()}
FD_STRAIN: Dict[str, float] = {dtype: row["fd_strain"] for dtype, row in TABLE.items()}
FD_NOISE: Dict[str, float] = {dtype: row["fd_noise"] for dtype, row in TABLE.items()}
CHECK_TOLERANCES: Dict[str, Dict[str, float]] = {dtype: row["check"] for dtype, row in TABLE.items()}

#: RSS growth (bytes) allowed over the memory check's calls (any dtype).
MEMORY_GROWTH_LIMIT = 20 * 1024 * 1024
#: Growth of the C heap in use (bytes) allowed over the memory check's calls:
#: 10 kB per call over the default 100 (a sound model holds it at 0 after the
#: warm-up; a few kB move with other threads of the process).
MEMORY_HEAP_GROWTH_LIMIT = 1024 * 1024


def tolerances_for(model_dtype: str) -> Dict[str, float]:
    """The pass/fail thresholds of a model dtype; an unknown dtype is an
    error (never a silent fallback to another dtype's tolerances)."""
    if model_dtype not in TOLERANCES:
        raise KimGnnError(
            f"the converted model's dtype {model_dtype!r} is unknown: kim-gnn has tolerances for "
            f"{', '.join(TOLERANCES)} only"
        )
    return dict(TOLERANCES[model_dtype])
