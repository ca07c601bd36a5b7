"""Convolutions: Conv, ConvTranspose, their integer and quantized forms, and the fused contrib ops.

Counts used (a multiply-accumulate is 2 FLOPs; kernel sizes come from the weight's shape):

- Conv: `2 * N * C_out * prod(out spatial) * (C_in/group) * prod(kernel)`, i.e. 2 * (output
  elements) * prod(W.shape[1:]); this holds for the NHWC ops too (NhwcConv, com.microsoft
  QLinearConv with channels_last), since the product of the weight's non-output dims is the same in
  either layout.
- ConvTranspose: `2 * N * C_in * prod(in spatial) * (C_out/group) * prod(kernel)`, i.e. 2 * (input
  elements) * prod(W.shape[1:]): every input element scatters through one kernel slice.
- A bias B adds 1 FLOP per output element. FusedConv / NhwcFusedConv add 1 per output element for
  the residual Z when given and 1 per output element for the fused activation when one is named
  (all activations counted as 1, whatever their arithmetic).
- ConvInteger / QLinearConv: zero-point, scale and requantization arithmetic is not counted; the
  compute dtype is the integer type of x.

Bytes: each input read once and each output written once (the im2col buffer, if a kernel uses one,
is not counted). Unit: tensor.
"""

from __future__ import annotations

import math

from memlint.costs.model import OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula
from memlint.ir import ComputeUnit

MS = "com.microsoft"
CONV = OpInfo("conv")


def _conv(
    *, x: int, w: int, bias: int | None, transposed=False, integer=False, fused=False
) -> Formula:
    """A conv formula reading X at input `x`, W at `w` and the optional bias at `bias`.

    `fused`: FusedConv's residual Z (input 3) and named activation are counted too.
    """

    def formula(ctx: CostContext) -> OpCost:
        out = ctx.out_numel()
        points = math.prod(ctx.shape(x)) if transposed else out
        flops = 2 * points * math.prod(ctx.shape(w)[1:])
        addends = (bias, 3) if fused else (bias,)
        flops += out * sum(i is not None and ctx.input(i) is not None for i in addends)
        if fused and ctx.attr("activation"):
            flops += out
        dtype = ctx.input(x).dtype if integer else None
        return ctx.cost(flops, unit=ComputeUnit.TENSOR, compute_dtype=dtype)

    return Formula(formula, CONV)


add_formula("Conv", _conv(x=0, w=1, bias=2))
add_formula("ConvTranspose", _conv(x=0, w=1, bias=2, transposed=True))
add_formula("ConvInteger", _conv(x=0, w=1, bias=None, integer=True))
add_formula("QLinearConv", _conv(x=0, w=3, bias=8, integer=True))
add_formula("QLinearConv", _conv(x=0, w=3, bias=8, integer=True), domain=MS)
add_formula("NhwcConv", _conv(x=0, w=1, bias=2), domain=MS)
add_formula("FusedConv", _conv(x=0, w=1, bias=2, fused=True), domain=MS)
add_formula("NhwcFusedConv", _conv(x=0, w=1, bias=2, fused=True), domain=MS)
