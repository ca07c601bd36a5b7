"""Normalization: layer, RMS, batch, instance, group, Lp, mean-variance and local response norms.

Counts used, per element of the normalized tensor (all on the vector unit). The per-row
statistics (divide by the row length, add epsilon, rsqrt) are amortised as 1 FLOP per element:

| FLOPs | ops                                                                                      |
|-------|------------------------------------------------------------------------------------------|
| 8     | LayerNormalization (sum for the mean, sub, square, sum for the variance, rsqrt           |
|       | amortised, mul, scale, bias); 7 without its bias input B. InstanceNormalization,         |
|       | GroupNormalization and com.microsoft GroupNorm count the same 8                          |
| 5     | RMSNormalization, SimplifiedLayerNormalization (square, sum, rsqrt amortised, mul,       |
|       | scale)                                                                                   |
| +1    | Skip variants add the residual (com.microsoft SkipLayerNormalization,                    |
|       | SkipSimplifiedLayerNormalization, SkipGroupNorm); their optional bias input adds 1 more  |
| +5    | com.microsoft GroupNorm / SkipGroupNorm with activation=1 (SiLU: neg, exp, add, div,     |
|       | mul)                                                                                     |
| 2     | BatchNormalization, inference: mean, variance, scale and bias fold into one scale and    |
|       | one shift per channel (per-channel work not counted), so y = x*a + b. training_mode=1    |
|       | counts the batch statistics too: 8, like LayerNormalization                              |
| 6     | MeanVarianceNormalization (mean, sub, square, variance, rsqrt amortised, mul)            |
| 4     | LpNormalization (square or abs, sum, root amortised, mul)                                |
| 2s+3  | LRN over a window of s channels (s squares, s-1 adds, mul alpha/s, add bias, pow, div)   |

com.microsoft EmbedLayerNormalization sums the word, position and (when given) segment embedding
rows of each token, then layer-normalizes: 1 add per element per extra embedding, plus 8, plus 1
per element of the mask it reduces to mask_index.

Bytes: each input read once and each output written once at its dtype. EmbedLayerNormalization
reads only the embedding rows it gathers (output elements at each table's dtype, under the table's
kind, at most the whole table), like Gather: a 1-token lookup does not read the vocabulary.
"""

from __future__ import annotations

import math

from memlint.costs.data_movement import read_portion
from memlint.costs.model import ByteCounts, OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register

MS = "com.microsoft"
NORMALIZATION = OpInfo("normalization")

LAYER_NORM_FLOPS = 8
RMS_NORM_FLOPS = 5
SILU_FLOPS = 5


def normalization(
    per_element: int,
    *,
    bias: int | None = None,
    skip: int | None = None,
    skip_bias: int | None = None,
    silu_attr: bool = False,
) -> Formula:
    """A norm doing `per_element` FLOPs per element of input 0, less 1 when its optional shift
    input `bias` is omitted, plus 1 each for a residual input `skip` and its bias `skip_bias`
    when given, plus SiLU when `silu_attr` and the node's activation attribute is 1."""

    def formula(ctx: CostContext) -> OpCost:
        per = per_element
        per -= 1 if bias is not None and ctx.input(bias) is None else 0
        per += sum(1 for i in (skip, skip_bias) if i is not None and ctx.input(i) is not None)
        if silu_attr and ctx.attr("activation", 0) == 1:
            per += SILU_FLOPS
        return ctx.cost(per * math.prod(ctx.shape(0)))

    return Formula(formula, NORMALIZATION)


add_formula("LayerNormalization", normalization(LAYER_NORM_FLOPS, bias=2))
add_formula("SimplifiedLayerNormalization", normalization(RMS_NORM_FLOPS))
add_formula("RMSNormalization", normalization(RMS_NORM_FLOPS))
add_formula("InstanceNormalization", normalization(LAYER_NORM_FLOPS))
add_formula("GroupNormalization", normalization(LAYER_NORM_FLOPS))
add_formula("MeanVarianceNormalization", normalization(6))
add_formula("LpNormalization", normalization(4))
add_formula(
    "SkipLayerNormalization",
    normalization(LAYER_NORM_FLOPS, bias=3, skip=1, skip_bias=4),
    domain=MS,
)
add_formula(
    "SkipSimplifiedLayerNormalization",
    normalization(RMS_NORM_FLOPS, skip=1, skip_bias=3),
    domain=MS,
)
add_formula("GroupNorm", normalization(LAYER_NORM_FLOPS, silu_attr=True), domain=MS)
add_formula(
    "SkipGroupNorm",
    normalization(LAYER_NORM_FLOPS, skip=3, skip_bias=4, silu_attr=True),
    domain=MS,
)


@register("BatchNormalization", info=NORMALIZATION)
def _batch_normalization(ctx: CostContext) -> OpCost:
    if ctx.attr("training_mode", 0):
        return ctx.cost(LAYER_NORM_FLOPS * math.prod(ctx.shape(0)), note="training mode")
    return ctx.cost(2 * math.prod(ctx.shape(0)), note="inference: folded scale and shift")


@register("LRN", info=NORMALIZATION)
def _lrn(ctx: CostContext) -> OpCost:
    return ctx.cost((2 * ctx.attr("size", 1) + 3) * math.prod(ctx.shape(0)))


# com.microsoft EmbedLayerNormalization inputs: 0 input_ids, 1 segment_ids, 2 word_embedding,
# 3 position_embedding, 4 segment_embedding, 5 gamma, 6 beta, 7 mask, 8 position_ids.
_EMBEDDING_TABLES = (2, 3, 4)


@register("EmbedLayerNormalization", domain=MS, info=NORMALIZATION)
def _embed_layer_normalization(ctx: CostContext) -> OpCost:
    elements = ctx.out_numel(0)
    tables = [ctx.input(i) for i in _EMBEDDING_TABLES if ctx.input(i) is not None]
    bytes_read = ByteCounts.of(
        ctx.input(i) for i in range(len(ctx.node.inputs)) if i not in _EMBEDDING_TABLES
    )
    for table in tables:
        bytes_read += read_portion(table, elements)
    mask = ctx.input(7)
    flops = (len(tables) - 1 + LAYER_NORM_FLOPS) * elements + (mask.numel if mask else 0)
    return ctx.cost(flops, bytes_read=bytes_read, note="reads only the gathered embedding rows")
