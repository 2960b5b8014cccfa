"""The one finite-difference derivative of the verification: central
differences at ``h`` and ``h / 2``, Richardson-extrapolated (error O(h^4)).

Used by the harness (the stress of an original model that gives none, from
its energy under strain) and by the forces check of ``kim-gnn check`` (forces
against the energy's derivative along a coordinate).
"""

from typing import Callable


def richardson_derivative(f: Callable[[float], float], step: float) -> float:
    """d f / d x at x = 0 from ``f(+-step)`` and ``f(+-step / 2)``:
    (4 D(step / 2) - D(step)) / 3 with D(h) = (f(h) - f(-h)) / (2 h)."""
    d = [(f(h) - f(-h)) / (2 * h) for h in (step, step / 2)]
    return (4 * d[1] - d[0]) / 3
