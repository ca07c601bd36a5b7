"""ML105 copied-kv-cache: a decoder step that rebuilds its whole KV cache with a Concat, or
repeats it for grouped-query attention (repeat_kv Expand/Tile)."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import artifact
from memlint.analysis.kv_copies import is_cache_or_copy
from memlint.costs import ByteCounts, CostStatus, OpCost
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import Node, ValueKind
from memlint.rulebase import Example, Rule, RuleContext

_STEP = (
    'g (float[1,12,1023,64] past_key, float[1,12,1,64] k) => (float[1,12,1024,64] present_key) '
)


class CopiedKvCache(Rule):
    """The KV cache is copied on every step: present = Concat(past, new), or repeat_kv.

    ## What it does
    Finds a Concat that appends the new tokens' keys or values to a KV cache that comes in as a
    graph input (`past_key_values.N.key`, `past_key`, ...) and goes out as the next step's cache,
    also through the Casts that fp16 conversion with `keep_io_types=True` puts around the cache.
    It reports the bytes the copy moves, its predicted time, the cache bytes per token, and what
    writing only the new tokens in place would move. It also finds the Expand (or Tile) that
    repeats a grouped-query cache for every query head (transformers' `repeat_kv`): a copy
    G times the cache it reads, which a GQA kernel never makes. Copies of the cache are
    activation traffic, never the cache: memlint's capacity figures (ML104, ML108, the largest
    batch) leave them out.

    ## Why is this bad?
    Each decoding step reads the whole past cache and writes it again one token longer: about
    twice the cache size per step for a token's worth of new data, and it grows with the context.
    At long contexts and large batches this copy costs as much as the attention that reads the
    cache, and two cache buffers must fit in memory at once.

    ## How to fix
    Preallocate the cache for the maximum length and write the new tokens in place: onnxruntime
    GroupQueryAttention with one buffer for past and present (past_present_share_buffer, bound
    with IOBinding), or a static cache (transformers StaticCache) updated with `index_copy_` /
    scatter; in torch, a preallocated cache tensor written at the current position. For the
    repeat_kv copy: a kernel that reads the unexpanded KV heads (onnxruntime
    GroupQueryAttention, torch `scaled_dot_product_attention(..., enable_gqa=True)`). A torch
    module is pointed at its own cache and SDPA first, an ONNX graph at onnxruntime's.

    ## Known limits
    The in-place estimate reads and writes the new tokens once in one kernel; a fused attention
    kernel that writes them itself saves that kernel too. The batch is taken to be the first
    axis (none when the Concat joins along it). A Concat in a prompt step with an empty past
    copies nothing extra and is not flagged. The repeat_kv saving counts the Expand alone, not
    the Transposes and reads of the expanded copy after it.
    """

    code = "ML105"
    estimate = "as_written"  # a fusing runtime already does the fix
    name = "copied-kv-cache"
    severity = Severity.WARNING
    op_types = frozenset({"Concat", "Expand", "Tile"})
    fix = ("Preallocate the KV cache and update it in place (onnxruntime GroupQueryAttention "
           "with past_present_share_buffer and IOBinding, or transformers StaticCache).")
    bad = Example(_STEP + "{ present_key = Concat <axis = 2> (past_key, k) }")
    good = Example(  # the fix: one preallocated buffer, updated in place by the attention op
        'g (float[1,1,256] q, float[1,1,256] k, float[1,1,256] v, float[1,4,1024,64] past_key, '
        'float[1,4,1024,64] past_value, int32[1] seqlens_k, int32 total_sequence_length) => '
        '(float[1,1,256] y, float[1,4,1024,64] present_key, float[1,4,1024,64] present_value) '
        '{ y, present_key, present_value = com.microsoft.GroupQueryAttention <num_heads = 4, '
        'kv_num_heads = 4> (q, k, v, past_key, past_value, seqlens_k, total_sequence_length) }'
    )

    def check(self, ctx: RuleContext, node: Node) -> Iterator[Finding]:
        if node.op_type != "Concat":
            yield from _repeated(self, ctx, node)
            return
        past_names = [n for n in node.inputs if _from_graph_input(ctx, n)]
        present = ctx.value(node.outputs[0])
        if len(past_names) != 1 or present is None or not present.nbytes:
            return
        if present.kind is not ValueKind.KV_CACHE and not _reaches_output(ctx, node.outputs[0]):
            return
        past = ctx.value(past_names[0])
        new = [ctx.value(n) for n in node.inputs if n and n != past.name]
        new_bytes = sum(v.nbytes or 0 for v in new if v is not None)
        if not past.nbytes or not new_bytes:
            return
        result = ctx.result(node.name)
        copy_s = result.timing.predicted_latency_s
        axis = node.attributes.get("axis", 0) % len(present.shape)
        length = present.shape[axis]
        batch = present.shape[0] if axis else 1
        per_token = present.nbytes / (batch * length)
        in_place = OpCost(
            flops=0,
            bytes_read=ByteCounts.of(new),
            bytes_written=ByteCounts.single(ValueKind.KV_CACHE, new_bytes),
            status=CostStatus.MODELLED,
        )
        in_place_s = ctx.retime(in_place).predicted_latency_s
        saving_s = max(copy_s - in_place_s, 0.0)
        message = (
            f"Concat copies a {units.nbytes(past.nbytes)} KV cache to append "
            f"{units.nbytes(new_bytes)} of new tokens ({length} tokens after, "
            f"{units.nbytes(per_token)} per token per sequence): "
            f"{units.nbytes(result.cost.bytes_moved)} moved in "
            f"{units.seconds(copy_s)} ({units.percent(ctx.share(copy_s))} of predicted time); "
            f"writing the new tokens in place moves {units.nbytes(in_place.bytes_moved)}, "
            f"saving {units.seconds(saving_s)}"
        )
        yield self.finding(
            ctx, message, nodes=[node.name], time_s=copy_s,
            evidence=[
                Metric("past_bytes", past.nbytes, "B"),
                Metric("new_bytes", new_bytes, "B"),
                Metric("bytes_moved", result.cost.bytes_moved, "B"),
                Metric("copy_time_s", copy_s, "s"),
                Metric("share", ctx.share(copy_s), "fraction"),
                Metric("kv_bytes_per_token", per_token, "B"),
                Metric("in_place_bytes", in_place.bytes_moved, "B"),
            ],
            fixes=[Fix(text, saving_s) for text in _fixes(ctx)],
            signature=f"Concat axis={axis} " + " ".join(
                f"{v.dtype.label}{list(v.shape)}" for v in (past, *new, present) if v
            ),
        )


ORT_GQA = (
    "Use onnxruntime GroupQueryAttention (com.microsoft) with one buffer for past and present "
    "(past_present_share_buffer), bound with IOBinding, so only the new tokens are written "
    "(onnxruntime-genai's model builder writes the decoder this way)."
)
STATIC_CACHE = (
    "Use a static cache (transformers StaticCache) updated in place with index_copy_ / scatter, "
    "or preallocate the cache tensor in torch and write the current position."
)


def _fixes(ctx: RuleContext) -> list[str]:
    """Best first: a torch module updates its own cache in place; an ONNX graph gets
    onnxruntime's in-place cache first, the static cache of a re-export second."""
    return [STATIC_CACHE] if artifact(ctx).is_torch else [ORT_GQA, STATIC_CACHE]


