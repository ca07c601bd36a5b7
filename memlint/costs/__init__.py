"""The cost model: FLOPs and bytes moved per operator (conventions: docs/cost-model.md)."""

from memlint.costs import (  # noqa: F401  (importing a family registers its formulas)
    attention,
    control_flow,
    conv,
    data_movement,
    elementwise,
    matmul,
    normalization,
    pooling,
    recurrent,
    reduction,
)
from memlint.costs.model import ByteCounts, CostStatus, OpCost
from memlint.costs.registry import CostContext, cost_of, is_registered, registered_ops

__all__ = [
    "ByteCounts",
    "CostContext",
    "CostStatus",
    "OpCost",
    "cost_of",
    "is_registered",
    "registered_ops",
]
