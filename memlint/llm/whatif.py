"""Precision what-ifs (--weights-dtype, --kv-dtype, --act-dtype) on an analysed step; tensor
parallelism is memlint.llm.parallel.

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
  attention arithmetic keeps its dtype (the cache is dequantized as it is read). A model without
  a KV cache takes it and nothing changes (apply_what_if records it in `unchanged`).
- `activations` (--act-dtype): every floating-point activation wider than the target (not a
  weight, not the KV cache nor a copy of it) is stored at the target width; a matrix product
  whose two operands are then both at the target computes in it (W8A8: tensor.int8).

apply_what_if makes these, and --exclude-block (memlint.analysis.blocks), the totals of a
report of any model; the LLM sections re-evaluate their steps with the same what-ifs.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from memlint.analysis.blocks import node_blocks
from memlint.analysis.kv_copies import copies
from memlint.analysis.liveness import footprint, resident_weights
from memlint.core.llm import ACT_DTYPES, KV_DTYPES, WEIGHT_DTYPES, Precision, PrecisionGain
from memlint.core.report import Report, analyse, summarize
from memlint.core.whatif import AsWritten, WhatIf
from memlint.costs import OpCost
from memlint.ir import ComputeUnit, DType, Graph, Node, Value, ValueKind
from memlint.roofline import time_op

# --- precision --------------------------------------------------------------------------------


def retype(graph: Graph, precision: Precision) -> Graph:
    """`graph` with its floating-point weights, KV-cache and activation tensors at the target
    widths."""

    def convert(value: Value, copied: frozenset[str]) -> Value:
        kind = ValueKind.KV_CACHE if value.name in copied else value.kind  # a copy of the cache
        target = {ValueKind.WEIGHT: precision.weights, ValueKind.KV_CACHE: precision.kv_cache,
                  ValueKind.ACTIVATION: precision.activations}.get(kind)  # fmt: skip
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
        wanted = precision.kv_cache is not None or precision.activations is not None
        copied = copies(g) if wanted else frozenset()  # a copy of the cache keeps its width
        values = {name: convert(v, copied) for name, v in g.values.items()}
        return dataclasses.replace(g, nodes=nodes, values=MappingProxyType(values))

    return walk(graph) if not precision.is_identity else graph


def apply_precision(report: Report, precision: Precision) -> Report:
    """The report of the same step with the graph retyped (see the module docstring); its
    findings are empty (run memlint.api.check on it to lint the what-if). A target with no
    tensors to narrow (--kv-dtype on a model without a KV cache) changes nothing."""
    if precision.is_identity:
        return report
    model = dataclasses.replace(report.model, graph=retype(report.model.graph, precision))
    after = analyse(model, report.hardware, tf32=report.tf32)
    target = precision.weights
    if (target is None or not target.is_float) and precision.activations is None:
        return after
    graph = model.graph
    nodes = []
    for node, result in zip(graph.nodes, after.nodes):
        cost = result.cost
        dtype = _compute_dtype(node, graph, cost, precision)
        if dtype is not None:
            cost = dataclasses.replace(cost, compute_dtype=dtype)
            result = dataclasses.replace(
                result, cost=cost, timing=time_op(cost, report.hardware, tf32=report.tf32)
            )
        nodes.append(result)
    results = tuple(nodes)
    return dataclasses.replace(
        after, nodes=results, summary=summarize(results, report.hardware, report.tf32,
                                                   model=model)
    )


def apply_what_if(report: Report, what_if: WhatIf) -> Report:
    """`report` (its findings kept: they are about the graph as written) with its nodes and
    `summary` those of the what-if: the graph retyped and analysed again (apply_precision),
    the nodes of the excluded blocks left out of every total; `summary.what_if` names the
    what-ifs and `summary.as_written` keeps the graph's own totals."""
    if what_if.is_identity:
        return report
    precision = Precision.parse(what_if.weights_dtype, what_if.kv_dtype, what_if.act_dtype)
    after = apply_precision(report, precision)
    graph, retyped = report.model.graph, after.model.graph
    changed = {retyped.values[n].kind for n, v in graph.values.items()
               if retyped.values[n].dtype is not v.dtype}  # fmt: skip
    kinds = (("weights_dtype", ValueKind.WEIGHT), ("act_dtype", ValueKind.ACTIVATION),
             ("kv_dtype", ValueKind.KV_CACHE))  # fmt: skip
    unchanged = tuple(field for field, kind in kinds
                      if getattr(what_if, field) and kind not in changed)  # fmt: skip
    left_out = excluded_nodes(graph, what_if.exclude_blocks)
    summary = summarize(after.nodes, report.hardware, report.tf32, model=after.model,
                        exclude=left_out)  # fmt: skip
    written = report.summary
    summary = dataclasses.replace(
        summary, what_if=dataclasses.replace(what_if, unchanged=unchanged),
        as_written=AsWritten(written.flops, written.bytes_read, written.bytes_written,
                             written.predicted_latency_s),
    )  # fmt: skip
    return dataclasses.replace(report, nodes=after.nodes, summary=summary)


def excluded_nodes(graph: Graph, blocks: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The names of the nodes of `graph` in the block roles `blocks` (--exclude-block)."""
    if not blocks:
        return frozenset()
    roles = node_blocks(graph)
    return frozenset(name for name, role in roles.items() if role in blocks)


def without_blocks(report: Report, blocks: tuple[str, ...] | frozenset[str]) -> Report:
    """An analysed step with the nodes of `blocks` left out of its nodes and totals (a sweep
    point or generation step of a what-if that excludes blocks)."""
    left_out = excluded_nodes(report.model.graph, blocks)
    if not left_out:
        return report
    summary = summarize(report.nodes, report.hardware, report.tf32, model=report.model,
                        exclude=left_out)  # fmt: skip
    kept = tuple(n for n in report.nodes if n.name not in left_out)
    return dataclasses.replace(report, nodes=kept, summary=summary)


def _compute_dtype(node: Node, graph: Graph, cost: OpCost, precision: Precision) -> DType | None:
    """The dtype a matrix product computes in under `precision` (None: as costed): the
    activations' target when both its operands are stored at it (W8A8: --weights-dtype int8
    --act-dtype int8), else a float weights target it reads (see _computes_in)."""
    act = precision.activations
    if act is not None and cost.unit is ComputeUnit.TENSOR and not cost.parts:
        operands = [graph.value(name) for name in node.inputs[:2] if name]
        current = cost.compute_dtype
        if len(operands) == 2 and all(v is not None and v.dtype is act for v in operands) \
                and (current is None or current.bits > act.bits or current.is_float
                     != act.is_float):
            return act
    weights = precision.weights
    if weights is not None and weights.is_float and _computes_in(node, graph, cost, weights):
        return weights
    return None


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
    "ACT_DTYPES", "KV_DTYPES", "WEIGHT_DTYPES", "Precision", "PrecisionGain", "WhatIf",
    "apply_precision", "apply_what_if", "excluded_nodes", "precision_gain", "retype",
    "without_blocks",
]  # fmt: skip
