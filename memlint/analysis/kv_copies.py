"""The KV cache and its copies.

The KV cache is the cache: the KV-cache graph inputs (and views of them, which the frontend
keeps as KV_CACHE) are read, and the new tokens are written. Everything a graph derives from the
cache by moving its data — a Concat that appends the new tokens (Optimum's `present`), a GQA
`repeat_kv` Expand or Tile, a Transpose, a Cast (fp16 conversion with keep_io_types), a Slice
or Gather, a scatter into a copy, a scaling by a constant — is a copy of it: activation traffic
that rules name (ML105), never a capacity figure.

`copies(graph)` finds those tensors: starting from the KV_CACHE values, it follows every op whose
output is (part of) its data input's data (views, copies, scatters, (de)quantization) and
element-wise scalings by a weight or a scalar, through views of copies too. Graph outputs among
them are the cache as the step leaves it (`cache_outputs`).
"""

from __future__ import annotations

from memlint.costs.registry import op_info_of
from memlint.ir import Graph, Node, ValueKind, per_graph

# Ops outside the registry's view/copy traits whose output 0 is a (re-encoded) copy of input 0.
_DATA_OPS = frozenset({"ScatterND", "ScatterElements", "DequantizeLinear", "QuantizeLinear",
                       "DynamicQuantizeLinear"})
_SCALING = frozenset({"Mul", "Div", "Add", "Sub"})


@per_graph
def copies(graph: Graph) -> frozenset[str]:
    """Names of the tensors of `graph` that are copies of its KV cache (not KV_CACHE themselves).
    Remembered while the graph lives (a graph is immutable)."""
    return _copies(graph)


def is_cache_or_copy(graph: Graph, name: str) -> bool:
    value = graph.value(name)
    return value is not None and (value.kind is ValueKind.KV_CACHE or name in copies(graph))


def cache_outputs(graph: Graph) -> tuple[str, ...]:
    """Graph outputs that hold the KV cache as the step leaves it (present.*)."""
    found = copies(graph)
    return tuple(
        name for name in graph.outputs
        if (v := graph.value(name)) is not None
        and (v.kind is ValueKind.KV_CACHE or name in found)
    )


def _copies(graph: Graph) -> frozenset[str]:
    cached = {name for name, v in graph.values.items() if v.kind is ValueKind.KV_CACHE}
    found: set[str] = set()
    if not cached:  # no cache, no copy of it
        return frozenset()
    for node in graph.nodes:
        if _carries(graph, node, cached):
            for name in node.outputs:
                if name and name not in cached:
                    value = graph.value(name)
                    if value is not None and value.dtype.is_float:
                        found.add(name)
                        cached.add(name)
    return frozenset(found)


def _carries(graph: Graph, node: Node, cached: set[str]) -> bool:
    if not node.inputs or node.subgraphs:
        return False
    info = op_info_of(node)
    if node.op_type == "Concat" and not node.domain:
        return any(name in cached for name in node.inputs if name)
    if node.inputs[0] not in cached:
        return False
    if info is not None and (info.view or info.copy):
        return True
    if node.op_type in _DATA_OPS and node.domain in ("", "com.microsoft"):
        return True
    if node.op_type in _SCALING and not node.domain and node.outputs:
        data = graph.value(node.inputs[0])
        out = graph.value(node.outputs[0])
        others = [graph.value(n) for n in node.inputs[1:] if n]
        return (data is not None and out is not None and data.shape == out.shape and all(
            v is not None and (v.kind is ValueKind.WEIGHT or v.numel == 1) for v in others))
    return False


__all__ = ["cache_outputs", "copies", "is_cache_or_copy"]
