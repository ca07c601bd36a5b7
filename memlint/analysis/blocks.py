"""The block role of every node of a graph, for the per-block breakdown (`summary.by_block`)
and `--exclude-block` (docs/blocks.md).

The roles follow the analytical convention of Kim et al. 2023 ("Full Stack Optimization of
Transformer Inference: a Survey", arXiv 2302.14017), read from the graph's structure alone:

- embedding: Gathers of weight tables (token, position, token-type embeddings), the element-wise
  ops that combine only their outputs (the position and type embedding Adds), and
  onnxruntime's EmbedLayerNormalization.
- attention_projection: weight matrix products that feed an act-to-act matrix product or a
  fused attention op (Q, K, V, also packed QKV) or that read one's output (O), through layout
  and element-wise ops but never through another weight product.
- attention_scores: matrix products neither of whose operands is a weight (Q@K^T, P@V), Softmax,
  fused attention ops (Attention, MultiHeadAttention, GroupQueryAttention, ...; an
  onnxruntime Attention op that also holds the QKV weights counts here whole), and the ops that
  read or write the KV cache itself (a past Concat).
- ffn: the other weight matrix products that pair with one another (up -> down, fc1 -> fc2,
  gate and up -> down) through element-wise ops, as Kim et al. count the FFN: its linear layers
  only (the bias folded into a Gemm comes with it; bias Adds and GELU are element-wise).
- lm_head: in a model with an embedding table, a weight matrix product whose output is as wide
  as the vocabulary (the row count of the largest embedding table) or is named logits.
- other: weight matrix products in none of the above (a BERT pooler, a classifier head) and
  convolutions.
- norm_elementwise: everything else: normalizations, activations, bias and residual Adds, the
  attention scale and mask, layout copies.

Roles are computed once per graph (memlint.ir.per_graph); nodes inside subgraphs take the role of
the If/Loop node that holds them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from memlint.analysis.graph_index import structure_of
from memlint.ir import Graph, Node, ValueKind, per_graph

EMBEDDING = "embedding"
ATTENTION_PROJECTION = "attention_projection"
ATTENTION_SCORES = "attention_scores"
FFN = "ffn"
NORM_ELEMENTWISE = "norm_elementwise"
LM_HEAD = "lm_head"
OTHER = "other"

# In the order reports list them (a model's data flow).
BLOCKS = (EMBEDDING, ATTENTION_PROJECTION, ATTENTION_SCORES, FFN, NORM_ELEMENTWISE, LM_HEAD, OTHER)
LABELS = MappingProxyType({
    EMBEDDING: "embedding", ATTENTION_PROJECTION: "attention projections",
    ATTENTION_SCORES: "attention scores", FFN: "FFN", NORM_ELEMENTWISE: "norms, element-wise",
    LM_HEAD: "LM head", OTHER: "other matmuls, convs",
})  # fmt: skip

# Matrix products and the input positions of their two operands.
_MATMULS = MappingProxyType({
    "MatMul": (0, 1), "Gemm": (0, 1), "FusedMatMul": (0, 1), "MatMulNBits": (0, 1),
    "MatMulInteger": (0, 1), "MatMulIntegerToFloat": (0, 1), "DynamicQuantizeMatMul": (0, 1),
    "MatMulBnb4": (0, 1), "MatMulFpQ4": (0, 1), "QLinearMatMul": (0, 3), "QGemm": (0, 3),
    "Einsum": (0, 1),
})  # fmt: skip
_ATTENTION = frozenset({
    "Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
    "PackedMultiHeadAttention", "DecoderMaskedMultiHeadAttention", "DecoderMaskedSelfAttention",
    "SparseAttention", "LongformerAttention", "QAttention", "QOrderedAttention",
    "DecoderAttention", "PagedAttention",
})  # fmt: skip
_SCORES = _ATTENTION | {"Softmax"}
_CONVS = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "NhwcConv",
                    "FusedConv"})
_EMBEDDING_OPS = frozenset({"EmbedLayerNormalization"})
_GATHERS = frozenset({"Gather", "GatherBlockQuantized"})
# Ops a pairing walk does not cross: a row selection (a pooler reads one token) and
# normalizations (the boundary between a layer's blocks).
_WALLS = frozenset({
    "Gather", "GatherElements", "GatherND", "Slice", "LayerNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
    "RMSNormalization", "Softmax",
})  # fmt: skip
# Where every walk stops: shape arithmetic (it links every tensor to every other) and the
# layer norms between blocks (an onnxruntime Attention op reads the norm's output directly).
# RMS norms are crossed: a QK-norm sits between a projection and the scores.
_STOPS = frozenset({"Shape", "Size", "LayerNormalization", "SkipLayerNormalization",
                    "SkipSimplifiedLayerNormalization"})
_DEPTH = 12  # ops between a projection and the attention it feeds (reshape, transpose, scale, ...)


def unknown_blocks(names: Iterable[str]) -> list[str]:
    """The names in `names` that are no block role."""
    return [n for n in names if n not in BLOCKS]


@per_graph
def node_blocks(graph: Graph) -> Mapping[str, str]:
    """{node name: block role} for every node of `graph` (see the module docstring)."""
    weightish = _weight_like(graph)
    structure = structure_of(graph)
    producer = structure.producers

    def operands(node: Node) -> tuple[str, ...]:
        return tuple(node.inputs[i] for i in _MATMULS[node.op_type] if i < len(node.inputs))

    role: dict[str, str] = {}
    weight_products: list[Node] = []
    tables: list[int] = []
    for node in graph.nodes:
        op = node.op_type
        if op in _EMBEDDING_OPS:
            role[node.name] = EMBEDDING
        elif op in _GATHERS and node.inputs and node.inputs[0] in weightish \
                and len(_shape(graph, node.inputs[0])) >= 2:
            role[node.name] = EMBEDDING
            tables.append(_shape(graph, node.inputs[0])[0] or 0)
        elif op in _SCORES:
            role[node.name] = ATTENTION_SCORES
        elif op in _CONVS:
            role[node.name] = OTHER
        elif op in _MATMULS:
            if any(name in weightish for name in operands(node) if name):
                weight_products.append(node)
            elif node.inputs and not all(name in weightish for name in node.inputs if name):
                role[node.name] = ATTENTION_SCORES
    _embedding_sums(graph, role, producer, weightish)
    cache = {name for name, v in graph.values.items() if v.kind is ValueKind.KV_CACHE}
    # the cache's own reads and writes (past Concat, KV copies)
    for node in graph.nodes if cache else ():
        if node.name not in role and node.op_type not in _MATMULS \
                and node.op_type not in ("Shape", "Size") \
                and not (cache.isdisjoint(node.inputs) and cache.isdisjoint(node.outputs)):
            role[node.name] = ATTENTION_SCORES
    consumers = structure.consumers

    def reaches(start: Node, forward: bool, goal: frozenset[str] | None) -> bool:
        """Whether a walk from `start` (through no weight product and no wall) meets a node
        with a role in `goal` (None: a candidate FFN product)."""
        seen, queue = {start.name}, deque([(start, 0)])
        while queue:
            node, depth = queue.popleft()
            if depth >= _DEPTH:
                continue
            if forward:
                nexts = [c for out in node.outputs if out for c in consumers.get(out, ())]
            else:
                nexts = [producer[i] for i in node.inputs if i in producer and i not in weightish]
            for nxt in nexts:
                if nxt.name in seen:
                    continue
                seen.add(nxt.name)
                if goal is None:
                    if nxt.name in candidates:
                        return True
                elif role.get(nxt.name) in goal:
                    return True
                op = nxt.op_type
                if nxt.name in weight_set or op in _STOPS or op in _SCORES \
                        or (goal is None and op in _WALLS):
                    continue  # the walk goes no further than a product, a norm or attention
                queue.append((nxt, depth + 1))
        return False

    weight_set = {n.name for n in weight_products}
    vocab = max(tables, default=0)
    scores = frozenset({ATTENTION_SCORES})
    candidates: set[str] = set()
    for node in weight_products:
        if _is_lm_head(graph, node, vocab):
            role[node.name] = LM_HEAD
        elif reaches(node, True, scores) or reaches(node, False, scores):
            role[node.name] = ATTENTION_PROJECTION
        else:
            candidates.add(node.name)
    for node in weight_products:
        if node.name in candidates:
            paired = reaches(node, True, None) or reaches(node, False, None)
            role[node.name] = FFN if paired else OTHER
    return MappingProxyType({n.name: role.get(n.name, NORM_ELEMENTWISE) for n in graph.nodes})


def _weight_like(graph: Graph) -> frozenset[str]:
    """Weights, and what nodes make of weights alone (a transposed or dequantized weight, a
    reshaped table): tensors known before run time."""
    known = {name for name, v in graph.values.items() if v.kind is ValueKind.WEIGHT}
    known |= set(graph.constants)
    for node in graph.nodes:
        used = [name for name in node.inputs if name] if "" in node.inputs else node.inputs
        if used and known.issuperset(used) and not node.subgraphs:
            known.update(out for out in node.outputs if out)
    return frozenset(known)


def _shape(graph: Graph, name: str) -> tuple:
    value = graph.value(name)
    return tuple(value.shape or ()) if value is not None else ()


def _embedding_sums(graph: Graph, role: dict[str, str], producer: Mapping[str, Node],
                    weightish: frozenset[str]) -> None:
    """Element-wise ops whose run-time inputs all come from embedding nodes (the sum of token,
    position and type embeddings, a cast, reshape or dequantization of a gathered table) join
    the embedding."""
    for node in graph.nodes:
        if node.name in role or node.op_type not in ("Add", "Cast", "Reshape", "Unsqueeze",
                                                     "Squeeze", "Identity", "DequantizeLinear"):
            continue
        live = [name for name in node.inputs if name and name not in weightish]
        if live and all(name in producer and role.get(producer[name].name) == EMBEDDING
                        for name in live):
            role[node.name] = EMBEDDING


def _is_lm_head(graph: Graph, node: Node, vocab: int) -> bool:
    """A product as wide as the vocabulary, or writing `logits`, in a model with an embedding
    table (a CNN's classifier writing logits is no LM head)."""
    if not vocab:
        return False
    out = graph.value(node.outputs[0]) if node.outputs else None
    width = out.shape[-1] if out is not None and out.shape else None
    return width == vocab or any(name == "logits" for name in node.outputs)


__all__ = [
    "ATTENTION_PROJECTION", "ATTENTION_SCORES", "BLOCKS", "EMBEDDING", "FFN", "LABELS", "LM_HEAD",
    "NORM_ELEMENTWISE", "OTHER", "node_blocks", "unknown_blocks",
]  # fmt: skip