def _repeated(rule: Rule, ctx: RuleContext, node: Node) -> Iterator[Finding]:
    """repeat_kv: an Expand/Tile that copies the KV cache (or a copy of it) G times."""
    source, out = ctx.value(node.inputs[0]), ctx.value(node.outputs[0])
    if source is None or out is None or not source.nbytes or not out.nbytes:
        return
    if not is_cache_or_copy(ctx.graph, source.name) or out.nbytes < 2 * source.nbytes:
        return
    times = out.nbytes / source.nbytes
    copy_s = ctx.result(node.name).timing.predicted_latency_s
    moved = ctx.result(node.name).cost.bytes_moved
    message = (
        f"{node.op_type} repeats the KV cache {times:g}x for grouped-query attention "
        f"(repeat_kv): {units.nbytes(source.nbytes)} -> {units.nbytes(out.nbytes)}, "
        f"{units.nbytes(moved)} moved in {units.seconds(copy_s)} "
        f"({units.percent(ctx.share(copy_s))} of predicted time); a GQA kernel reads the "
        f"unexpanded cache and makes no copy"
    )
    yield rule.finding(
        ctx, message, nodes=[node.name], time_s=copy_s,
        evidence=[Metric("cache_bytes", source.nbytes, "B"), Metric("copy_bytes", out.nbytes, "B"),
                  Metric("repeats", times), Metric("bytes_moved", moved, "B"),
                  Metric("copy_time_s", copy_s, "s"), Metric("share", ctx.share(copy_s), "fraction")],
        fixes=[Fix(TORCH_GQA_FIX if artifact(ctx).is_torch else GQA_FIX, copy_s)],
        signature=f"{node.op_type} {source.dtype.label}{list(source.shape)} -> {list(out.shape)}",
    )


GQA_FIX = (
    "Attend with a kernel that reads the unexpanded KV heads: onnxruntime GroupQueryAttention "
    "(com.microsoft), or torch scaled_dot_product_attention(..., enable_gqa=True)."
)
TORCH_GQA_FIX = (
    "Attend with a kernel that reads the unexpanded KV heads: torch "
    "scaled_dot_product_attention(..., enable_gqa=True) instead of repeat_kv (onnxruntime "
    "GroupQueryAttention after export)."
)
# Ops that pass the cache on as it is, or re-encoded (keep_io_types puts Casts around it).
_THROUGH = frozenset({"Cast", "Transpose"})


def _passes(ctx: RuleContext, node: Node) -> bool:
    return node.op_type in _THROUGH and not node.domain or (
        ctx.result(node.name).cost.status is CostStatus.METADATA)


def _from_graph_input(ctx: RuleContext, name: str) -> bool:
    """Is `name` a KV-cache graph input, directly or through metadata-only ops and Casts?"""
    value = ctx.value(name)
    if value is None or not is_cache_or_copy(ctx.graph, name):
        return False
    inputs = ctx.shared("graph-input-names", lambda: frozenset(ctx.graph.inputs))
    for _ in range(8):
        if name in inputs:
            return ctx.value(name).kind is ValueKind.KV_CACHE
        node = ctx.producer(name)
        if node is None or not node.inputs or not _passes(ctx, node):
            return False
        name = node.inputs[0]
    return False


def _reaches_output(ctx: RuleContext, name: str) -> bool:
    """Does `name` leave the graph, directly or through metadata-only ops and Casts?"""
    frontier = [name]
    for _ in range(8):
        if not frontier:
            break
        if any(ctx.is_graph_output(n) for n in frontier):
            return True
        frontier = [
            out for user in (u for n in frontier for u in ctx.consumers(n))
            if _passes(ctx, user)
            for out in user.outputs if out
        ]
    return False
