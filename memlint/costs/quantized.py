"""Quantized graphs as runtimes execute them: the one place that knows how Q/DQ nodes fold.

A QDQ graph writes every quantized op as DequantizeLinear -> op -> QuantizeLinear; runtimes
(onnxruntime's QDQ transformers, TensorRT) fuse each such group into one quantized kernel. So:

- A weight DequantizeLinear (its input is a weight: an initializer, or computed from weights
  alone) costs nothing per run: it folds into its consumers, which read the weight at its stored
  width (int8 = 1 byte, int4 = half a byte, float8 = 1 byte) plus its scale and zero point.
- A QuantizeLinear of a weight is computed once at load (the stored int8 weight).
- An activation DequantizeLinear folds into its consumers the same way: they read the quantized
  tensor (int8) and the scale and zero point.
- An activation QuantizeLinear folds into the op that produces its input, when that tensor feeds
  QuantizeLinear nodes only: the producer writes the quantized tensor and reads the scale and
  zero point. A QuantizeLinear of a graph input (or of a tensor something else reads in float)
  runs as its own kernel.
- Views (Reshape, Squeeze, ...) and copies computed at load (a Transpose of a dequantized weight)
  pass the stored width on to their consumers.
- The compute dtype of an op all of whose float inputs are dequantized is the stored dtype (the
  widest of them): an int8 x int8 MatMul is held to the int8 peak. An op that also reads a float
  tensor not dequantized (weight-only quantization) computes in that float type.

Folded Q/DQ nodes have the status `folded` (no kernel, no bytes, no time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from memlint.ir import EMPTY, DType, Graph, Node, Value, ValueKind, per_graph

MS = "com.microsoft"
DEQUANTIZE = frozenset({("", "DequantizeLinear"), (MS, "DequantizeLinear")})
QUANTIZE = frozenset({("", "QuantizeLinear"), (MS, "QuantizeLinear")})
QDQ = DEQUANTIZE | QUANTIZE


def is_dequantize(node: Node) -> bool:
    return (node.domain, node.op_type) in DEQUANTIZE


def is_quantize(node: Node) -> bool:
    return (node.domain, node.op_type) in QUANTIZE


@dataclass(frozen=True)
class QuantizedView:
    """How a graph's Q/DQ nodes fold, per tensor and node name."""

    folded: Mapping[str, str]  # node name -> why it costs nothing per run
    reads: Mapping[str, Value]  # tensor -> what its consumers read instead (the stored width)
    writes: Mapping[str, Value]  # tensor -> what its producer writes instead (a folded Q's output)
    extra_reads: Mapping[str, tuple[Value, ...]]  # node -> scales, zero points folded into it

    def read(self, graph: Graph, name: str) -> Value | None:
        return self.reads.get(name) or graph.value(name)

    def written(self, graph: Graph, name: str) -> Value | None:
        return self.writes.get(name) or graph.value(name)


EMPTY_VIEW = QuantizedView(EMPTY, EMPTY, EMPTY, EMPTY)

# Which traits an op has: memlint.costs.registry.op_info_of (passed in: the registry imports us).
Facts = Callable[[Node], Any]

@per_graph
def view_of(graph: Graph, facts: Facts) -> QuantizedView:
    """The QuantizedView of `graph`, built once per graph object (`facts`: the registry's
    op_info_of, the same on every call)."""
    if not any((n.domain, n.op_type) in QDQ for n in graph.nodes):
        return EMPTY_VIEW
    return _build(graph, facts)


def compute_dtype(graph: Graph, node: Node, view: QuantizedView) -> DType | None:
    """The stored dtype when every float input of `node` is dequantized (the widest of them);
    None when the op computes as written."""
    stored = []
    for name in node.inputs:
        value = graph.value(name)
        if value is None or not value.dtype.is_float:
            continue
        read = view.reads.get(name)
        if read is None:
            return None
        stored.append(read.dtype)
    return max(stored, key=lambda d: d.bits) if stored else None


def _build(graph: Graph, facts: Facts) -> QuantizedView:
    consumers: dict[str, list[Node]] = {}
    producer: dict[str, Node] = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name:
                consumers.setdefault(name, []).append(node)
        for name in node.outputs:
            if name:
                producer[name] = node
    outputs = set(graph.outputs)
    folded: dict[str, str] = {}
    reads: dict[str, Value] = {}
    writes: dict[str, Value] = {}
    extra: dict[str, dict[str, Value]] = {}

    def add_extra(node_name: str, q_node: Node) -> None:
        for name in q_node.inputs[1:3]:
            value = graph.value(name)
            if value is not None:
                extra.setdefault(node_name, {})[name] = value

    for node in graph.nodes:  # topological: a tensor's override is known before its consumers
        if not node.inputs or not node.outputs:
            continue
        x, out = graph.value(node.inputs[0]), graph.value(node.outputs[0])
        if x is None or out is None:
            continue
        key = (node.domain, node.op_type)
        if key in QUANTIZE and x.kind is ValueKind.WEIGHT:
            folded[node.name] = f"quantizes a constant to {out.dtype.label}: computed once at load"
        elif key in DEQUANTIZE and out.name not in outputs:
            stored = reads.get(x.name, x)
            reads[out.name] = Value(out.name, out.shape, stored.dtype, x.kind)
            for consumer in consumers.get(out.name, []):
                add_extra(consumer.name, node)
            what = "weight" if x.kind is ValueKind.WEIGHT else "activation"
            folded[node.name] = (
                f"{what} dequantization folded into its consumers (they read {stored.dtype.label})"
            )
        elif key in QUANTIZE:
            source = producer.get(x.name)
            if _folds_into(source, x.name, consumers, outputs):
                writes[x.name] = Value(x.name, x.shape, out.dtype, x.kind)
                add_extra(source.name, node)  # type: ignore[union-attr]
                folded[node.name] = (
                    f"quantization folded into its producer (it writes {out.dtype.label})"
                )
        elif x.name in reads and _passes_width(node, graph, facts):
            stored = reads[x.name]
            for name in node.outputs[:1]:
                reads[name] = Value(name, out.shape, stored.dtype, out.kind)
    return QuantizedView(
        MappingProxyType(folded),
        MappingProxyType(reads),
        MappingProxyType(writes),
        MappingProxyType({k: tuple(v.values()) for k, v in extra.items()}),
    )


def _folds_into(
    source: Node | None, tensor: str, consumers: Mapping[str, list[Node]], outputs: set[str]
) -> bool:
    """A QuantizeLinear of `tensor` folds into its producer when only QuantizeLinear reads it."""
    if source is None or source.subgraphs or (source.domain, source.op_type) in QDQ:
        return False
    if tensor in outputs:
        return False
    return all((c.domain, c.op_type) in QUANTIZE for c in consumers.get(tensor, []))


def _passes_width(node: Node, graph: Graph, facts: Facts) -> bool:
    """A view, or a copy computed at load from weights alone, keeps the stored width."""
    info = facts(node)
    if info is None or node.subgraphs:
        return False
    if info.view:
        return True
    if not (info.copy or info.metadata):
        return False
    values = [graph.value(name) for name in node.inputs if name]
    return all(v is not None and v.kind is ValueKind.WEIGHT for v in values)
