"""Op families (for colour) and small naming helpers shared by the view model and the chart."""

from __future__ import annotations

import re
from collections.abc import Sequence

from memlint.core.report import NodeResult

# Op families, for colour. The cost registry keeps no family per op, so this is one table,
# grouped as the memlint.costs modules are (pooling counts as a reduction, the recurrent cells
# as matmuls, metadata-only ops as data movement). An op missing here is "other".

_FAMILY_OPS = {
    "matmul": """Einsum Gemm MatMul MatMulInteger QLinearMatMul DynamicQuantizeMatMul FusedMatMul
        GemmFastGelu MatMulIntegerToFloat MatMulNBits QGemm GRU LSTM RNN""",
    "conv": "Conv ConvInteger ConvTranspose QLinearConv FusedConv NhwcConv NhwcFusedConv",
    "attention": """Attention RotaryEmbedding DecoderMaskedMultiHeadAttention GroupQueryAttention
        MultiHeadAttention PackedAttention PackedMultiHeadAttention SparseAttention""",
    "normalization": """BatchNormalization GroupNormalization InstanceNormalization LRN
        LayerNormalization LpNormalization MeanVarianceNormalization RMSNormalization
        SimplifiedLayerNormalization EmbedLayerNormalization GroupNorm SkipGroupNorm
        SkipLayerNormalization SkipSimplifiedLayerNormalization""",
    "reduction": """ArgMax ArgMin CumProd CumSum Hardmax LogSoftmax ReduceL1 ReduceL2 ReduceLogSum
        ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
        Softmax TopK AveragePool GlobalAveragePool GlobalLpPool GlobalMaxPool LpPool MaxPool
        MaxUnpool RoiAlign NhwcMaxPool""",
    "data movement": """CenterCropPad Col2Im Compress Concat ConstantOfShape DepthToSpace Expand
        EyeLike Gather GatherElements GatherND GridSample NonMaxSuppression NonZero OneHot Pad
        Range Resize ReverseSequence Scatter ScatterElements ScatterND Slice SpaceToDepth Split
        TensorScatter Tile Transpose Trilu Unique Upsample ReorderInput ReorderOutput BitCast
        Constant Dropout Flatten Identity Optional OptionalGetElement OptionalHasElement Reshape
        SequenceEmpty SequenceLength Shape Size Squeeze Unsqueeze ExpandDims""",
    "control flow": "If Loop Scan",
    "elementwise": """Abs Acos Acosh Add And Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot
        BitwiseOr BitwiseXor Cast CastLike Ceil Celu Clip Cos Cosh DequantizeLinear Div
        DynamicQuantizeLinear Elu Equal Erf Exp Floor Gelu Greater GreaterOrEqual HardSigmoid
        HardSwish IsInf IsNaN LeakyRelu Less LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or
        PRelu Pow QuantizeLinear Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh Softplus
        Softsign Sqrt Sub Sum SwiGLU Swish Tan Tanh ThresholdedRelu Where Xor BiasAdd BiasGelu
        BiasSplitGelu FastGelu QuickGelu""",
}
OP_FAMILY = {op: family for family, ops in _FAMILY_OPS.items() for op in ops.split()}
FAMILIES = (*_FAMILY_OPS, "other")  # legend order


def family_of(op_type: str) -> str:
    return OP_FAMILY.get(op_type, "other")


def css_key(label: str) -> str:
    """'data movement' -> 'data-movement': a family or kind as a CSS class suffix."""
    return label.replace(" ", "-").replace("_", "-")


def node_anchors(nodes: Sequence[NodeResult]) -> tuple[str, ...]:
    """A unique HTML id per node, 'node-<slug>', in graph order ('-2', '-3' on collisions)."""
    seen: set[str] = set()
    anchors = []
    for node in nodes:
        base = "node-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name).strip("-.") or "unnamed")
        anchor, n = base, 1
        while anchor in seen:
            n += 1
            anchor = f"{base}-{n}"
        seen.add(anchor)
        anchors.append(anchor)
    return tuple(anchors)


def qualified(node: NodeResult) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain else node.op_type


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
