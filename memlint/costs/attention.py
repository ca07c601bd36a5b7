"""Fused attention ops and rotary embeddings.

Counts used, with B the batch, S the query length, T the total key length (past + new), H the
number of query heads, d_qk and d_v the head sizes (a multiply-accumulate is 2 FLOPs):

- Q @ K^T: `2 * B * H * S * T * d_qk`; scores @ V: `2 * B * H * S * T * d_v`.
- Softmax: `SOFTMAX_FLOPS` = 5 per score element (max, subtract, exp, sum, divide). Scaling,
  masking, softcap and attention bias are not counted separately. Causal and padding masks do not
  shrink the count: every score is counted as computed. With GroupQueryAttention's
  local_window_size w > 0, a query sees at most min(T, w + 1) keys.
- com.microsoft Attention also runs the fused Q/K/V projection: `2 * B * S * D_in * D_qkv`, plus
  1 per projected element for its bias. QAttention counts the same, its arithmetic in the dtype
  of its int8/uint8 input (dequantizing the product is not counted). MultiHeadAttention and DecoderMaskedMultiHeadAttention add
  1 per element of Q, K and V for their bias input when given.
- Rotary embedding: `ROTARY_FLOPS` = 3 per rotated element (two multiplies and an add); the
  RotaryEmbedding ops count 3 per output element, GroupQueryAttention and com.microsoft Attention
  with do_rotary 3 per element of Q and K.
- T: past length + new key length. Where past and present share one buffer
  (past_present_share_buffer, or a past_sequence_length input), the past length is taken from
  past_sequence_length when its value is known, else the buffer length is used as an upper bound.
  GroupQueryAttention takes T from total_sequence_length when known, else from present_key's
  length, else past + new.

Bytes: the op as written, each input read once and each output written once (past/present KV
caches land in the kv_cache bytes when their tensors are KV-cache tensors). The S x T score matrix
is not counted: these are fused kernels that keep it on chip. Attention runs on the tensor unit,
rotary embedding on the vector unit.
"""

from __future__ import annotations

import dataclasses

from memlint.costs.model import ByteCounts, OpCost
from memlint.costs.reduction import SOFTMAX_FLOPS
from memlint.costs.registry import CostContext, Formula, OpInfo, add_formula, register
from memlint.ir import ComputeUnit

MS = "com.microsoft"
ATTENTION = OpInfo("attention")
ROTARY_FLOPS = 3
FUSED_NOTE = "fused attention: the S x T score matrix stays on chip and is not counted as bytes"
SHARED_NOTE = "shared KV buffer: its length is used as an upper bound of T"


def sdpa_flops(batch: int, heads: int, s: int, t: int, qk_hidden: int, v_hidden: int) -> int:
    """Q @ K^T, softmax and scores @ V; `*_hidden` are head size times the query heads."""
    return 2 * batch * s * t * (qk_hidden + v_hidden) + SOFTMAX_FLOPS * batch * heads * s * t


def _attention_cost(ctx: CostContext, flops: int, note: str = "") -> OpCost:
    note = f"{FUSED_NOTE}; {note}" if note else FUSED_NOTE
    return ctx.cost(flops, unit=ComputeUnit.TENSOR, note=note)


def _total_length(
    ctx: CostContext, buffer: int, new: int, length_input: int | None, shared: bool
) -> tuple[int, str]:
    """T = past + new keys, and a note when only a shared KV buffer's length bounds it
    (`length_input`: the input holding the past length, None where the op has none)."""
    if not shared:
        return buffer + new, ""
    known = None if length_input is None else ctx.const(length_input)
    if known is not None:
        return int(known.reshape(-1)[0]) + new, ""
    return buffer, SHARED_NOTE


@register("Attention", info=ATTENTION)
def _onnx_attention(ctx: CostContext) -> OpCost:
    q, k, y = ctx.shape(0), ctx.shape(1), ctx.out_shape(0)
    if len(q) == 4:  # (B, H, S, d)
        batch, heads, s, qk_hidden = q[0], q[1], q[2], q[1] * q[3]
    else:  # (B, S, H*d)
        heads = ctx.attr("q_num_heads") or 1
        batch, s, qk_hidden = q
    v_hidden = y[1] * y[3] if len(y) == 4 else y[2]
    t = k[2] if len(k) == 4 else k[1]
    if ctx.input(4) is not None:
        t += ctx.shape(4)[2]
    return _attention_cost(ctx, sdpa_flops(batch, heads, s, t, qk_hidden, v_hidden))


