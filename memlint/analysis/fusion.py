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
from typing import Any

from memlint.analysis.graph_index import GraphIndex
from memlint.costs import CostStatus
from memlint.costs.registry import op_info_of
from memlint.ir import Graph, Node, Value, per_graph

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


class _Facts:
    """What the functions below ask of one graph again and again, found once per graph (kept
    in GraphIndex.shared): its views, and each tensor's source and data readers once asked."""

    __slots__ = ("readers", "sources", "views")

    def __init__(self, ctx: GraphIndex) -> None:
        folded = ctx.quantized.folded
        views: set[str] = set()
        view_ops: dict[tuple[str, str], bool] = {}
        metadata = CostStatus.METADATA
        for node in ctx.graph.nodes:
            if node.name in folded:
                views.add(node.name)
                continue
            op = (node.domain, node.op_type)
            view = view_ops.get(op)
            if view is None:
                info = op_info_of(node)
                view = view_ops[op] = info is not None and info.view
            if view:
                result = ctx.result(node.name)
                if result is not None and result.cost.status is metadata:
                    views.add(node.name)
        self.views = views
        self.sources: dict[str, str] = {}
        self.readers: dict[str, tuple[Node, ...]] = {}


def _facts(ctx: GraphIndex) -> _Facts:
    memo = _memo(ctx)
    facts = memo.get("facts")
    if facts is None:
        facts = memo["facts"] = _Facts(ctx)
    return facts


def _memo(ctx: GraphIndex) -> dict[Any, Any]:
    """What this module finds of a graph with these node results (its views, sources and
    readers, its chains): the summary's fused estimate and the rules index the same graph and
    results, and share it. Kept for the graph's latest results."""
    found = _searches(ctx.graph)
    if found.get("results") is not ctx.results:  # another analysis of the graph
        found.clear()
        found["results"] = ctx.results
    return found


@per_graph
def _searches(graph: Graph) -> dict[Any, Any]:
    """_memo's store, one per graph object (forgotten with the graph)."""
    return {}


def is_view(ctx: GraphIndex, node: Node) -> bool:
    """A view, or a Q/DQ node folded into its neighbour (memlint.costs.quantized): data flows
    through it unchanged, so chains and readers look through it."""
    return node.name in _facts(ctx).views


def _reads_data(node: Node) -> bool:
    """False for ops that move no data (Shape, Size read the shape of a tensor, never its data)."""
    info = op_info_of(node)
    return info is None or not info.metadata


def source(ctx: GraphIndex, name: str) -> str:
    """The tensor whose data `name` is, looking back through views (at most once through each:
    a malformed graph may loop)."""
    facts = _facts(ctx)
    found = facts.sources.get(name)
    if found is None:
        found = facts.sources[name] = _source(ctx, facts.views, name)
    return found


def _source(ctx: GraphIndex, views: set[str], name: str) -> str:
    node, seen = ctx.producer(name), set()
    while node is not None and node.name in views and node.name not in seen:
        seen.add(node.name)
        name = node.inputs[0]
        node = ctx.producer(name)
    return name


def readers(ctx: GraphIndex, name: str, _seen: frozenset[str] = frozenset()) -> Iterator[Node]:
    """The nodes that read the data of `name`, looking forward through views (a view feeding a
    graph output counts as a reader of its own; each view followed once); Shape/Size read no
    data."""
    if _seen:
        yield from _readers(ctx, _facts(ctx).views, name, _seen)
        return
    facts = _facts(ctx)
    found = facts.readers.get(name)
    if found is None:
        found = facts.readers[name] = tuple(_readers(ctx, facts.views, name, _seen))
    yield from found


def _readers(ctx: GraphIndex, views: set[str], name: str,
             _seen: frozenset[str]) -> Iterator[Node]:
    for node in ctx.consumers(name):
        if node.name in views:
            if node.name in _seen:
                continue
            if ctx.is_graph_output(node.outputs[0]):
                yield node
            yield from _readers(ctx, views, node.outputs[0], _seen | {node.name})
        elif _reads_data(node):
            yield node


