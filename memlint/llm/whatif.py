"""Precision what-ifs (--weights-dtype, --kv-dtype) on an analysed step; tensor parallelism is
memlint.llm.parallel.

The graph is retyped and analysed again, so every cost formula recounts its bytes at the new widths (a Gather from an int4 embedding table reads half a
byte per element; a Concat that appends to an fp8 cache writes one byte per element):

- `weights`: floating-point weight tensors wider than the target are stored at the target
  width. fp16/bf16 cast every one of them (a whole-checkpoint cast); fp8/int8/int4 quantize the
  matrices only (rank >= 2: linear and conv weights, embedding tables), keeping vectors and
  scalars (biases, norm gains, constants) as they are, as GPTQ, AWQ and fp8 recipes do. Integer
  and bool weights (indices, masks) are left alone. fp16/bf16/fp8: the matrix products that read
  a retyped weight compute in that dtype, so they are held to the device's peak for it
  (tensor.float8 on an H100; where a device has no fp8 peak, the spec's fallback chain applies:
  tensor.float16 on an A100).
  int8/int4 are weight-only quantization (W8A16/W4A16, as onnxruntime MatMulNBits, GPTQ, AWQ):
  the arithmetic stays in the activations' dtype. Activations keep their dtype in every case.
- `kv_cache`: every floating-point KV-cache tensor wider than the target (past inputs, present
  outputs, the copies and scaled copies the frontend marks as KV) is stored at the target width;
  attention arithmetic keeps its dtype (the cache is dequantized as it is read).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from memlint.analysis.kv_copies import copies
from memlint.analysis.liveness import footprint, resident_weights
from memlint.core.llm import DTYPE_LABELS, KV_DTYPES, WEIGHT_DTYPES, Precision, PrecisionGain
from memlint.core.report import Report, analyse, summarize
from memlint.costs import OpCost
from memlint.ir import ComputeUnit, DType, Graph, Node, Value, ValueKind
from memlint.llm import LlmError
from memlint.roofline import time_op

# --- precision --------------------------------------------------------------------------------


def retype(graph: Graph, precision: Precision) -> Graph:
    """`graph` with its floating-point weights and KV-cache tensors at the target widths."""

    def convert(value: Value, copied: frozenset[str]) -> Value:
        kind = ValueKind.KV_CACHE if value.name in copied else value.kind  # a copy of the cache
        target = {ValueKind.WEIGHT: precision.weights, ValueKind.KV_CACHE: precision.kv_cache}.get(
            kind
        )
        if target is None or not value.dtype.is_float or value.dtype.bits <= target.bits:
            return value
        if value.kind is ValueKind.WEIGHT and target.bits < 16 and len(value.shape or ()) < 2:
            return value  # quantization keeps biases, norm gains and scalars
        return dataclasses.replace(value, dtype=target)

    def walk(g: Graph) -> Graph:
        nodes = tuple(
            dataclasses.replace(n, subgraphs=MappingProxyType(
                {k: walk(s) for k, s in n.subgraphs.items()}))
            if n.subgraphs else n
            for n in g.nodes
        )  # fmt: skip
        copied = copies(g) if precision.kv_cache is not None else frozenset()
        values = {name: convert(v, copied) for name, v in g.values.items()}
        return dataclasses.replace(g, nodes=nodes, values=MappingProxyType(values))

    return walk(graph) if not precision.is_identity else graph


def apply_precision(report: Report, precision: Precision) -> Report:
    """The report of the same step with the graph retyped (see the module docstring); its
    findings are empty (run memlint.api.check on it to lint the what-if)."""
    if precision.is_identity:
        return report
    graph = report.model.graph
    if precision.kv_cache is not None and not any(
        v.kind is ValueKind.KV_CACHE for v in graph.values.values()
    ):
        raise LlmError(
            f"--kv-dtype {DTYPE_LABELS[precision.kv_cache]}: {report.model.source or 'the model'} has "
            f"no KV-cache tensors (past_key_values.N.key/value, present.*, ...) to store narrower"
        )
    model = dataclasses.replace(report.model, graph=retype(report.model.graph, precision))
    after = analyse(model, report.hardware, tf32=report.tf32)
    target = precision.weights
    if target is None or not target.is_float:
        return after
    graph = model.graph
    nodes = []
    for node, result in zip(graph.nodes, after.nodes):
        cost = result.cost
        if _computes_in(node, graph, cost, target):
            cost = dataclasses.replace(cost, compute_dtype=target)
            result = dataclasses.replace(
                result, cost=cost, timing=time_op(cost, report.hardware, tf32=report.tf32)
            )
        nodes.append(result)
    results = tuple(nodes)
    return dataclasses.replace(
        after, nodes=results, summary=summarize(results, report.hardware, report.tf32)
    )


def _computes_in(node: Node, graph: Graph, cost: OpCost, target: DType) -> bool:
    """A matrix product that reads a weight stored at `target` computes in it (when narrower)."""
    if cost.unit is not ComputeUnit.TENSOR or cost.parts:
        return False
    current = cost.compute_dtype
    if current is None or not current.is_float or current.bits <= target.bits:
        return False
    return any(
        (v := graph.value(name)) is not None and v.kind is ValueKind.WEIGHT and v.dtype is target
        for name in node.inputs if name
    )


def precision_gain(before: Report, after: Report, precision: Precision) -> PrecisionGain:
    """Compare a step with its what-if (`after` = apply_precision(before, precision))."""
    mem_before, mem_after = footprint(before.model.graph), footprint(after.model.graph)
    b, a = before.summary, after.summary
    narrowed = [
        (v, after.model.graph.value(v.name)) for v in resident_weights(before.model.graph)
    ]
    narrowed = [(old, new) for old, new in narrowed if new is not None and new.dtype != old.dtype]
    return PrecisionGain(
        precision=precision,
        weight_bytes_before=mem_before.weight_bytes,
        weight_bytes_after=mem_after.weight_bytes,
        converted_before=sum(old.nbytes or 0 for old, _ in narrowed),
        converted_after=sum(new.nbytes or 0 for _, new in narrowed),
        weight_bytes_read_before=b.bytes_read.weights,
        weight_bytes_read_after=a.bytes_read.weights,
        kv_bytes_moved_before=b.bytes_by_kind.kv_cache,
        kv_bytes_moved_after=a.bytes_by_kind.kv_cache,
        bytes_moved_before=b.bytes_moved,
        bytes_moved_after=a.bytes_moved,
        peak_memory_before=mem_before.peak_total_bytes,
        peak_memory_after=mem_after.peak_total_bytes,
        latency_before_s=b.predicted_latency_s,
        latency_after_s=a.predicted_latency_s,
        intensity_before=b.intensity,
        intensity_after=a.intensity,
    )


__all__ = [
    "KV_DTYPES", "WEIGHT_DTYPES", "Precision", "PrecisionGain", "apply_precision",
    "precision_gain", "retype",
]  # fmt: skip
