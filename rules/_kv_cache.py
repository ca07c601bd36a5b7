"""The KV cache a graph takes as input: its size at the bound shape, per token, and its heads.

Shared by the capacity rules (ML104 oversized-kv-cache, ML108 exceeds-device-memory).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from memlint.ir import Value, ValueKind
from memlint.rulebase import RuleContext

_PAST = re.compile(r"past", re.I)
_SEQ = re.compile(r"seq|length|cache|context|tokens", re.I)
_BATCH = re.compile(r"batch", re.I)
# Attention ops that carry their head counts as attributes: (q heads attr, kv heads attr).
_HEAD_ATTRS = {
    "Attention": ("q_num_heads", "kv_num_heads"),
    "com.microsoft::GroupQueryAttention": ("num_heads", "kv_num_heads"),
    "com.microsoft::MultiHeadAttention": ("num_heads", None),
    "com.microsoft::Attention": ("num_heads", None),
}


@dataclass(frozen=True)
class KvCache:
    """The KV-cache inputs of a graph at the bound batch x context."""

    nbytes: int  # every KV-cache input's bytes, summed
    bytes_per_token: float  # per token of one sequence, summed over the KV inputs
    batch: int
    context_tokens: int  # the longest sequence axis among the KV inputs
    inputs: int
    bits: int  # element width of the widest KV input
    kv_heads: int | None  # axis 1 of the key cache ([batch, heads, seq, head_dim])
    heads: int | None  # query heads, where an attention op shows them

    @property
    def bytes_per_sequence(self) -> float:
        return self.bytes_per_token * self.context_tokens


def kv_cache(ctx: RuleContext) -> KvCache | None:
    """The KV cache of the graph's inputs; None when it has no resolved KV-cache input."""
    caches = [
        v for name in ctx.graph.inputs
        if (v := ctx.value(name)) is not None and v.kind is ValueKind.KV_CACHE and v.is_resolved
    ]
    if not caches:
        return None
    per_token, batch, context, kv_heads = 0.0, 0, 0, None
    for value in sorted(caches, key=lambda v: "key" not in v.name.lower()):  # keys first
        batch_axis, seq_axis = _axes(value, ctx.model.input_dim_names.get(value.name, ()))
        if seq_axis is None:
            continue
        shape = value.shape
        rest = math.prod(d for i, d in enumerate(shape) if i not in (batch_axis, seq_axis))
        per_token += rest * value.dtype.bits / 8  # = nbytes / (batch * seq) when both are > 0
        batch = max(batch, shape[batch_axis])
        context = max(context, shape[seq_axis])
        if kv_heads is None and len(shape) == 4 and batch_axis == 0 and seq_axis in (1, 2):
            kv_heads = shape[3 - seq_axis]  # the other of axes 1, 2 of [batch, h, seq, d]
    return KvCache(
        nbytes=sum(v.nbytes or 0 for v in caches),
        bytes_per_token=per_token,
        batch=batch,
        context_tokens=context,
        inputs=len(caches),
        bits=max(v.dtype.bits for v in caches),
        kv_heads=kv_heads,
        heads=_query_heads(ctx),
    )


def _axes(value: Value, names: tuple[str | None, ...]) -> tuple[int, int | None]:
    """(batch axis, sequence axis): from the declared dim names, else the usual layouts
    [batch, heads, seq, head_dim] and [2, batch, heads, seq, head_dim]; seq None if unknown."""
    rank = len(value.shape or ())
    named = [(i, n) for i, n in enumerate(names) if n and i < rank]
    batch = next((i for i, n in named if _BATCH.search(n)), None)
    seq = next((i for i, n in named if _PAST.search(n) and i != batch), None)
    if seq is None:
        seq = next((i for i, n in named if _SEQ.search(n) and i != batch), None)
    if seq is not None:
        return (0 if batch is None else batch), seq
    layout = {4: (0, 2), 5: (1, 3)}.get(rank)
    if layout is None or batch not in (None, layout[0]):
        return (0 if batch is None else batch), None
    return layout


def _query_heads(ctx: RuleContext) -> int | None:
    """Query heads: an attention op's attribute, or axis 1 of the query in Q @ K^T."""
    for node in ctx.graph.nodes:
        attrs = _HEAD_ATTRS.get(node.qualified_op)
        if attrs and node.attributes.get(attrs[0]):
            return int(node.attributes[attrs[0]])
        if node.op_type != "MatMul" or node.domain or len(node.inputs) < 2:
            continue
        a, b = ctx.value(node.inputs[0]), ctx.value(node.inputs[1])
        if a is None or b is None or not (a.is_resolved and b.is_resolved):
            continue
        if len(a.shape) == 4 and len(b.shape) == 4 and (a.kind is ValueKind.KV_CACHE) != (
            b.kind is ValueKind.KV_CACHE
        ):
            query = b if a.kind is ValueKind.KV_CACHE else a
            return query.shape[1]
    return None


def largest_batch(budget_bytes: float, bytes_per_sequence: float) -> int | None:
    """How many sequences of `bytes_per_sequence` fit in `budget_bytes` (None: no per-sequence
    size to divide by)."""
    if bytes_per_sequence <= 0:
        return None
    return max(int(budget_bytes // bytes_per_sequence), 0)
