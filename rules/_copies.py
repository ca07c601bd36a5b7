"""Known patterns of layout copies (Transpose, Cast, Expand, Tile) for ML107."""

from __future__ import annotations

from dataclasses import dataclass

from memlint.analysis.fusion import is_fusible, readers, source
from memlint.ir import Node, ValueKind
from memlint.rulebase import RuleContext

from ._cast_pairs import casts_before, dtypes, partner

MATMULS = frozenset({"MatMul", "Gemm", "com.microsoft::FusedMatMul"})
GQA = (
    "use a GQA-aware attention kernel that reads each KV head once for its query group: "
    "onnxruntime com.microsoft GroupQueryAttention, or torch SDPA with enable_gqa=True "
    "instead of repeat_kv"
)
FOLD = "fold the layout change into the producer or consumer kernel"
ATTENTION = (
    "a fused attention kernel (onnxruntime Attention / MultiHeadAttention / "
    "GroupQueryAttention from the transformers optimizer, or torch SDPA) reads Q, K, V and "
    "writes its output in the [batch, sequence, hidden] layout, so this copy disappears"
)
HEAD_PERMS = frozenset({(0, 2, 1, 3), (0, 2, 3, 1)})  # [b, s, heads, d] <-> [b, heads, s, d]
SDPA = "torch.nn.functional.scaled_dot_product_attention"
# A torch module's fixes (memlint.analysis.artifact), by the start of the copy's pattern: torch
# APIs instead of ONNX rewrites.
TORCH_GQA = f"{SDPA}(..., enable_gqa=True) reads each KV head once for its group, not repeat_kv"
TORCH_FIXES = (
    ("cancelling Transpose pair",
     "remove both permutes, they compose to the identity (torch.compile drops them)"),
    ("weight Transpose",
     ("transpose the weight once when the module is built (a parameter in the layout the "
      "kernel reads), not on every call")),
    ("Transpose into MatMul operand",
     ("keep the transpose a view: torch.matmul reads a transposed operand without a copy (no "
      ".contiguous() before it), and torch.compile folds the permute")),
    ("Transpose of the KV cache",
     f"{SDPA} reads K as it is (no K^T copy) and keeps the scores on chip"),
    ("attention head split/merge Transpose",
     (f"if this is attention: {SDPA} takes the heads as a transposed view; else {FOLD} "
      "(torch.compile)")),
    ("Expand of the KV cache", TORCH_GQA),
    ("Tile of the KV cache", TORCH_GQA),
)


@dataclass(frozen=True)
class Copy:
    """A recognised copy: its pattern, the copy nodes it concerns and the fix."""

    pattern: str
    nodes: tuple[Node, ...]
    fix: str


def classify(ctx: RuleContext, node: Node) -> Copy | None:
    """The pattern of this copy; None when another node reports it (the second of a pair)."""
    if node.op_type == "Transpose":
        return _transpose(ctx, node)
    if node.op_type == "Cast":
        return _cast(ctx, node)
    return _expand(ctx, node)


def for_torch(copy: Copy) -> Copy:
    """The copy with a torch module's fix, where its pattern has one."""
    for start, fix in TORCH_FIXES:
        if copy.pattern.startswith(start):
            return Copy(copy.pattern, copy.nodes, fix)
    return copy


def perm(ctx: RuleContext, node: Node) -> tuple[int, ...]:
    value = ctx.value(node.inputs[0])
    rank = len(value.shape) if value is not None and value.shape is not None else 0
    return tuple(node.attributes.get("perm") or range(rank - 1, -1, -1))


