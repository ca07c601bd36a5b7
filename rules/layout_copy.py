"""ML107 layout-copy: Transpose, Cast, Expand and Tile nodes that copy large tensors."""

from __future__ import annotations

from collections.abc import Iterator

from memlint import units
from memlint.analysis.artifact import artifact
from memlint.analysis.attention import attention_node_names
from memlint.costs import CostStatus
from memlint.findings import Finding, Fix, Metric, Severity
from memlint.ir import Node
from memlint.rulebase import Example, Option, Rule, RuleContext

from ._copies import classify, for_torch, perm


class LayoutCopy(Rule):
    """A Transpose, Cast, Expand or Tile copies a large tensor only to change its layout.

    ## What it does
    Reports copies that move at least `min-bytes` (read + written) and names the known
    patterns: two Transposes that cancel, a Transpose of a weight, a Transpose of the last two
    axes into a MatMul operand, a Transpose of the KV cache (K^T), an attention head split or
    merge (perm [0, 2, 1, 3] or [0, 2, 3, 1]), a Cast round trip (a->b->a, directly or around
    a norm), a Cast to the same dtype, an Expand or Tile of the KV cache (GQA repeat_kv) or
    before an op that broadcasts anyway. Other large copies are reported as plain ones.

    ## Why is this bad?
    A copy does no arithmetic: its whole time is a read and a write of the tensor, pure memory
    traffic that a kernel reading the original layout, precision or broadcast would not need.

    ## How to fix
    Read operands transposed (Gemm transB, com.microsoft FusedMatMul), pre-transpose weights at
    export, delete cancelling pairs and round-trip Casts, use a GQA-aware attention kernel
    (GroupQueryAttention, SDPA enable_gqa) instead of repeat_kv, and let consumers broadcast.
    A torch module is told the torch way: transposes left as views for torch.matmul,
    `scaled_dot_product_attention` (with `enable_gqa=True` for repeat_kv), torch.compile.

    ## Known limits
    Copies of weights that are folded at load time cost nothing per run and are not reported.
    The head split/merge pattern is recognised by its perm alone. The saving assumes the
    consumer reads the original tensor at no extra cost (true for transposed GEMM operands and
    broadcasting ops; strided reads can be slower in practice).
    """

    code = "ML107"
    name = "layout-copy"
    severity = Severity.WARNING
    op_types = frozenset({"Transpose", "Cast", "Expand", "Tile"})
    options = {
        "min-bytes": Option(1 << 20, "report copies moving at least this many bytes (read + written)"),
    }
    fix = "Fold the layout change into the producer or consumer kernel."
    bad = Example(
        "g (float[1024,2048] x, float[1024,512] w) => (float[2048,512] y) {\n"
        "  t = Transpose<perm = [1, 0]>(x)  y = MatMul(t, w)\n}"
    )
    good = Example(
        "g (float[2048,1024] x, float[1024,512] w) => (float[2048,512] y) { y = MatMul(x, w) }"
    )

    def check(self, ctx: RuleContext, node: Node) -> Iterator[Finding]:
        own = ctx.result(node.name)
        if own is None or own.cost.status is not CostStatus.MODELLED:
            return  # folded at load (a weight's copy), metadata, or not sized
        if node.name in attention_node_names(ctx):
            return  # part of an eager attention block: ML103's fused kernel removes it
        copy = classify(ctx, node)
        if copy is None:
            return  # the second node of a pair, reported with the first
        if artifact(ctx).is_torch:
            copy = for_torch(copy)
        results = [ctx.result(n.name) for n in copy.nodes]
        if any(r is None or r.cost.status is not CostStatus.MODELLED for r in results):
            return
        moved = sum(r.cost.bytes_moved for r in results)
        if moved < ctx.options["min-bytes"]:
            return
        time_s = sum(r.timing.predicted_latency_s for r in results)
        what = " then ".join(_describe(ctx, n) for n in copy.nodes)
        yield self.finding(
            ctx,
            f"{copy.pattern}: {what} moves {units.nbytes(moved)} in {units.seconds(time_s)} "
            f"({units.percent(ctx.share(time_s))} of predicted time), all of it saved by the fix",
            nodes=[n.name for n in copy.nodes],
            evidence=[
                Metric("copies", len(copy.nodes)),
                Metric("bytes_moved", moved, "B"),
                Metric("time_s", time_s, "s"),
                Metric("share", ctx.share(time_s), "fraction"),
            ],
            fixes=[Fix(copy.fix[0].upper() + copy.fix[1:] + ".", time_s)],
            time_s=time_s,
            signature=f"{copy.pattern}|" + ";".join(_describe(ctx, n) for n in copy.nodes),
        )


def _describe(ctx: RuleContext, node: Node) -> str:
    """"Transpose perm=[0, 2, 1, 3] float32[1, 128, 12, 64] -> float32[1, 12, 128, 64]"."""
    src, out = ctx.value(node.inputs[0]), ctx.value(node.outputs[0])
    attr = f" perm={list(perm(ctx, node))}" if node.op_type == "Transpose" else ""
    shapes = " -> ".join(
        f"{v.dtype.label}{list(v.shape or ())}" if v is not None else "?" for v in (src, out)
    )
    return f"{node.op_type}{attr} {shapes}"
