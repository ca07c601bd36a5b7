"""Pooling: windowed, global, unpooling and RoiAlign.

Counts used (all on the vector unit), with K the number of elements in one window
(prod(kernel_shape); dilation spreads a window out but does not grow it):

| FLOPs          | ops                                                                             |
|----------------|---------------------------------------------------------------------------------|
| K per output   | MaxPool (K-1 compares, rounded up), AveragePool (K-1 adds, 1 divide);           |
|                | com.microsoft NhwcMaxPool, com.microsoft.nchwc MaxPool, AveragePool             |
| 2K per output  | LpPool (K powers, K-1 adds, 1 root)                                             |
| 1 per input    | GlobalMaxPool, GlobalAveragePool (the window is the whole image);               |
|                | com.microsoft.nchwc GlobalMaxPool, GlobalAveragePool                            |
| 2 per input    | GlobalLpPool                                                                    |
| 0              | MaxUnpool (a scatter into a zeroed output)                                      |
| 8 S per output | RoiAlign: S bilinear samples per output bin (4 taps: 4 mul, 3 add; then 1 add   |
|                | or max); S = sampling_ratio^2, or 4 (2 x 2) when sampling_ratio is 0 (adaptive: |
|                | it depends on the box sizes at run time)                                        |

com.microsoft QLinearAveragePool and QLinearGlobalAveragePool count as AveragePool and
GlobalAveragePool, in the dtype of their int8/uint8 input.

Bytes: each input read once and each output written once at its dtype (MaxPool's optional
Indices output is int64). RoiAlign reads all of its feature map, an upper bound when the boxes
cover a small part of it.
"""

from __future__ import annotations

import math

from memlint.costs.model import OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"
BILINEAR_SAMPLE_FLOPS = 8
ADAPTIVE_SAMPLES = 4
POOL = OpInfo("reduction", reduction=True)  # pooling is a reduction over windows
UNPOOL = OpInfo("reduction")  # pooling's inverse, coloured with it


def windowed(per_window_element: int) -> Formula:
    """A pool doing `per_window_element` FLOPs per element of each output's window."""

    def formula(ctx: CostContext) -> OpCost:
        window = math.prod(ctx.attr("kernel_shape", ()))
        return ctx.cost(per_window_element * window * ctx.out_numel(), note=f"window {window}")

    return Formula(formula, POOL)


def global_pool(per_input_element: int) -> Formula:
    """A pool over the whole image: `per_input_element` FLOPs per element of the input."""

    def formula(ctx: CostContext) -> OpCost:
        return ctx.cost(per_input_element * math.prod(ctx.shape(0)))

    return Formula(formula, POOL)


for _domain in ("", NCHWC):
    add_formula("MaxPool", windowed(1), domain=_domain)
    add_formula("AveragePool", windowed(1), domain=_domain)
    add_formula("GlobalMaxPool", global_pool(1), domain=_domain)
    add_formula("GlobalAveragePool", global_pool(1), domain=_domain)
add_formula("NhwcMaxPool", windowed(1), domain=MS)
add_formula("QLinearAveragePool", windowed(1).computing_in(0), domain=MS)
add_formula("QLinearGlobalAveragePool", global_pool(1).computing_in(0), domain=MS)
add_formula("LpPool", windowed(2))
add_formula("GlobalLpPool", global_pool(2))


@register("MaxUnpool", info=UNPOOL)
def _max_unpool(ctx: CostContext) -> OpCost:
    return ctx.cost(0, note="a scatter into a zeroed output")


@register("RoiAlign", info=POOL)
def _roi_align(ctx: CostContext) -> OpCost:
    ratio = ctx.attr("sampling_ratio", 0)
    samples = ratio * ratio if ratio > 0 else ADAPTIVE_SAMPLES
    note = f"{samples} samples per bin" + ("" if ratio > 0 else " (adaptive: assumed 2 x 2)")
    return ctx.cost(BILINEAR_SAMPLE_FLOPS * samples * ctx.out_numel(), note=note)