def _transpose(ctx: RuleContext, node: Node) -> Copy | None:
    first = ctx.producer(node.inputs[0])
    if first is not None and first.op_type == "Transpose" and _cancels(ctx, first, node):
        return None
    users = ctx.consumers(node.outputs[0])
    if len(users) == 1 and users[0].op_type == "Transpose" and _cancels(ctx, node, users[0]):
        return Copy("cancelling Transpose pair", (node, users[0]),
                    "remove both Transposes, they compose to the identity (onnxruntime's "
                    "transpose optimizer or onnxoptimizer's fuse_consecutive_transposes drop them)")
    if _from_weights(ctx, node.inputs[0], 4):
        return Copy("weight Transpose", (node,),
                    "pre-transpose the weight at export (store it in the layout the kernel "
                    "reads), or read it transposed: Gemm transB=1, com.microsoft FusedMatMul")
    p = perm(ctx, node)
    into = [(r, r.inputs.index(v)) for r, v in _readers_of(ctx, node.outputs[0])]
    last_two = len(p) >= 2 and p == (*range(len(p) - 2), len(p) - 1, len(p) - 2)
    if into and all(r.qualified_op in MATMULS and i < 2 for r, i in into) and last_two:
        side = "AB"[into[0][1]]
        return Copy(f"Transpose into MatMul operand {side}", (node,),
                    f"read operand {side} transposed instead: com.microsoft FusedMatMul(trans"
                    f"{side}=1), or Gemm trans{side}=1 for 2-D (onnxruntime's "
                    "MatMulTransposeFusion does this at ORT_ENABLE_EXTENDED)")
    value = ctx.value(node.inputs[0])
    if value is not None and value.kind is ValueKind.KV_CACHE:
        return Copy("Transpose of the KV cache", (node,), f"{ATTENTION}; at least read K "
                    "transposed in the score MatMul: com.microsoft FusedMatMul(transB=1, alpha="
                    "scale) also folds the scaling Mul")
    if p in HEAD_PERMS:
        return Copy("attention head split/merge Transpose", (node,),
                    f"if this is attention: {ATTENTION}; else {FOLD}")
    return Copy("layout Transpose", (node,), FOLD)


def _cancels(ctx: RuleContext, first: Node, second: Node) -> bool:
    """second(first(x)) == x, and nothing else reads first's output."""
    p1, p2 = perm(ctx, first), perm(ctx, second)
    only = len(ctx.consumers(first.outputs[0])) == 1 and not ctx.is_graph_output(first.outputs[0])
    return only and len(p1) == len(p2) and all(p1[p2[i]] == i for i in range(len(p2)))


def _cast(ctx: RuleContext, node: Node) -> Copy | None:
    if any((t := partner(ctx, c)) is not None and t.back is node for c in casts_before(ctx, node)):
        return None
    a, b = dtypes(ctx, node)
    if a == b:
        return Copy(f"no-op Cast to {b}", (node,), "remove it: input and output have the same "
                    "dtype (the onnxruntime transformers optimizer drops such Casts)")
    trip = partner(ctx, node)
    if trip is None:
        return Copy(f"Cast {a}->{b}", (node,), "fold the conversion into the producer or "
                    "consumer kernel (convert in registers), or keep the graph in one precision")
    if not trip.between:
        return Copy(f"Cast round trip {a}->{b}->{a}", (node, trip.back),
                    "keep one precision: the pair only rounds the values, remove both Casts")
    ops = ", ".join(dict.fromkeys(trip.between))
    return Copy(f"Cast round trip {a}->{b}->{a} around {ops}", (node, trip.back),
                f"keep one precision: run {ops} in {a} with {b} accumulation inside one kernel "
                "(LayerNormalization stash_type=1, SimplifiedLayerNormalization, or the fused "
                "chain of ML102) instead of writing converted copies")


def _expand(ctx: RuleContext, node: Node) -> Copy:
    values = [ctx.value(source(ctx, node.inputs[0])), ctx.value(node.outputs[0])]
    if any(v is not None and v.kind is ValueKind.KV_CACHE for v in values):
        return Copy(f"{node.op_type} of the KV cache (GQA repeat_kv)", (node,), GQA)
    users = [r for r, _ in _readers_of(ctx, node.outputs[0])]
    if users and all(is_fusible(r) and r.op_type != "Cast" for r in users):
        ops = ", ".join(sorted({r.op_type for r in users}))
        return Copy(f"{node.op_type} before a broadcasting op", (node,),
                    f"drop the {node.op_type} and pass the unexpanded tensor: the consumer "
                    f"({ops}) broadcasts it natively")
    return Copy(f"materialised {node.op_type}", (node,),
                "let the consumer broadcast or index the source instead of copying it")


def _readers_of(ctx: RuleContext, name: str) -> list[tuple[Node, str]]:
    """(reader, the input name it reads the data by), looking through views."""
    found = []
    for r in readers(ctx, name):
        names = [v for v in r.inputs if v and source(ctx, v) == source(ctx, name)]
        if names:
            found.append((r, names[0]))
    return found


def _from_weights(ctx: RuleContext, name: str, hops: int) -> bool:
    """The tensor is a weight or computed from weights alone (e.g. DequantizeLinear of one)."""
    value = ctx.value(name)
    if value is not None and value.kind is ValueKind.WEIGHT:
        return True
    node = ctx.producer(name)
    if node is None or hops == 0:
        return False
    return all(_from_weights(ctx, v, hops - 1) for v in node.inputs if v)
