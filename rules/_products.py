"""Matrix products and convolutions that read weights: shared by ML101 and ML106.

A product Y = A x B (or a convolution of X by W) is a weight-streaming kernel when one of its two
main operands is a weight: every run reads the whole weight once, however few rows share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memlint.costs import ByteCounts, OpCost
from memlint.ir import Node, Value, ValueKind
from memlint.rulebase import RuleContext

MS = "com.microsoft::"

# op -> (index of A / X, index of B / W, axis of Y that B / W sets: None = last dim, 1 = channels)
_OPERANDS: dict[str, tuple[int, int, int | None]] = {
    "MatMul": (0, 1, None),
    "Gemm": (0, 1, None),
    "MatMulInteger": (0, 1, None),
    "QLinearMatMul": (0, 3, None),
    MS + "FusedMatMul": (0, 1, None),
    MS + "GemmFastGelu": (0, 1, None),
    MS + "MatMulNBits": (0, 1, None),
    MS + "MatMulIntegerToFloat": (0, 1, None),
    MS + "DynamicQuantizeMatMul": (0, 1, None),
    MS + "QGemm": (0, 3, None),
    "Conv": (0, 1, 1),
    "ConvInteger": (0, 1, 1),
    "QLinearConv": (0, 3, 1),
    MS + "FusedConv": (0, 1, 1),
}
PRODUCT_OPS = frozenset(_OPERANDS)

# Float products whose weights weight-only int8/int4 quantization targets (MatMulNBits, torchao);
# the quantized ops above already hold integer weights (their float weights are scales and bias).
QUANTIZABLE_OPS = frozenset(
    {"MatMul", "Gemm", "ConvTranspose", MS + "FusedMatMul", MS + "GemmFastGelu", "Conv",
     MS + "FusedConv", MS + "NhwcConv", MS + "NhwcFusedConv"}
)


@dataclass(frozen=True)
class Product:
    """The operands of a weight-reading product and the shape facts the rules need."""

    a: Value
    b: Value
    out: Value
    weight: Value  # whichever of a and b is the weight
    rows: int  # M: output rows (GEMM) or output pixels (Conv) that share one read of the weight
    weight_bits: int  # stored bits per weight element (MatMulNBits: its `bits` attribute)
    is_conv: bool


def product(ctx: RuleContext, node: Node) -> Product | None:
    """The weight-reading product computed by `node`; None when neither operand is a weight or a
    shape is unknown (a product of two activations, e.g. attention over the KV cache)."""
    where = _OPERANDS.get(node.qualified_op)
    if where is None or len(node.inputs) <= max(where[:2]) or not node.outputs:
        return None
    a, b, out = (ctx.stored(node.inputs[where[0]]), ctx.stored(node.inputs[where[1]]),
                 ctx.value(node.outputs[0]))  # a dequantized operand at its stored dtype
    if a is None or b is None or out is None or not out.is_resolved or not out.shape:
        return None
    if b.kind is ValueKind.WEIGHT:
        weight, axis = b, where[2] if where[2] is not None else -1
    elif a.kind is ValueKind.WEIGHT and where[2] is None and len(out.shape) >= 2:
        weight, axis = a, -2  # W @ x: the rows of W set Y's second-to-last dim
    else:
        return None
    width = out.shape[axis]
    if not width:
        return None
    bits = node.attributes.get("bits", 4) if node.op_type == "MatMulNBits" else weight.dtype.bits
    rows = math.prod(out.shape) // width
    if not rows:
        return None
    return Product(a, b, out, weight, rows, int(bits), is_conv=where[2] == 1)


def shape_text(value: Value) -> str:
    dims = value.shape if value.shape is not None else ()
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def weight_inputs(ctx: RuleContext, node: Node) -> list[Value]:
    """The weight tensors `node` reads, each once (a dequantized weight at its stored dtype)."""
    values = (ctx.stored(name) for name in dict.fromkeys(node.inputs))
    return [v for v in values if v is not None and v.kind is ValueKind.WEIGHT]


def rows_compute_bound(cost: OpCost, ridge: float, rows: int) -> int | None:
    """M*: the rows at which the op meets the ridge (None: activation bytes alone exceed it)."""
    weights = cost.bytes_read.weights
    others = cost.bytes_moved - weights
    spare = cost.flops - ridge * others
    return math.ceil(rows * ridge * weights / spare) if spare > 0 else None


def with_rows(cost: OpCost, factor: float) -> OpCost:
    """`cost` with FLOPs and every non-weight byte scaled by `factor` (more rows, same weight)."""

    def scale(counts: ByteCounts) -> ByteCounts:
        return ByteCounts(counts.weights, round(counts.activations * factor),
                          round(counts.kv_cache * factor))

    return OpCost(flops=round(cost.flops * factor), bytes_read=scale(cost.bytes_read),
                  bytes_written=scale(cost.bytes_written), status=cost.status, unit=cost.unit,
                  compute_dtype=cost.compute_dtype)
