"""Peak live memory of one run of a graph: weights resident, every other tensor live from the step
that produces it to the step of its last consumer.

The model (one pass over the nodes in their topological order, linear in nodes + tensors):

- Step i is the run of node i; while it runs, its inputs and its outputs are all live.
- Weights are resident for the whole run and counted apart (`weight_bytes`): initializers,
  `Constant` outputs and the outputs of folded nodes (every input a weight, as
  memlint.costs.registry folds them at load), each counted once and only when something that
  runs at inference time reads it (an initializer read only by a folded Transpose is replaced by
  the folded result, as runtimes do). A weight-kind tensor made by a node that is never folded
  (DequantizeLinear of an int8 weight) is a run-time buffer and counts as an activation.
- Every other tensor (graph inputs, KV-cache inputs, activations, KV outputs) is live from its
  producer (graph inputs: from step 0) to its last consumer (graph outputs: to the last step; a
  tensor nobody reads: its producer's step only). A node with subgraphs (If, Loop, Scan) counts
  as a consumer of every outer tensor its subgraphs read; subgraph internals are not counted.
- Aliasing: the ops the cost registry declares views (OpInfo.view: Reshape, Squeeze,
  Unsqueeze, Flatten, Identity, BitCast, Dropout (output 0), Optional, OptionalGetElement,
  com.microsoft ExpandDims) have output 0 a view of input 0 that allocates nothing; the buffer
  stays live until the last use of any of its views. The other metadata ops (Shape, Size,
  Constant, ...) make new, tiny tensors and are counted like any tensor.
- The KV cache is the cache, resident for the whole run like the weights and counted apart
  (`kv_cache_bytes`): the larger of the KV-cache graph inputs (the cache read) and the graph
  outputs that hold the cache after the step (inputs plus the new tokens written). Copies of it
  (memlint.analysis.kv_copies: a Concat that appends to it, a GQA Expand, a Transpose, a Cast)
  are not counted in the peak: capacity figures come from the cache, never its copies. The most
  copy bytes live at once is reported apart (`kv_copy_bytes`).
- A tensor whose shape is unresolved counts 0 bytes and is counted in `unresolved_tensors`.

This is the memory of an unfused runtime without in-place reuse, so a lower bound neither for
every runtime (in-place kernels share buffers) nor an upper bound (workspace, allocator slack).

A graph is immutable, so its footprint is computed once per Graph object and remembered while
the graph lives (the rules, the serving section and the what-ifs all ask for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from memlint.analysis.kv_copies import cache_outputs, copies
from memlint.costs import quantized
from memlint.costs.registry import NEVER_FOLDED, op_info_of
from memlint.ir import Graph, Node, Value, ValueKind, per_graph


@dataclass(frozen=True)
class MemoryFootprint:
    """Peak memory of one run. peak_total_bytes = weight_bytes + kv_cache_bytes +
    peak_activation_bytes, the last two being what is live at the peak step (`peak_node`)."""

    weight_bytes: int  # resident weights, each counted once
    kv_cache_bytes: int  # the KV cache (resident for the whole run: see the module docstring)
    peak_activation_bytes: int  # other non-weight tensors live at the peak step
    peak_total_bytes: int
    peak_node: str  # the node running at the peak ("" for a graph without nodes)
    max_kv_cache_bytes: int  # the most KV-cache bytes live at any step
    unresolved_tensors: int  # tensors of unknown size, counted as 0 bytes
    kv_copy_bytes: int = 0  # the most bytes of copies of the KV cache live at once (not in peak)


def is_alias(node: Node) -> bool:
    """Does this node's output 0 share input 0's buffer (a metadata-only view)?"""
    info = op_info_of(node)
    return info is not None and info.view and bool(node.inputs) and bool(node.inputs[0])


def is_folded(node: Node, graph: Graph) -> bool:
    """Every input is a weight: computed once at load (memlint.costs.registry's rule)."""
    weights = {name for name in node.inputs
               if (v := graph.value(name)) is not None and v.kind is ValueKind.WEIGHT}
    return _is_folded(node, weights)


def _is_folded(node: Node, weights: set[str]) -> bool:
    """is_folded, given the names of the graph's weight tensors."""
    if not node.inputs or node.subgraphs or (node.domain, node.op_type) in NEVER_FOLDED:
        return False
    names = [name for name in node.inputs if name]
    return bool(names) and all(name in weights for name in names)


def resident_weights(graph: Graph) -> tuple[Value, ...]:
    """The weight tensors that stay in device memory during a run, each once."""
    return _memo(graph).plan.resident


def footprint(graph: Graph) -> MemoryFootprint:
    """Peak live memory of one run of `graph` (see the module docstring)."""
    memo = _memo(graph)
    if memo.footprint is None:
        memo.footprint = _footprint(graph, memo.plan)
    return memo.footprint


def footprint_resized(graph: Graph, size: Callable[[str], int | None]) -> MemoryFootprint:
    """footprint() of a graph with `graph`'s nodes, tensors and kinds whose tensor sizes are
    size(name) (bytes, None when unknown): the same model at other dims, where the caller has
    checked that every tensor keeps its kind (and copies of the KV cache stay copies)."""
    return _footprint(graph, _memo(graph).plan, size)


class _Memo:
    """The plan and (when asked) the footprint of one Graph object."""

    def __init__(self, graph: Graph) -> None:
        self.plan = _Plan(graph)
        self.footprint: MemoryFootprint | None = None


_memo = per_graph(_Memo)


def _footprint(graph: Graph, plan: _Plan,
               size: Callable[[str], int | None] | None = None) -> MemoryFootprint:
    import numpy as np  # imported by every frontend already; not by `memlint --help`

    n = len(graph.nodes)
    steps = max(n, 1)
    roots, own, starts, stops, copied = plan.buffers(graph)
    sizes = np.array([b or 0 for b in (own if size is None else map(size, roots))], np.int64)
    live = []  # the bytes live after each step: activations, then copies of the KV cache
    for part in (~copied, copied):
        delta = np.zeros(steps + 1, np.int64)
        np.add.at(delta, starts[part], sizes[part])
        np.subtract.at(delta, stops[part], sizes[part])
        live.append(np.cumsum(delta[:steps]))
    step = int(live[0].argmax())  # the first step that reaches the peak
    peak = int(live[0][step])
    max_copy = max(0, int(live[1].max()))
    values = graph.values
    size_of = size or (lambda name: values[name].nbytes)  # every name below is in `values`
    weights = sum(filter(None, map(size_of, plan.resident_names)))
    known, missing = plan.named(graph)
    unresolved = missing + list(map(size_of, known)).count(None)
    cache = _cache_bytes(graph, size)
    return MemoryFootprint(
        weight_bytes=weights,
        kv_cache_bytes=cache,
        peak_activation_bytes=max(peak, 0),
        peak_total_bytes=weights + cache + max(peak, 0),
        peak_node=graph.nodes[step].name if n else "",
        max_kv_cache_bytes=cache,
        unresolved_tensors=unresolved,
        kv_copy_bytes=max_copy,
    )


def _cache_bytes(graph: Graph, size: Callable[[str], int | None] | None = None) -> int:
    """The KV cache: the larger of its graph inputs (read) and the graph outputs that hold it
    after the step (the inputs plus the new tokens written)."""
    def nbytes(v: Value) -> int:
        return (v.nbytes if size is None else size(v.name)) or 0

    read = sum(
        nbytes(v) for name in graph.inputs
        if (v := graph.value(name)) is not None and v.kind is ValueKind.KV_CACHE
    )
    left = sum(nbytes(v) for name in cache_outputs(graph) if (v := graph.value(name)))
    return max(read, left)


class _Plan:
    """Buffers (alias roots) of one graph: when each starts and ends, and the resident weights."""

    def __init__(self, graph: Graph) -> None:
        root: dict[str, str] = {}
        resident_roots: set[str] = set()
        needed: set[str] = set()  # resident roots read by something that runs
        self.start: dict[str, int] = {}
        self.end: dict[str, int] = {}
        self._buffers: tuple[list[str], list[int | None], Any, Any, Any] | None = None
        self._named: tuple[list[str], int] | None = None
        start, end = self.start, self.end
        last = max(len(graph.nodes) - 1, 0)
        # One pass over tens of thousands of nodes: names tested against a set, not Values.
        weights = {name for name, v in graph.values.items() if v.kind is ValueKind.WEIGHT}
        # Q/DQ nodes a runtime folds into their neighbours (memlint.costs.quantized) allocate
        # nothing: a dequantized weight stays the stored int8/int4/fp8 tensor, resident.
        qdq_folded = quantized.view_of(graph, op_info_of).folded
        aliasing: dict[tuple[str, str], bool] = {}  # op -> declared a view (is_alias)

        for name in graph.inputs:
            root[name] = name
            if name in weights:
                resident_roots.add(name)
            else:
                start[name] = 0
        produced = {name for node in graph.nodes for name in node.outputs}
        for name in weights:  # initializers: weights without a producer
            if name not in root and name not in produced:
                root[name] = name
                resident_roots.add(name)
        for step, node in enumerate(graph.nodes):
            inputs = node.inputs
            op = (node.domain, node.op_type)
            if not inputs or node.subgraphs or op in NEVER_FOLDED:  # _is_folded, inline
                folded = False
            else:
                names = [name for name in inputs if name]
                folded = bool(names) and all(name in weights for name in names)
            for name in _reads(node) if node.subgraphs else inputs:
                buffer = root.get(name) if name else None  # "": an omitted optional input
                if buffer is None:
                    continue
                if buffer in resident_roots:
                    if not folded:
                        needed.add(buffer)
                else:
                    end[buffer] = step
            made_here = folded or (node.op_type == "Constant" and node.domain == "")
            for index, name in enumerate(node.outputs):
                if not name:
                    continue
                if index == 0 and inputs and inputs[0] in root:
                    view = aliasing.get(op)
                    if view is None:
                        info = op_info_of(node)
                        view = aliasing[op] = info is not None and info.view
                    if (view and inputs[0]) or node.name in qdq_folded:  # is_alias, inline
                        root[name] = root[inputs[0]]
                        continue
                root[name] = name
                if made_here and name in weights:
                    resident_roots.add(name)
                else:
                    start[name] = step
        for name in graph.outputs:
            buffer = root.get(name)
            if buffer in resident_roots:
                needed.add(buffer)
            elif buffer is not None:
                end[buffer] = last
        self.resident = tuple(
            v for name in sorted(needed) if (v := graph.value(name)) is not None
        )
        self.needed = needed
        self.resident_names = [v.name for v in self.resident]

    def buffers(self, graph: Graph) -> tuple[list[str], list[int | None], Any, Any, Any]:
        """Of each buffer whose bytes the activations or the copies count (known tensors, the
        KV cache left out: it is counted whole): its root, its bytes in `graph`, its first
        step, the step after its last, and whether it is a copy of the KV cache. Found once per
        plan."""
        if self._buffers is None:
            import numpy as np

            values, copied = graph.values, copies(graph)
            kv_cache, end = ValueKind.KV_CACHE, self.end
            roots: list[str] = []
            sizes: list[int | None] = []
            starts: list[int] = []
            stops: list[int] = []
            copy: list[bool] = []
            for root, start in self.start.items():
                value = values.get(root) if root else None
                if value is not None and value.kind is not kv_cache:
                    roots.append(root)
                    sizes.append(value.nbytes)
                    starts.append(start)
                    stops.append(max(end.get(root, start), start) + 1)
                    copy.append(root in copied)
            self._buffers = (roots, sizes, np.array(starts, np.intp), np.array(stops, np.intp),
                             np.array(copy, bool))
        return self._buffers

    def named(self, graph: Graph) -> tuple[list[str], int]:
        """The buffers and needed weights that `graph` has a tensor of, and how many it has
        none of (unresolved at any size). Found once per plan."""
        if self._named is None:
            values = graph.values
            names = (*self.start, *self.needed)
            known = [name for name in names if name in values]
            self._named = (known, len(names) - len(known))
        return self._named


def _reads(node: Node) -> Iterator[str]:
    """The tensors a node reads: its inputs, and the outer tensors its subgraphs read."""
    yield from (name for name in node.inputs if name)
    for sub in node.subgraphs.values():
        yield from _outer_reads(sub)


def _outer_reads(graph: Graph) -> Iterator[str]:
    defined = set(graph.inputs)
    for node in graph.nodes:
        for name in _reads(node):
            if name not in defined:
                yield name
        defined.update(node.outputs)
    yield from (name for name in graph.outputs if name not in defined)
