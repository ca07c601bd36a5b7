"""What a sweep row and the crossover search read of one step (totals, the GEMMs' balance,
peak memory), from the step's report or, for a decoder of repeated layers, from a load that
keeps one layer (memlint.frontends.onnx.load_onnx_folded).

A decoder's 80 layers are one layer 80 times: at a sweep point each layer reads and writes
what the first does, node for node (the frontend checks it at each point), so every node of
layer k costs what the node at its place in layer 0 costs, and the step's totals are those of
the nodes outside the layers plus the first layer's, 80 times. They are summed node by node in
the graph's order, as a full report sums them (so the figures are the same to the last bit),
from the costs of the kept nodes alone. Peak memory comes from the base step's liveness plan
(memlint.analysis.liveness, the same graph) with each tensor's size at the point, where every
tensor keeps its kind. A point where any of this does not hold is linted in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from memlint.analysis.kv_copies import copies
from memlint.analysis.liveness import footprint, footprint_resized
from memlint.core.llm import GemmBalance
from memlint.core.report import NodeResult, Report, Summary, analyse, summarize
from memlint.core.whatif import EMPTY_BLOCKS
from memlint.costs import CostStatus
from memlint.costs.quantized import EMPTY_VIEW, view_of
from memlint.costs.registry import BUILTIN, op_info_of, origin_of
from memlint.frontends.onnx import ParsedOnnx, load_onnx_folded
from memlint.hardware import HardwareSpec
from memlint.ir import ComputeUnit, Graph, per_graph


@dataclass(frozen=True)
class StepFigures:
    """One step's totals (as written: a row has no fused estimate nor totals by block), the
    balance of its weight-reading GEMMs and its peak memory."""

    summary: Summary
    gemm: GemmBalance
    peak_memory_bytes: int
    capacity_bytes: int


def figures(report: Report) -> StepFigures:
    """The figures of an analysed step."""
    return StepFigures(
        summary=replace(report.summary, fused=None, by_block=EMPTY_BLOCKS),
        gemm=gemm_balance_of(report.nodes, report.hardware),
        peak_memory_bytes=footprint(report.model.graph).peak_total_bytes,
        capacity_bytes=report.hardware.memory_capacity_bytes,
    )


def gemm_balance_of(nodes: Sequence[NodeResult], spec: HardwareSpec) -> GemmBalance:
    """Sum the matrix products (tensor unit) that read weights."""
    gemms = [
        n for n in nodes
        if n.cost.unit is ComputeUnit.TENSOR and n.cost.bytes_read.weights > 0
        and n.cost.status is CostStatus.MODELLED
    ]
    by_peak: dict[str, int] = {}
    for n in gemms:
        by_peak[n.timing.peak_key] = by_peak.get(n.timing.peak_key, 0) + n.cost.flops
    key = max(sorted(by_peak), key=by_peak.__getitem__) if by_peak else ""
    ridge = spec.peak_flops_per_s[key] / spec.memory_bandwidth_bytes_per_s if key else 0.0
    return GemmBalance(
        flops=sum(n.cost.flops for n in gemms),
        bytes_moved=sum(n.cost.bytes_moved for n in gemms),
        compute_time_s=sum(n.timing.compute_time_s for n in gemms),
        memory_time_s=sum(n.timing.memory_time_s for n in gemms),
        peak_key=key,
        ridge_point=ridge,
    )


def folded_figures(parsed: ParsedOnnx, base: Report, dims: dict[str, int]) -> StepFigures | None:
    """The figures of `parsed` at `dims` from a load that keeps one of its repeated blocks;
    `base` is a full report of the same model (whose graph's liveness plan is reused). None
    where the graph does not fold at these dims, or a node's cost could depend on more than
    its own tensors (a Q/DQ graph, an op of a cost plugin): lint that point in full."""
    folded = load_onnx_folded(parsed, dims=dims)
    if folded is None:
        return None
    graph, whole, names = folded.model.graph, base.model.graph, folded.names
    if not _symmetric(whole, names) or not _costs_are_local(graph):
        return None
    # Every tensor keeps its kind at the point (whole's liveness plan holds there): the kept
    # tensors are checked, the others are those of the left-out blocks, each of the kind of
    # the first block's tensor at its place, at the point and (_symmetric) in `whole`.
    cached, cached_here = copies(whole), copies(graph)
    values = graph.values
    for name, value in values.items():
        known = whole.values.get(name)
        if known is None or known.kind is not value.kind \
                or (name in cached) != (name in cached_here):
            return None
    spec, tf32 = base.hardware, base.tf32
    kept = analyse(folded.model, spec, tf32=tf32, detail=False).nodes
    nodes = tuple(map(kept.__getitem__, folded.positions))  # the whole graph's order
    here = {name: value.nbytes for name, value in values.items()}
    keys, places = _places(whole, names)
    size = dict(zip(keys, map(here.get, places))).get

    return StepFigures(
        summary=summarize(nodes, spec, tf32),
        gemm=gemm_balance_of(nodes, spec),
        peak_memory_bytes=footprint_resized(whole, size).peak_total_bytes,
        capacity_bytes=spec.memory_capacity_bytes,
    )


def _costs_are_local(graph: Graph) -> bool:
    """Every node's cost follows from its own op, attributes and tensors: no Q/DQ folding
    (which reads neighbours), no op of a cost plugin, no subgraph."""
    if view_of(graph, op_info_of) is not EMPTY_VIEW:
        return False
    return all(not node.subgraphs and origin_of(node.domain, node.op_type) in (BUILTIN, None)
               for node in graph.nodes)


def _places(whole: Graph, names: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Every tensor of `whole`, and the tensor at its place in the kept graph (`names`: a
    tensor of a left-out block -> the first block's); found once per graph and `names`."""
    last = _last_places(whole)
    if not last or last[0] != names:
        keys = list(whole.values)
        last[:] = [dict(names), keys, [names.get(name, name) for name in keys]]
    return last[1], last[2]


@per_graph
def _last_places(whole: Graph) -> list:
    return []


@per_graph
def _symmetric(whole: Graph, names: Mapping[str, str]) -> bool:
    """In `whole` (the base step), does each tensor of the left-out blocks have the kind of the
    first block's tensor at its place (copies of the KV cache included), and is every node's
    cost local? Found once per base graph."""
    if not _costs_are_local(whole):
        return False
    values, cached = whole.values, copies(whole)
    for name, name0 in names.items():
        value, value0 = values.get(name), values.get(name0)
        if value is None or value0 is None or value.kind is not value0.kind \
                or (name in cached) != (name0 in cached):
            return False
    return True


__all__ = ["StepFigures", "figures", "folded_figures", "gemm_balance_of"]
