"""An example memlint cost plugin: com.example FusedScaleBias, `y = x * scale + bias`.

A runtime of this (made-up) domain fuses a per-channel scale and shift into one kernel. Its inputs
are x [..., C], scale [C] and bias [C]; its output y has x's shape and dtype.

Count (per OUTPUT element, vector unit): 2 FLOPs, one multiply and one add. Bytes: each input
read once and the output written once at its dtype (CostContext.cost's default), so for
x, y float32 [2, 1024] and scale, bias float32 [1024]:

    FLOPs         = 2 * 2 * 1024                     = 4,096
    bytes read    = 4 * (2 * 1024 + 1024 + 1024)     = 16,384
    bytes written = 4 * (2 * 1024)                   = 8,192
"""

from __future__ import annotations

from memlint.costs import CostContext, OpCost, OpInfo, register

DOMAIN = "com.example"
FLOPS_PER_ELEMENT = 2  # multiply by scale, add bias


@register("FusedScaleBias", domain=DOMAIN, info=OpInfo("elementwise", elementwise=True))
def fused_scale_bias(ctx: CostContext) -> OpCost:
    return ctx.cost(FLOPS_PER_ELEMENT * ctx.out_numel(), note="x * scale + bias")
