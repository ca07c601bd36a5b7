"""The cost model: FLOPs and bytes moved per operator, and each operator's facts (family,
traits), in one table (conventions: docs/cost-model.md). Plugins add ops of their own domain
through the `memlint.costs` entry point group (memlint.costs.plugins)."""

from memlint.costs import (  # noqa: F401  (importing a family registers its formulas)
    attention,
    control_flow,
    conv,
    data_movement,
    elementwise,
    matmul,
    moe,
    normalization,
    pooling,
    recurrent,
    reduction,
)
from memlint.costs.model import ByteCounts, CostStatus, OpCost
from memlint.costs.plugins import CostPluginError
from memlint.costs.registry import (
    FAMILIES,
    CostContext,
    Formula,
    OpInfo,
    add_formula,
    cost_of,
    family_of,
    is_registered,
    op_info,
    op_info_of,
    register,
    register_metadata,
    registered_ops,
)

__all__ = [
    "FAMILIES",
    "ByteCounts",
    "CostContext",
    "CostPluginError",
    "CostStatus",
    "Formula",
    "OpCost",
    "OpInfo",
    "add_formula",
    "cost_of",
    "family_of",
    "is_registered",
    "op_info",
    "op_info_of",
    "register",
    "register_metadata",
    "registered_ops",
]