def _direct_readers(ctx: GraphIndex, views: set[str], name: str,
                    data_ops: dict[tuple[str, str], bool]) -> tuple[Node, ...]:
    """tuple(readers(ctx, name)), quickly when no view reads `name` (most tensors)."""
    consumers = ctx.consumers(name)
    if any(c.name in views for c in consumers):
        return tuple(_readers(ctx, views, name, frozenset()))
    found = []
    for node in consumers:
        op = (node.domain, node.op_type)
        reads = data_ops.get(op)
        if reads is None:
            reads = data_ops[op] = _reads_data(node)
        if reads:
            found.append(node)
    return tuple(found)


def find_chains(ctx: GraphIndex, *, glue: bool = False) -> list[Chain]:
    """Every group of two or more fusible nodes that one kernel could run (see module doc).
    glue=True also starts chains at ops on scalars and shape vectors (the fused estimate: its
    groups must not depend on the sizes of one point, memlint.analysis.fused).

    Both searches (rule ML102 asks without glue, the fused estimate with it) run in one pass
    over the graph, once per graph and node results (_memo)."""
    found = _memo(ctx)
    if False not in found:
        found["built"] = {}
        found[False], found[True] = _search(ctx, found["built"])
    return list(found[glue])


class _Search:
    """The state of one search (module docstring): each node's depth, the depth its
    consumers see, the fusible nodes and their union-find parents."""

    __slots__ = ("after", "depth", "fusible", "parent")

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}
        self.after: dict[str, int] = {}  # depth seen by the node's consumers
        self.fusible: set[str] = set()
        self.parent: dict[str, str] = {}

    def copy(self) -> _Search:
        twin = _Search()
        twin.depth, twin.after = dict(self.depth), dict(self.after)
        twin.fusible, twin.parent = set(self.fusible), dict(self.parent)
        return twin

    def root(self, name: str) -> str:
        parent = self.parent
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def visit(self, name: str, producers: list[str], fusible: bool, runs: bool) -> None:
        """Place node `name` (reading what the nodes named `producers` write), fused into a
        chain when `fusible`; `runs`: it is a kernel of its own when it is not fused."""
        after = self.after
        level = 0  # a producer not seen yet (a cycle in a malformed graph) counts as depth 0
        for p in producers:
            level = max(level, after.get(p, 0))
        self.depth[name] = level
        if fusible:
            joined, parent, depth = self.fusible, self.parent, self.depth
            joined.add(name)
            parent[name] = name
            for p in producers:
                if p in joined and depth[p] == level:
                    parent[self.root(p)] = self.root(name)
            after[name] = level
        else:
            after[name] = level + 1 if runs else level

    def chains(self, ctx: GraphIndex, built: dict[tuple[str, ...], Chain]) -> list[Chain]:
        groups: dict[str, list[Node]] = {}
        fusible = self.fusible
        for node in ctx.graph.nodes:
            if node.name in fusible:
                groups.setdefault(self.root(node.name), []).append(node)
        chains = []
        for nodes in groups.values():
            if len(nodes) > 1:
                key = tuple(n.name for n in nodes)
                chain = built.get(key)
                if chain is None:
                    chain = built[key] = _chain(ctx, nodes)
                chains.append(chain)
        return chains