def _qkv_attention(past: int, past_length: int | None, *, integer: bool) -> Formula:
    """com.microsoft Attention-like formula: the fused Q/K/V projection of input 0 by weight 1
    (bias 2), the past cache at input `past` (2, B, H, P, d), its length at `past_length`.
    integer: QAttention, whose projection runs on the int8/uint8 input and weight."""

    def formula(ctx: CostContext) -> OpCost:
        batch, s, d_in = ctx.shape(0)
        d_qkv = ctx.shape(1)[1]
        heads = ctx.attr("num_heads", 1)
        q_hidden, k_hidden, v_hidden = ctx.attr("qkv_hidden_sizes") or [d_qkv // 3] * 3
        flops = 2 * batch * s * d_in * d_qkv
        flops += batch * s * d_qkv if ctx.input(2) is not None else 0
        t, note = s, ""
        if ctx.input(past) is not None:
            shared = bool(ctx.attr("past_present_share_buffer", 0))
            t, note = _total_length(ctx, ctx.shape(past)[3], s, past_length, shared)
        if ctx.attr("do_rotary", 0):
            flops += ROTARY_FLOPS * batch * s * (q_hidden + k_hidden)
        flops += sdpa_flops(batch, heads, s, t, q_hidden, v_hidden)
        return _attention_cost(ctx, flops, note)

    built = Formula(formula, ATTENTION)
    return built.computing_in(0) if integer else built


add_formula("Attention", _qkv_attention(past=4, past_length=6, integer=False), domain=MS)
# QAttention: input, weight, bias, input_scale, weight_scale, mask_index, input_zero_point,
# weight_zero_point, past (and no past_sequence_length input)
add_formula("QAttention", _qkv_attention(past=8, past_length=None, integer=True), domain=MS)


def _multi_head(past_key: int, past_length: int, bias: int) -> Formula:
    """MultiHeadAttention-like formula; the arguments are input indices, which differ by op."""

    def formula(ctx: CostContext) -> OpCost:
        q, key = ctx.shape(0), ctx.input(1)
        heads = ctx.attr("num_heads", 1)
        batch, s = q[0], q[1]
        v_hidden = ctx.out_shape(0)[2]
        if len(q) == 5:  # packed QKV: (B, S, H, 3, d)
            qk_hidden = q[2] * q[4]
        elif key is None:  # packed QKV: (B, S, 2 * D + D_v)
            qk_hidden = (q[2] - v_hidden) // 2
        else:
            qk_hidden = q[2]
        if key is None:
            kv_new = s
        else:  # (B, L, D), (B, L, H, 2, d) or already projected (B, H, L, d)
            kv_new = key.shape[2] if len(key.shape) == 4 else key.shape[1]
        t, note = kv_new, ""
        if ctx.input(past_key) is not None:
            shared = ctx.input(past_length) is not None or ctx.attr("past_present_share_buffer", 0)
            t, note = _total_length(ctx, ctx.shape(past_key)[2], kv_new, past_length, bool(shared))
        flops = sdpa_flops(batch, heads, s, t, qk_hidden, v_hidden)
        if ctx.input(bias) is not None:  # (D_q + D_k + D_v,), on the new Q, K and V
            flops += batch * (s * qk_hidden + kv_new * (ctx.shape(bias)[0] - qk_hidden))
        return _attention_cost(ctx, flops, note)

    return Formula(formula, ATTENTION)


add_formula("MultiHeadAttention", _multi_head(past_key=6, past_length=8, bias=3), domain=MS)
add_formula(
    "DecoderMaskedMultiHeadAttention", _multi_head(past_key=5, past_length=7, bias=10), domain=MS
)


@register("GroupQueryAttention", domain=MS, info=ATTENTION)
def _group_query_attention(ctx: CostContext) -> OpCost:
    batch, s, d = ctx.shape(0)
    heads = ctx.attr("num_heads", 1)
    kv_heads = ctx.attr("kv_num_heads", heads)
    packed = ctx.input(1) is None  # query holds Q, K and V: (B, S, (H + 2*H_kv) * d)
    head_size = d // (heads + 2 * kv_heads) if packed else d // heads
    total, note = ctx.const(6), ""
    past = ctx.shape(3)[2] if ctx.input(3) is not None else 0
    if total is not None:
        t = int(total.reshape(-1)[0])
    elif ctx.output(1) is not None:  # present_key: (B, H_kv, T, d)
        t = ctx.out_shape(1)[2]
        note = SHARED_NOTE if t == past else ""
    else:
        t = past + s
    window = ctx.attr("local_window_size", -1)
    if window > 0:
        t = min(t, window + 1)
    flops = sdpa_flops(batch, heads, s, t, heads * head_size, heads * head_size)
    if ctx.attr("do_rotary", 0):
        flops += ROTARY_FLOPS * batch * s * (heads + kv_heads) * head_size
    return _attention_cost(ctx, flops, note)


@register("RotaryEmbedding", info=ATTENTION)
@register("RotaryEmbedding", domain=MS, info=ATTENTION)
def _rotary_embedding(ctx: CostContext) -> OpCost:
    """Reads the input, the position ids and, of the cos and sin caches, the rows of those
    positions (a cache of every position up to the model's maximum is indexed, not streamed:
    onnxruntime's kernel reads cache[position_ids[b, s]]); writes the output."""
    ms = ctx.node.domain == MS
    positions = ctx.input(1 if ms else 3)
    caches = (2, 3) if ms else (1, 2)
    reads = []
    for index, value in enumerate(ctx.inputs):
        if value is None:
            continue
        if index in caches and positions is not None and positions.numel \
                and value.shape and len(value.shape) == 2 and value.nbytes:
            rows = min(positions.numel, value.shape[0])  # rows gathered, at most the cache
            value = dataclasses.replace(value, shape=(rows, value.shape[1]))
        reads.append(value)
    return ctx.cost(ROTARY_FLOPS * ctx.out_numel(), unit=ComputeUnit.VECTOR,
                    bytes_read=ByteCounts.of(reads))
