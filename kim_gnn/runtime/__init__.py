"""The core staged runtime: the stage plan, the aggregation strategy and the
energy scatter, written once for every architecture (``runtime.py``)."""

from .aggregation import AtenAggregation, KernelAggregation, make_aggregation
from .plan import StagePlan, needed_levels, pruned_order
from .runtime import StagedRuntime

__all__ = [
    "AtenAggregation", "KernelAggregation", "StagePlan", "StagedRuntime", "make_aggregation", "needed_levels",
    "pruned_order",
]