def _search(ctx: GraphIndex,
            built: dict[tuple[str, ...], Chain]) -> tuple[list[Chain], list[Chain]]:
    """find_chains' searches without glue and with it, in one pass: they make the same
    decisions up to the first candidate the search without glue leaves out, and part there
    (the search with glue goes on from a copy). `built` keeps each chain by its nodes' names,
    so a chain both searches find is made once."""
    plain, glue = _Search(), None  # glue None: the same as plain so far
    facts = _facts(ctx)
    views, sources = facts.views, facts.sources
    producer_of, results = ctx.producers.get, ctx.results_by_name
    fusible_op: dict[tuple[str, str], bool] = {}
    modelled, metadata, folded = CostStatus.MODELLED, CostStatus.METADATA, CostStatus.FOLDED
    big: dict[str, bool] = {}  # tensor name -> more than TINY_ELEMENTS elements
    for node in ctx.graph.nodes:
        name = node.name
        producers = []
        for tensor in node.inputs[:1] if name in views else node.inputs:
            if not tensor:
                continue
            found = sources.get(tensor)
            if found is None:
                found = sources[tensor] = _source(ctx, views, tensor)
            producer = producer_of(found)
            if producer is not None:
                producers.append(producer.name)
        result = results.get(name)
        op = (node.domain, node.op_type)
        candidate = fusible_op.get(op)
        if candidate is None:
            candidate = fusible_op[op] = is_fusible(node)
        candidate = candidate and result is not None and result.cost.status is modelled
        runs = result is not None and result.cost.status not in (metadata, folded)
        joins = candidate and (
            not plain.fusible.isdisjoint(producers) or _touches_data(ctx, node, big)
        )
        if glue is None and candidate and not joins:
            glue = plain.copy()
        if glue is not None:
            glue.visit(name, producers, candidate, runs)
        plain.visit(name, producers, joins, runs)
    chains = plain.chains(ctx, built)
    return chains, chains if glue is None else glue.chains(ctx, built)


def chain_of(ctx: GraphIndex, nodes: list[Node]) -> Chain:
    """The Chain of `nodes` (in graph order): the one find_chains made of the same nodes, else
    built now."""
    chain = _memo(ctx).get("built", {}).get(tuple(n.name for n in nodes))
    return _chain(ctx, nodes) if chain is None else chain


def _touches_data(ctx: GraphIndex, node: Node, big: dict[str, bool] | None = None) -> bool:
    for name in (*node.inputs, *node.outputs):
        found = big.get(name) if big is not None else None
        if found is None:
            value = ctx.value(name)
            found = value is not None and (value.numel or 0) > TINY_ELEMENTS
            if big is not None:
                big[name] = found
        if found:
            return True
    return False


def _chain(ctx: GraphIndex, nodes: list[Node]) -> Chain:
    members = {n.name for n in nodes}
    inputs: dict[str, Value] = {}
    outputs: dict[str, Value] = {}
    reads = ctx.quantized.reads
    facts = _facts(ctx)
    views, sources, known_readers = facts.views, facts.sources, facts.readers
    producer_of, graph, values = ctx.producers.get, ctx.graph, ctx.graph.values
    written = ctx.quantized.written
    data_ops: dict[tuple[str, str], bool] = {}
    for node in nodes:
        read = node.inputs[:1] if node.op_type == "CastLike" else node.inputs  # CastLike: type only
        for name in read:
            if name:
                src = sources.get(name)
                if src is None:
                    src = sources[name] = _source(ctx, views, name)
            else:
                src = ""
            producer = producer_of(src) if src else None
            value = ctx.stored(name) if name in reads else (
                (values.get(src) if src else None) or (values.get(name) if name else None)
            )  # a dequantized input is read at its stored width
            if src and (producer is None or producer.name not in members) and value is not None:
                inputs.setdefault(src, value)
        for name in node.outputs:
            value = written(graph, name)  # quantized when a Q folds into it
            if not name or value is None:
                continue
            if not ctx.is_graph_output(name):
                found = known_readers.get(name)
                if found is None:
                    found = known_readers[name] = _direct_readers(ctx, views, name, data_ops)
                if all(r.name in members for r in found):
                    continue
            outputs.setdefault(name, value)
    return Chain(tuple(nodes), tuple(inputs.values()), tuple(outputs.values()))
