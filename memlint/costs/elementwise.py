"""Element-wise ops: unary, binary, variadic, select, clip, casts, (de)quantization, activations.

Counts used, per OUTPUT element (all on the vector unit). One FLOP is one arithmetic op, one
comparison, one min/max, one select, or one evaluation of a transcendental function (exp, expm1,
log, pow, sqrt, tanh, erf, trig); a composite op counts its steps as a kernel computes them:

| FLOPs | ops                                                                                      |
|-------|------------------------------------------------------------------------------------------|
| 0     | Cast, CastLike (a copy that converts), one-input Sum/Max/Min                             |
| 1     | Abs, Neg, Relu, Sign, Floor, Ceil, Round, Reciprocal, Sqrt, Exp, Log, Tanh, Erf, Sin,    |
|       | Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Not, BitwiseNot, IsNaN,     |
|       | IsInf, ThresholdedRelu (select); Add, Sub, Mul, Div, Pow, Mod, And, Or, Xor, Equal,      |
|       | Less, LessOrEqual, Greater, GreaterOrEqual, BitShift, BitwiseAnd, BitwiseOr, BitwiseXor; |
|       | Where                                                                                    |
| 2     | LeakyRelu, PRelu (mul, select); Clip (min, max; a bound not given is the dtype's limit,  |
|       | which kernels still apply); DequantizeLinear (sub zero point, mul scale); com.microsoft  |
|       | BiasAdd (x + bias + skip)                                                                |
| 3     | Softplus (exp, add, log); Softsign (abs, add, div); Elu (expm1, mul, select);            |
|       | HardSigmoid (mul, add, saturate to [0, 1]); Shrink (add, 2 selects)                      |
| 4     | Sigmoid (neg, exp, add, div); Selu (expm1, mul, mul, select); HardSwish (HardSigmoid,    |
|       | mul); QuantizeLinear (div scale, round, add zero point, saturating convert)              |
| 5     | Gelu erf form `0.5*x*(1 + erf(x/sqrt2))` (mul, erf, add, mul, mul); Swish and            |
|       | com.microsoft QuickGelu `x*sigmoid(a*x)` (mul -a, exp, add, div, mul); Mish (Softplus 3, |
|       | tanh, mul); com.microsoft Gelu (erf form)                                                |
| 6     | Celu (mul 1/a, expm1, mul, min, max, add); SwiGLU (Swish 5, mul); DynamicQuantizeLinear  |
|       | (min, max over x, then QuantizeLinear 4); com.microsoft BiasGelu (add, Gelu 5)           |
| 8     | Gelu tanh form and com.microsoft FastGelu `0.5*x*(1 + tanh(x*(c1 + c2*x*x)))` (x*x, *c2, |
|       | +c1, *x, tanh, +1, *x, *0.5); FastGelu with its bias input: 9; com.microsoft             |
|       | BiasSplitGelu per output element (2 bias adds, Gelu 5, mul)                              |
| n-1   | Sum, Max, Min over n inputs; Mean: n (n-1 adds, 1 div)                                   |

onnxruntime's QOperator element-wise ops (com.microsoft QLinearAdd, QLinearMul, QLinearSigmoid,
QLinearLeakyRelu) count as their float op does, in the dtype of their int8/uint8 tensor; the
dequantize and requantize steps around the op are not counted. (QLinearSoftmax counts as
Softmax, QLinearAveragePool and QLinearGlobalAveragePool as their pools, QLinearConcat is a copy,
QAttention as com.microsoft Attention.)

Bytes: each input read once and each output written once at its dtype (a broadcast operand is
read at its own size), except CastLike, whose second input gives only a type and is not read.
"""

from __future__ import annotations

from memlint.costs.model import ByteCounts, OpCost
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register

MS = "com.microsoft"

ELEMENTWISE = OpInfo("elementwise", elementwise=True)
CAST = OpInfo("elementwise", elementwise=True, copy=True)  # a copy that converts
# Counted per output element, yet not element-wise: DynamicQuantizeLinear first reduces x to its
# min and max; BiasSplitGelu multiplies the two halves of the last axis.
PER_OUTPUT_ELEMENT = OpInfo("elementwise")

GELU_ERF_FLOPS = 5
GELU_TANH_FLOPS = 8

