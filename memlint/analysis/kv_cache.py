"""The KV cache a graph takes as input, read through memlint.analysis.structure (the one place that
knows KV-cache names, dim roles and heads); shared by ML104 oversized-kv-cache and ML108."""

from __future__ import annotations

from dataclasses import dataclass

from memlint.analysis.graph_index import GraphIndex
from memlint.analysis.structure import detect


@dataclass(frozen=True)
class KvCache:
    nbytes: int
    bytes_per_token: float
    batch: int
    context_tokens: int
    inputs: int
    bits: int
    kv_heads: int | None
    heads: int | None

    @property
    def bytes_per_sequence(self) -> float:
        return self.bytes_per_token * self.context_tokens


def kv_cache(ctx: GraphIndex) -> KvCache | None:
    """The KV-cache inputs at their bound shapes; None when the graph takes none (resolved)."""
    structure = ctx.shared("llm.structure", lambda: detect(ctx.model, use_config=False))
    resolved = [t for t in structure.kv_inputs if ctx.value(t.name).is_resolved]
    if not resolved:
        return None
    values = {t.name: ctx.value(t.name) for t in resolved}
    seq = [t for t in resolved if t.seq_axis is not None]
    return KvCache(
        nbytes=sum(v.nbytes or 0 for v in values.values()),
        bytes_per_token=sum((t.elements_per_token or 0) * t.dtype.bits / 8 for t in seq),
        batch=max((values[t.name].shape[t.batch_axis] for t in seq), default=0),
        context_tokens=max((values[t.name].shape[t.seq_axis] for t in seq), default=0),
        inputs=len(resolved),
        bits=max(t.dtype.bits for t in resolved),
        kv_heads=structure.kv_heads,
        heads=structure.heads,
    )


def largest_batch(budget_bytes: float, bytes_per_sequence: float) -> int | None:
    """How many sequences of `bytes_per_sequence` fit in `budget_bytes` (None: no per-sequence
    size to divide by)."""
    if bytes_per_sequence <= 0:
        return None
    return max(int(budget_bytes // bytes_per_sequence), 0)
