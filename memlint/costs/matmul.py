"""Matrix products: MatMul, Gemm, their integer and quantized forms, and Einsum.

Counts used:

- A multiply-accumulate is 2 FLOPs, so a product with output Y and contraction length K costs
  `2 * prod(Y.shape) * K`. Batch dims broadcast as in numpy; a 1-D operand is promoted to a matrix
  and the promoted dim dropped, which the output shape already reflects.
- Gemm and com.microsoft QGemm: `2*M*N*K`, plus `M*N` for adding C when C is given. Scaling by
  alpha and beta is not counted (kernels fold it into the accumulate).
- A bias input (MatMulNBits, MatMulIntegerToFloat, DynamicQuantizeMatMul, GemmFastGelu) adds 1 FLOP
  per output element. GemmFastGelu adds the tanh-approximated Gelu's count from
  memlint.costs.elementwise (GELU_TANH_FLOPS) per output element.
- MatMulNBits: `2*M*N*K` with M = prod(A.shape[:-1]) and K, N from its attributes. Unpacking and
  dequantizing B, `(q - zero_point) * scale`, is not counted; the compute dtype is A's.
- Integer matmuls (MatMulInteger, QLinearMatMul, MatMulIntegerToFloat, QGemm, com.microsoft
  QOrderedMatMul): zero-point, scale and requantization arithmetic is not counted; the compute dtype
  is the integer type of A. QOrderedMatMul adds 1 per output element for its bias and 1 for its
  addend C when given.
  DynamicQuantizeMatMul quantizes A at run time (not counted) and computes in the type of B.
- Einsum: with one operand, the product of all index sizes (one add per element visited); with two,
  `2 * product of the sizes of every distinct index` (one multiply-accumulate per point of the joint
  index space). More operands contract left to right, each step counted like two operands and
  keeping the indices still needed later. Ellipsis dims broadcast as indices of their own.

Bytes: each input read once at its stored dtype (MatMulNBits' B is already packed, so a 4-bit weight
is half a byte) and each output written once. Matrix products run on the tensor unit; a one-operand
Einsum is a reduction on the vector unit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from memlint.costs.elementwise import GELU_TANH_FLOPS
from memlint.costs.model import OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register
from memlint.ir import ComputeUnit, DType

MS = "com.microsoft"
MATMUL = OpInfo("matmul")


def contraction_cost(
    ctx: CostContext,
    k: int,
    *,
    bias: int | None = None,
    per_output: int = 0,
    compute_dtype: DType | None = None,
    note: str = "",
) -> OpCost:
    """`2 * prod(Y.shape) * k`, plus 1 per output element when input `bias` is given and
    `per_output` more per output element (a fused activation)."""
    out = ctx.out_numel()
    flops = 2 * out * k + per_output * out
    if bias is not None and ctx.input(bias) is not None:
        flops += out
    return ctx.cost(flops, unit=ComputeUnit.TENSOR, compute_dtype=compute_dtype, note=note)


def _dtype(ctx: CostContext, index: int) -> DType | None:
    value = ctx.input(index)
    return value.dtype if value is not None else None


@register("MatMul", info=MATMUL)
def _matmul(ctx: CostContext) -> OpCost:
    return contraction_cost(ctx, ctx.shape(0)[-1])


@register("MatMulInteger", "QLinearMatMul", info=MATMUL)
def _matmul_integer(ctx: CostContext) -> OpCost:
    return contraction_cost(ctx, ctx.shape(0)[-1], compute_dtype=_dtype(ctx, 0))


def _gemm(a: int, c: int, *, integer: bool) -> Formula:
    """A Gemm-like formula: A at input `a`, the optional addend C at input `c`."""

    def formula(ctx: CostContext) -> OpCost:
        a_shape = ctx.shape(a)
        k = a_shape[0] if ctx.attr("transA", 0) else a_shape[1]
        return contraction_cost(ctx, k, bias=c, compute_dtype=_dtype(ctx, a) if integer else None)

    return Formula(formula, MATMUL)


add_formula("Gemm", _gemm(a=0, c=2, integer=False))
add_formula("QGemm", _gemm(a=0, c=6, integer=True), domain=MS)


@register("FusedMatMul", domain=MS, info=MATMUL)
def _fused_matmul(ctx: CostContext) -> OpCost:
    shape = ctx.shape(0)
    if ctx.attr("transBatchA", 0) and len(shape) >= 3:
        # the first dim moves behind the batch dims: (d0, d1..dn-2, dn-1) -> (d1..dn-2, d0, dn-1)
        shape = (*shape[1:-1], shape[0], shape[-1])
    k = shape[-2] if ctx.attr("transA", 0) and len(shape) >= 2 else shape[-1]
    return contraction_cost(ctx, k)


@register("MatMulNBits", domain=MS, info=MATMUL)
def _matmul_nbits(ctx: CostContext) -> OpCost:
    k = ctx.attr("K") or ctx.shape(0)[-1]
    note = f"{ctx.attr('bits', 4)}-bit weights, dequantized on the fly (not counted)"
    return contraction_cost(ctx, k, bias=5, compute_dtype=_dtype(ctx, 0), note=note)


@register("QOrderedMatMul", domain=MS, info=MATMUL)
def _qordered_matmul(ctx: CostContext) -> OpCost:
    # inputs: A, scale_A, B, scale_B, scale_Y, bias, C, scale_C
    cost = contraction_cost(ctx, ctx.shape(0)[-1], bias=5, compute_dtype=_dtype(ctx, 0))
    if ctx.input(6) is not None:
        return dataclasses.replace(cost, flops=cost.flops + ctx.out_numel())
    return cost


@register("MatMulIntegerToFloat", domain=MS, info=MATMUL)
def _matmul_integer_to_float(ctx: CostContext) -> OpCost:
    return contraction_cost(ctx, ctx.shape(0)[-1], bias=6, compute_dtype=_dtype(ctx, 0))


@register("DynamicQuantizeMatMul", domain=MS, info=MATMUL)
def _dynamic_quantize_matmul(ctx: CostContext) -> OpCost:
    return contraction_cost(
        ctx,
        ctx.shape(0)[-1],
        bias=4,
        compute_dtype=_dtype(ctx, 1),
        note="A is quantized at run time (not counted)",
    )


@register("GemmFastGelu", domain=MS, info=MATMUL)
def _gemm_fast_gelu(ctx: CostContext) -> OpCost:
    return contraction_cost(ctx, ctx.shape(0)[-1], bias=2, per_output=GELU_TANH_FLOPS)


# --- Einsum ----------------------------------------------------------------------------------


def _labels(term: str, rank: int) -> tuple[str, ...]:
    """One label per dim; ellipsis dims become '.j', j counted from the right so they broadcast."""
    if "..." not in term:
        return tuple(term)
    head, tail = term.split("...")
    covered = max(rank - len(head) - len(tail), 0)
    return (*head, *(f".{j}" for j in reversed(range(covered))), *tail)


def einsum_flops(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """FLOPs of an Einsum by the counts in this module's docstring."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = [_labels(t, len(s)) for t, s in zip(lhs.split(","), shapes)]
    sizes: dict[str, int] = {}
    for labels, shape in zip(terms, shapes):
        for label, dim in zip(labels, shape):
            if sizes.get(label, 1) == 1:
                sizes[label] = dim
    if len(terms) == 1:
        return math.prod(sizes.values())
    if arrow:
        ellipsis_rank = max(sum(lab.startswith(".") for lab in t) for t in terms)
        output = set(_labels(rhs, len(rhs.replace("...", "")) + ellipsis_rank))
    else:  # implicit output: ellipsis dims and the letters that appear once
        every = [lab for t in terms for lab in t]
        output = {lab for lab in every if lab.startswith(".") or every.count(lab) == 1}
    flops, current = 0, set(terms[0])
    for i, labels in enumerate(terms[1:], start=2):
        joint = current | set(labels)
        flops += 2 * math.prod(sizes[lab] for lab in joint)
        current = joint & output.union(*terms[i:])
    return flops


@register("Einsum", info=MATMUL)
def _einsum(ctx: CostContext) -> OpCost:
    equation = ctx.attr("equation", "")
    shapes = [ctx.shape(i) for i in range(len(ctx.node.inputs))]
    unit = ComputeUnit.TENSOR if len(shapes) > 1 else ComputeUnit.VECTOR
    return ctx.cost(einsum_flops(equation, shapes), unit=unit, note=f"einsum {equation}")
