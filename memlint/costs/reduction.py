"""Reductions, arg-reductions, softmax, TopK and cumulative sums.

Counts used (all on the vector unit). Reductions count per INPUT element, plus a finishing step
per OUTPUT element where the op has one:

| FLOPs          | ops                                                                             |
|----------------|---------------------------------------------------------------------------------|
| 1              | ReduceSum, ReduceMax, ReduceMin, ReduceProd, ArgMax, ArgMin (an add or a        |
|                | compare); Hardmax (the argmax compare; the one-hot write is no arithmetic);     |
|                | CumSum, CumProd                                                                 |
| 1 (+1 per out) | ReduceMean (divide), ReduceLogSum (log)                                         |
| 2              | ReduceSumSquare (square, add), ReduceL1 (abs, add)                              |
| 2 (+1 per out) | ReduceL2 (square, add; sqrt), ReduceLogSumExp (exp, add; log)                   |
| 5              | Softmax (max, sub, exp, sum, div); LogSoftmax (max, sub, exp, sum, sub of the   |
|                | log-sum, whose log per row is amortised)                                        |
| ceil(log2 k)   | TopK, at least 1: each element enters a heap of the k best (k = 1 is an argmax, |
|                | 1 compare). k is input 1 when known, else the output size on axis               |

com.microsoft QLinearSoftmax counts as Softmax, in the dtype of its int8/uint8 input.

Bytes: each input read once and each output written once at its dtype (ArgMax/ArgMin/TopK
indices are int64).
"""

from __future__ import annotations

import math

from memlint.costs.model import OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register

MS = "com.microsoft"

SOFTMAX_FLOPS = 5  # per element: max, subtract, exp, sum, divide (also used by attention)
REDUCTION = OpInfo("reduction", reduction=True)

# op -> (FLOPs per input element, FLOPs per output element)
REDUCTIONS: dict[str, tuple[int, int]] = {
    "ReduceSum": (1, 0),
    "ReduceMax": (1, 0),
    "ReduceMin": (1, 0),
    "ReduceProd": (1, 0),
    "ArgMax": (1, 0),
    "ArgMin": (1, 0),
    "ReduceMean": (1, 1),
    "ReduceLogSum": (1, 1),
    "ReduceSumSquare": (2, 0),
    "ReduceL1": (2, 0),
    "ReduceL2": (2, 1),
    "ReduceLogSumExp": (2, 1),
    "Softmax": (SOFTMAX_FLOPS, 0),
    "LogSoftmax": (SOFTMAX_FLOPS, 0),
    "Hardmax": (1, 0),
    "CumSum": (1, 0),
    "CumProd": (1, 0),
}


def reduction(per_input: int, per_output: int = 0) -> Formula:
    """The formula of a reduction: `per_input` FLOPs per element of input 0, plus `per_output`
    per element of output 0."""

    def formula(ctx: CostContext) -> OpCost:
        return ctx.cost(per_input * math.prod(ctx.shape(0)) + per_output * ctx.out_numel())

    return Formula(formula, REDUCTION)


for _op, (_per_input, _per_output) in REDUCTIONS.items():
    add_formula(_op, reduction(_per_input, _per_output))
add_formula("QLinearSoftmax", reduction(*REDUCTIONS["Softmax"]).computing_in(0), domain=MS)


@register("TopK", info=REDUCTION)
def _top_k(ctx: CostContext) -> OpCost:
    known = ctx.const(1)
    if known is not None:
        k = int(known.reshape(-1)[0])
    else:
        k = ctx.out_shape(0)[ctx.attr("axis", -1)]
    per = max(1, math.ceil(math.log2(k))) if k > 0 else 0
    return ctx.cost(per * math.prod(ctx.shape(0)), note=f"k={k}")
