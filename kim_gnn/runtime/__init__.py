"""The core staged runtime: the stage plan, the aggregation strategy and the
energy scatter, written once for every architecture (``runtime.py``), and
the base of every staged module with its ``energy_and_edge_vectors``
(``staged_module.py``)."""

from .aggregation import AtenAggregation, KernelAggregation, make_aggregation
from .plan import StagePlan, needed_levels, pruned_order
from .runtime import StagedRuntime
from .staged_module import StagedModule

__all__ = [
    "AtenAggregation", "KernelAggregation", "StagePlan", "StagedModule", "StagedRuntime", "make_aggregation",
    "needed_levels", "pruned_order",
]
