"""Output shapes of onnxruntime contrib ops (com.microsoft), which onnx's inference skips.

onnxruntime's transformer optimizer rewrites graphs into these fused ops; without their
shapes every tensor downstream would stay unknown. Each function gets the input shapes
(None where unknown or absent), the attributes and the known constant inputs, and returns
one (shape, input index whose dtype the output takes) pair per output, or None to give up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]
Out = tuple[Shape, int]
ShapeFn = Callable[[Sequence[Shape | None], dict[str, Any], Sequence[np.ndarray | None]], list[Out | None]]

CONTRIB_SHAPES: dict[str, ShapeFn] = {}


def _same_as_first(n_outputs: int = 1) -> ShapeFn:
    def fn(shapes, attrs, consts):  # type: ignore[no-untyped-def]
        return [(shapes[0], 0)] * n_outputs if shapes[0] is not None else [None]

    return fn


for _op in ("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "BiasDropout", "FastGeluFusion",
            "RotaryEmbedding", "BiasSoftmax", "Inverse", "GemmaRotaryEmbedding", "MoE", "QMoE"):
    CONTRIB_SHAPES[_op] = _same_as_first()


def _layer_norm(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    x = shapes[0]
    if x is None:
        return [None]
    stats = x[:-1] + (1,)
    # output, mean, inv_std_var, input_skip_bias_sum (the last only for Skip* variants)
    return [(x, 0), (stats, 0), (stats, 0), (x, 0)]


for _op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
            "SimplifiedLayerNormalization", "LayerNormalization"):
    CONTRIB_SHAPES[_op] = _layer_norm


def _matmul_nbits(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    a = shapes[0]
    return [(a[:-1] + (int(attrs["N"]),), 0)] if a is not None and "N" in attrs else [None]


CONTRIB_SHAPES["MatMulNBits"] = _matmul_nbits


def _broadcast_matmul(a: Shape, b: Shape) -> Shape | None:
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        return None
    return tuple(batch) + (a[-2], b[-1])


def _fused_matmul(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    a, b = shapes[0], shapes[1]
    if a is None or b is None:
        return [None]
    if attrs.get("transA"):
        a = a[:-2] + (a[-1], a[-2])
    if attrs.get("transB"):
        b = b[:-2] + (b[-1], b[-2])
    out = _broadcast_matmul(a, b)
    return [(out, 0)] if out else [None]


CONTRIB_SHAPES["FusedMatMul"] = _fused_matmul
CONTRIB_SHAPES["MatMulIntegerToFloat"] = lambda s, a, c: (
    [(_broadcast_matmul(s[0], s[1]), 2)] if s[0] and s[1] and _broadcast_matmul(s[0], s[1]) else [None]
)


def _attention(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    """com.microsoft Attention: input (B,S,Hin), weights (Hin, Hq+Hk+Hv), past (2,B,N,P,h)."""
    x, w = shapes[0], shapes[1]
    if x is None or w is None:
        return [None]
    sizes = attrs.get("qkv_hidden_sizes") or [w[1] // 3] * 3
    heads = int(attrs["num_heads"])
    out = (x[0], x[1], int(sizes[2]))
    past = shapes[4] if len(shapes) > 4 else None
    past_len = past[3] if past is not None else 0
    present = (2, x[0], heads, past_len + x[1], int(sizes[0]) // heads)
    return [(out, 0), (present, 0)]


def _multi_head_attention(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    """MultiHeadAttention: query (B,S,Hq) [or packed], key/value (B,L,H) or (B,N,L,h)."""
    q = shapes[0]
    if q is None or len(q) != 3:
        return [None]
    heads = int(attrs["num_heads"])
    key = shapes[1] if len(shapes) > 1 else None
    value = shapes[2] if len(shapes) > 2 else None
    v_hidden = _hidden(value) if value is not None else q[2]
    head_size = (_hidden(key) if key is not None else q[2]) // heads
    kv_len = (key[2] if len(key) == 4 else key[1]) if key is not None else q[1]
    past = shapes[6] if len(shapes) > 6 else None
    total = (past[2] if past is not None else 0) + kv_len
    present = (q[0], heads, total, head_size)
    return [(q[:2] + (v_hidden,), 0), (present, 0), (present, 0)]


def _hidden(shape: Shape) -> int:
    return shape[1] * shape[3] if len(shape) == 4 else shape[-1]


def _group_query_attention(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    """GroupQueryAttention: query (B,S,N*h) or packed QKV, past_key (B,Nkv,P,h)."""
    q = shapes[0]
    if q is None:
        return [None]
    heads, kv_heads = int(attrs["num_heads"]), int(attrs["kv_num_heads"])
    key = shapes[1] if len(shapes) > 1 else None
    if key is None:  # packed QKV: hidden = (N + 2 Nkv) * h
        head_size = q[2] // (heads + 2 * kv_heads)
    else:
        head_size = q[2] // heads
    past = shapes[3] if len(shapes) > 3 else None
    past_len = past[2] if past is not None else 0
    total = consts[6] if len(consts) > 6 and consts[6] is not None else None
    total_len = int(np.asarray(total).reshape(-1)[0]) if total is not None else past_len + q[1]
    present = (q[0], kv_heads, max(past_len, total_len), head_size)
    return [((q[0], q[1], heads * head_size), 0), (present, 0), (present, 0)]


def _embed_layer_norm(shapes, attrs, consts):  # type: ignore[no-untyped-def]
    ids, word = shapes[0], shapes[2] if len(shapes) > 2 else None
    if ids is None or word is None:
        return [None]
    return [((ids[0], ids[1], word[1]), 2), ((ids[0],), 0), ((ids[0], ids[1], word[1]), 2)]


CONTRIB_SHAPES.update(
    {
        "Attention": _attention,
        "MultiHeadAttention": _multi_head_attention,
        "DecoderMaskedMultiHeadAttention": _multi_head_attention,
        "GroupQueryAttention": _group_query_attention,
        "EmbedLayerNormalization": _embed_layer_norm,
    }
)