# Ops whose count per output element is a constant, by domain. Unary and binary ops alike:
# broadcasting makes the output the element count of the arithmetic.
PER_ELEMENT: dict[str, dict[str, int]] = {
    "": {
        **dict.fromkeys(
            (
                "Abs", "Neg", "Relu", "Sign", "Floor", "Ceil", "Round", "Reciprocal", "Sqrt",
                "Exp", "Log", "Tanh", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
                "Cosh", "Asinh", "Acosh", "Atanh", "Not", "BitwiseNot", "IsNaN", "IsInf",
                "ThresholdedRelu",
                "Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Less",
                "LessOrEqual", "Greater", "GreaterOrEqual", "BitShift", "BitwiseAnd",
                "BitwiseOr", "BitwiseXor", "Where",
            ),
            1,
        ),  # fmt: skip
        "LeakyRelu": 2,
        "PRelu": 2,
        "Clip": 2,
        "DequantizeLinear": 2,
        "Softplus": 3,
        "Softsign": 3,
        "Elu": 3,
        "HardSigmoid": 3,
        "Shrink": 3,
        "Sigmoid": 4,
        "Selu": 4,
        "HardSwish": 4,
        "QuantizeLinear": 4,
        "Swish": 5,
        "Mish": 5,
        "Celu": 6,
        "SwiGLU": 6,
    },
    MS: {
        "BiasAdd": 2,
        "DequantizeLinear": 2,
        "QuantizeLinear": 4,
        "Gelu": GELU_ERF_FLOPS,
        "QuickGelu": 5,
        "BiasGelu": GELU_ERF_FLOPS + 1,
    },
}


def text_attr(ctx: CostContext, name: str, default: str) -> str:
    """A string attribute, whether the frontend kept it as bytes (as ONNX stores it) or str."""
    value = ctx.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def per_element(
    flops_per_element: int, *, bias: int | None = None, info: OpInfo = ELEMENTWISE
) -> Formula:
    """The formula of an op that does `flops_per_element` per output element, plus 1 more
    per element when the optional input `bias` is given."""

    def formula(ctx: CostContext) -> OpCost:
        count = flops_per_element + (1 if bias is not None and ctx.input(bias) is not None else 0)
        return ctx.cost(count * ctx.out_numel())

    return Formula(formula, info)


def _variadic(extra: int) -> Formula:
    """Sum/Max/Min fold n inputs with n-1 ops per output element; Mean adds `extra` = 1 divide."""

    def formula(ctx: CostContext) -> OpCost:
        n = sum(1 for name in ctx.node.inputs if name)
        per = n - 1 + extra if n > 1 else 0
        return ctx.cost(per * ctx.out_numel())

    return Formula(formula, ELEMENTWISE)


for _domain, _table in PER_ELEMENT.items():
    for _op, _count in _table.items():
        add_formula(_op, per_element(_count), domain=_domain)
for _op in ("Sum", "Max", "Min"):
    add_formula(_op, _variadic(0))
add_formula("Mean", _variadic(1))
add_formula("FastGelu", per_element(GELU_TANH_FLOPS, bias=1), domain=MS)
add_formula("DynamicQuantizeLinear", per_element(6, info=PER_OUTPUT_ELEMENT))
add_formula("BiasSplitGelu", per_element(GELU_ERF_FLOPS + 3, info=PER_OUTPUT_ELEMENT), domain=MS)
# onnxruntime's QLinear element-wise ops: the op's arithmetic on int8/uint8 tensors (each input
# read once at its stored width); dequantizing and requantizing around it is not counted.
for _op, _float_op in (("QLinearAdd", "Add"), ("QLinearMul", "Mul"),
                       ("QLinearSigmoid", "Sigmoid"), ("QLinearLeakyRelu", "LeakyRelu")):
    add_formula(_op, per_element(PER_ELEMENT[""][_float_op]).computing_in(0), domain=MS)


@register("Gelu", info=ELEMENTWISE)
def _gelu(ctx: CostContext) -> OpCost:
    approximate = text_attr(ctx, "approximate", "none")
    per = GELU_TANH_FLOPS if approximate == "tanh" else GELU_ERF_FLOPS
    return ctx.cost(per * ctx.out_numel(), note=f"gelu approximate={approximate}")


@register("Cast", info=CAST)
def _cast(ctx: CostContext) -> OpCost:
    return ctx.cost(0, note="a copy that converts the dtype")


@register("CastLike", info=CAST)
def _cast_like(ctx: CostContext) -> OpCost:
    return ctx.cost(
        0,
        bytes_read=ByteCounts.of([ctx.input(0)]),
        note="a copy that converts the dtype; target_type only gives the type",
    )
