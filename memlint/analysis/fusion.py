"""Which nodes a fusing compiler would run as one kernel: shared by ML102 and ML107.

A node is *fusible* when it is an element-wise op (the cost registry's element-wise trait: casts
included, quantization excluded), a row reduction of a norm or an already-fused norm/activation,
is costed (MODELLED) and touches real data (not only scalars and shape vectors). Views (the
registry's view trait: Reshape, Squeeze, Unsqueeze, Identity, Flatten, ...) and the Q/DQ nodes
folded into their neighbours (memlint.costs.quantized) are transparent: data flows through them
unchanged, so a chain may span them and their data is read at its source (a dequantized tensor
at its stored width).

Grouping must not create a cycle: p -> c may be fused only when no path p -> ... -> c passes
through a kernel that is not in the chain. depth(n) = max over producers p of depth(p) + (1 if
p is a kernel that cannot join a chain); an edge is merged only between fusible nodes of equal
depth, so every member of a chain has the same depth and no path between two members leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from memlint.analysis.graph_index import GraphIndex
from memlint.costs import CostStatus
from memlint.costs.registry import op_info_of
from memlint.ir import Node, Value

MS = "com.microsoft"
# Element-wise, but quantized I/O feeds quantized kernels rather than a fused float chain.
QUANTIZE = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# Not element-wise, yet fused into a chain: the row reductions of a norm, and fused norms.
ROW_FUSIBLE = frozenset(
    {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceMax", "ReduceL2"}
    | {"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"}
    | {f"{MS}::{op}" for op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")}
)
TINY_ELEMENTS = 16  # scalars and shape vectors: glue, not an activation


@dataclass(frozen=True)
class Chain:
    """Fusible nodes (graph order), the distinct tensors a fused kernel reads (each once, at its
    own size), and the tensors it must write (consumed outside the chain or graph outputs)."""

    nodes: tuple[Node, ...]
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]


def is_fusible(node: Node) -> bool:
    """Could a fusing compiler run this op inside a chain (see the module docstring)?"""
    if node.qualified_op in ROW_FUSIBLE:
        return True
    info = op_info_of(node)
    return info is not None and info.elementwise and node.op_type not in QUANTIZE


def is_view(ctx: GraphIndex, node: Node) -> bool:
    """A view, or a Q/DQ node folded into its neighbour (memlint.costs.quantized): data flows
    through it unchanged, so chains and readers look through it."""
    if node.name in ctx.quantized.folded:
        return True
    info = op_info_of(node)
    result = ctx.result(node.name)
    return info is not None and info.view and result is not None and (
        result.cost.status is CostStatus.METADATA
    )


def _reads_data(node: Node) -> bool:
    """False for ops that move no data (Shape, Size read the shape of a tensor, never its data)."""
    info = op_info_of(node)
    return info is None or not info.metadata


def source(ctx: GraphIndex, name: str) -> str:
    """The tensor whose data `name` is, looking back through views (at most once through each:
    a malformed graph may loop)."""
    node, seen = ctx.producer(name), set()
    while node is not None and is_view(ctx, node) and node.name not in seen:
        seen.add(node.name)
        name = node.inputs[0]
        node = ctx.producer(name)
    return name


def readers(ctx: GraphIndex, name: str, _seen: frozenset[str] = frozenset()) -> Iterator[Node]:
    """The nodes that read the data of `name`, looking forward through views (a view feeding a
    graph output counts as a reader of its own; each view followed once); Shape/Size read no
    data."""
    for node in ctx.consumers(name):
        if is_view(ctx, node):
            if node.name in _seen:
                continue
            if ctx.is_graph_output(node.outputs[0]):
                yield node
            yield from readers(ctx, node.outputs[0], _seen | {node.name})
        elif _reads_data(node):
            yield node


def find_chains(ctx: GraphIndex) -> list[Chain]:
    """Every group of two or more fusible nodes that one kernel could run (see module doc)."""
    depth: dict[str, int] = {}
    after: dict[str, int] = {}  # depth seen by the node's consumers
    fusible: set[str] = set()
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in ctx.graph.nodes:
        data_inputs = node.inputs[:1] if is_view(ctx, node) else node.inputs
        producers = [ctx.producer(source(ctx, v)) for v in data_inputs if v]
        producers = [p for p in producers if p is not None]
        # a producer not seen yet (a cycle in a malformed graph) counts as depth 0
        depth[node.name] = max((after.get(p.name, 0) for p in producers), default=0)
        result = ctx.result(node.name)
        candidate = is_fusible(node) and result is not None and (
            result.cost.status is CostStatus.MODELLED
        )
        if candidate and (_touches_data(ctx, node) or any(p.name in fusible for p in producers)):
            fusible.add(node.name)
            parent[node.name] = node.name
            for p in producers:
                if p.name in fusible and depth[p.name] == depth[node.name]:
                    parent[root(p.name)] = root(node.name)
        kernel = node.name not in fusible and result is not None and result.cost.status not in (
            CostStatus.METADATA, CostStatus.FOLDED
        )
        after[node.name] = depth[node.name] + (1 if kernel else 0)

    groups: dict[str, list[Node]] = {}
    for node in ctx.graph.nodes:
        if node.name in fusible:
            groups.setdefault(root(node.name), []).append(node)
    return [_chain(ctx, nodes) for nodes in groups.values() if len(nodes) > 1]


def _touches_data(ctx: GraphIndex, node: Node) -> bool:
    values = (ctx.value(v) for v in (*node.inputs, *node.outputs))
    return any((v.numel or 0) > TINY_ELEMENTS for v in values if v is not None)


def _chain(ctx: GraphIndex, nodes: list[Node]) -> Chain:
    members = {n.name for n in nodes}
    inputs: dict[str, Value] = {}
    outputs: dict[str, Value] = {}
    for node in nodes:
        read = node.inputs[:1] if node.op_type == "CastLike" else node.inputs  # CastLike: type only
        for name in read:
            src = source(ctx, name) if name else ""
            producer = ctx.producer(src) if src else None
            value = ctx.stored(name) if name in ctx.quantized.reads else (
                ctx.value(src) or ctx.value(name)
            )  # a dequantized input is read at its stored width
            if src and (producer is None or producer.name not in members) and value is not None:
                inputs.setdefault(src, value)
        for name in node.outputs:
            value = ctx.quantized.written(ctx.graph, name)  # quantized when a Q folds into it
            needed = ctx.is_graph_output(name) or any(
                r.name not in members for r in readers(ctx, name)
            )
            if name and needed and value is not None:
                outputs.setdefault(name, value)
    return Chain(tuple(nodes), tuple(inputs.values()), tuple(outputs.values()))
