"""Mixture of experts: onnxruntime's com.microsoft MoE and QMoE (its experts' weights quantized
to 4 or 8 bits with per-channel scales).

Inputs: MoE (input, router_probs, fc1_experts_weights, fc1_experts_bias, fc2_experts_weights,
fc2_experts_bias, fc3_experts_weights, fc3_experts_bias); QMoE the same with each expert weight
followed by its scales (input, router_probs, fc1 weights, fc1 scales, fc1 bias, fc2 weights,
fc2 scales, fc2 bias, fc3 weights, fc3 scales, fc3 bias). Attribute k: experts per token.

Counts used, for R rows (tokens: input elements / hidden size) over E experts:
- FLOPs: every row runs k experts: `R * k * 2 * (N1 + N2 + N3)`, N the weight elements of one
  expert in each projection (a packed QMoE weight holds 8 / expert_weight_bits elements per
  byte); activation, routing and the weighted sum of the k outputs are not counted.
- Bytes: the input, the router probabilities and every bias and scale read once, the output
  written once, and of the expert weights the share a step touches: under uniform routing R
  rows with k of E experts each touch E(1 - (1 - k/E)^R) distinct experts on average, so
  `(1 - (1 - k/E)^R)` of the expert weights are read (memlint.frontends.fx_moe routes torch
  steps the same way). The op runs on the tensor unit.
"""

from __future__ import annotations

import math

from memlint.costs.model import ByteCounts, OpCost
from memlint.costs.registry import CostContext, OpInfo, register
from memlint.ir import ComputeUnit

MS = "com.microsoft"
MOE = OpInfo("matmul")


def touched_fraction(experts: int, k: int, rows: int) -> float:
    """The share of E experts that R rows with top-k routing touch on average."""
    if experts <= 0 or rows <= 0:
        return 0.0
    k = min(max(k, 1), experts)
    return 1.0 - (1.0 - k / experts) ** rows


def _moe_cost(ctx: CostContext, weights: tuple[int, ...], extras: tuple[int, ...],
              bits: int | None) -> OpCost:  # fmt: skip
    x = ctx.input(0)
    first = ctx.input(weights[0])
    if x is None or first is None or not x.shape or not first.shape:
        return ctx.cost(0, note="shapes unknown")
    hidden = x.shape[-1]
    rows = math.prod(x.shape) // hidden if hidden else 0
    experts = first.shape[0]
    k = int(ctx.attr("k", 1))
    per = 8 // bits if bits else 1  # elements per stored element (packed nibbles)
    elements = sum((ctx.input(i).numel or 0) * per // experts
                   for i in weights if ctx.input(i) is not None)  # fmt: skip
    flops = rows * k * 2 * elements
    share = touched_fraction(experts, k, rows)
    read = ByteCounts.of([ctx.input(0), ctx.input(1), *(ctx.input(i) for i in extras)])
    for index in weights:
        value = ctx.input(index)
        if value is not None and value.nbytes is not None:
            read += ByteCounts.single(value.kind, math.ceil(value.nbytes * share))
    return ctx.cost(
        flops, unit=ComputeUnit.TENSOR, bytes_read=read,
        note=f"{rows} rows x top-{k} of {experts} experts: {share * experts:.3g} touched "
             "(uniform routing)",
    )  # fmt: skip


@register("MoE", domain=MS, info=MOE)
def _moe(ctx: CostContext) -> OpCost:
    return _moe_cost(ctx, (2, 4, 6), (3, 5, 7), None)


@register("QMoE", domain=MS, info=MOE)
def _qmoe(ctx: CostContext) -> OpCost:
    bits = int(ctx.attr("expert_weight_bits", 4))
    return _moe_cost(ctx, (2, 5, 8), (3, 4, 6, 7, 9, 10), bits)
