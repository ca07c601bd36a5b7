"""One graph with its node results, indexed once: producers, consumers, graph outputs, node
results by name, the peak-memory footprint, and a memo for graph-wide analyses (attention
blocks, fusion chains, the KV cache) that several readers need. Rules see it through their
RuleContext (a GraphIndex with the device and the rule's options); the analyses of this package
take a GraphIndex, so the LLM features can run them without the rule machinery."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any, TypeVar

from memlint.analysis.liveness import MemoryFootprint, footprint
from memlint.costs.quantized import QuantizedView, view_of
from memlint.costs.registry import op_info_of
from memlint.ir import Graph, Model, Node, Value, ValueKind, per_graph
from memlint.roofline import NodeResult

T = TypeVar("T")


class GraphIndex:
    """What the analyses read of one linted graph; the tables are built once and shared by
    every copy made with `tables=` (each rule's context reuses them)."""

    def __init__(self, model: Model, results: tuple[NodeResult, ...], *,
                 tables: _Tables | None = None) -> None:
        self.model = model
        self.results = results
        self._tables = tables or _Tables(model.graph, results)

    @property
    def graph(self) -> Graph:
        return self.model.graph

    def node(self, name: str) -> Node | None:
        return self._tables.nodes.get(name)

    def result(self, name: str) -> NodeResult | None:
        """The cost and timing of the node called `name`."""
        return self._tables.results.get(name)

    def value(self, name: str) -> Value | None:
        return self.graph.value(name)

    def stored(self, name: str) -> Value | None:
        """The tensor as the runtime reads it: a dequantized tensor (QDQ) at its stored dtype
        and kind (memlint.costs.quantized), any other tensor as `value` gives it."""
        return self.quantized.read(self.graph, name)

    @cached_property
    def quantized(self) -> QuantizedView:
        """How the graph's Q/DQ nodes fold (memlint.costs.quantized)."""
        return view_of(self.graph, op_info_of)

    def producer(self, value_name: str) -> Node | None:
        return self._tables.producers.get(value_name)

    @property
    def producers(self) -> Mapping[str, Node]:
        """{tensor: the node that writes it}: producer() as a table, for passes over every node."""
        return self._tables.producers

    @property
    def results_by_name(self) -> Mapping[str, NodeResult]:
        """{node name: its cost and timing}: result() as a table."""
        return self._tables.results

    def consumers(self, value_name: str) -> tuple[Node, ...]:
        return self._tables.consumers.get(value_name, ())

    def is_graph_output(self, value_name: str) -> bool:
        return value_name in self._tables.outputs

    @property
    def memory(self) -> MemoryFootprint:
        """Peak live memory of one run (weights, KV cache, activations): analysis.liveness."""
        return self._tables.memory

    @cached_property
    def weight_bytes(self) -> int:
        """Bytes of every weight tensor of the graph, each counted once."""
        return sum(
            v.nbytes or 0 for v in self.graph.values.values() if v.kind is ValueKind.WEIGHT
        )

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """A graph-wide result computed once for every reader that asks for `key` (analyses
        that several rules need, e.g. the attention blocks), never across graphs."""
        memo = self._tables.memo
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def iter_nodes(self, op_types: Iterable[str]) -> Iterator[Node]:
        wanted = set(op_types)
        return (n for n in self.graph.nodes if n.qualified_op in wanted)


class _Structure:
    """The tables of a graph that no node results change: found once per graph object, shared
    by the summary's index and the rules' (they hold nodes and names, not the graph)."""

    __slots__ = ("consumers", "nodes", "outputs", "producers")

    def __init__(self, graph: Graph) -> None:
        self.nodes = {n.name: n for n in graph.nodes}
        self.outputs = frozenset(graph.outputs)
        producers: dict[str, Node] = {}
        consumers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for out in node.outputs:
                if out:
                    producers[out] = node
            for name in dict.fromkeys(node.inputs):
                if name:
                    consumers.setdefault(name, []).append(node)
        self.producers = producers
        self.consumers = {k: tuple(v) for k, v in consumers.items()}


structure_of = per_graph(_Structure)  # node results aside, what an index has of a graph


class _Tables:
    def __init__(self, graph: Graph, results: tuple[NodeResult, ...]) -> None:
        structure = structure_of(graph)
        self.nodes, self.outputs = structure.nodes, structure.outputs
        self.producers, self.consumers = structure.producers, structure.consumers
        self.results = {r.name: r for r in results}
        self._graph = graph
        self.memo: dict[str, Any] = {}

    @cached_property
    def memory(self) -> MemoryFootprint:
        return footprint(self._graph)
