"""The roofline: pure functions from an operator's cost and a device to a predicted time.

time = max(flops / peak(dtype, unit), bytes / bandwidth): the operator's work. The spec's
per-kernel launch cost (GPU specs, a calibrated CPU's per-node overhead) is added once per
kernel to the totals (memlint.core.report.summarize, memlint.analysis.fused). An operator is memory-bound when its memory time is the larger of the two, which
is the same as its intensity (FLOPs per byte) falling below the ridge point peak / bandwidth.

Specs may carry figures by access pattern and shape class (a calibrated CPU does); each applies
where the cost says it does, and a spec without them times every operator as above:
- a skinny matrix product (tensor unit, at most SKINNY_ROWS effective rows, see `skinny_rows`)
  runs at min(peak, skinny_matmul_flops_per_s);
- a skinny matrix product whose bytes are mostly weights (weights read > half of all bytes
  moved: a decode step's GEMV) streams them at weight_streaming_bandwidth_bytes_per_s;
- data movement (no FLOPs, bytes moved: Concat, Transpose, Gather, Slice, Expand, Split, ... as
  written, decided from the cost alone, see `is_copy`) runs at copy_bandwidth_bytes_per_s; a
  copy that permutes the element order (the cost's `permutes`: Transpose) at
  transpose_bandwidth_bytes_per_s where the spec has it (strided reads run several times slower
  than a Concat's contiguous ones on a CPU).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from memlint.costs import CostStatus, OpCost
from memlint.hardware import HardwareSpec
from memlint.ir import ComputeUnit, SourceLocation

# A matrix product with at most this many effective rows is "skinny": decode at small batch
# (M = batch), the shape class calibration measures at 8 rows, next to the square peaks.
SKINNY_ROWS = 16


class Bound(enum.Enum):
    MEMORY = "memory"
    COMPUTE = "compute"
    NONE = "none"  # moves no bytes and does no arithmetic (metadata ops, folded constants)


@dataclass(frozen=True)
class Timing:
    """Where one operator sits on the roofline of a device."""

    compute_time_s: float
    memory_time_s: float
    predicted_latency_s: float
    peak_flops_per_s: float
    peak_key: str  # which peak of the spec bounds its arithmetic, e.g. "tensor.float16"
    bound: Bound


@dataclass(frozen=True)
class NodeResult:
    """One operator's cost and roofline placement: what rules and reports read per node."""

    name: str
    op_type: str
    domain: str
    cost: OpCost
    timing: Timing
    source: SourceLocation | None = None

    @property
    def intensity(self) -> float | None:
        return self.cost.intensity


def time_op(cost: OpCost, spec: HardwareSpec, *, tf32: bool = False) -> Timing:
    """Roofline time of one operator; control flow sums the times of its parts."""
    if cost.parts:
        return _sum_parts([time_op(part, spec, tf32=tf32) for part in cost.parts])
    peak = spec.peak_for(cost.compute_dtype, cost.unit, tf32=tf32)
    rate, bandwidth = peak.flops_per_s, spec.memory_bandwidth_bytes_per_s
    skinny_rate = spec.skinny_matmul_flops_per_s
    streaming = spec.weight_streaming_bandwidth_bytes_per_s
    rows = skinny_rows(cost) if skinny_rate or streaming else None
    if rows is not None and rows <= SKINNY_ROWS:
        if skinny_rate:
            rate = min(rate, skinny_rate)
        if streaming and 2 * cost.bytes_read.weights > cost.bytes_moved:
            bandwidth = streaming
    if is_copy(cost):
        if cost.permutes and spec.transpose_bandwidth_bytes_per_s:
            bandwidth = spec.transpose_bandwidth_bytes_per_s
        elif spec.copy_bandwidth_bytes_per_s:
            bandwidth = spec.copy_bandwidth_bytes_per_s
    compute = cost.flops / rate
    memory = cost.bytes_moved / bandwidth
    runs = cost.status not in (CostStatus.METADATA, CostStatus.FOLDED) and (
        cost.flops > 0 or cost.bytes_moved > 0
    )
    if not runs:
        return Timing(0.0, 0.0, 0.0, rate, peak.key, Bound.NONE)
    bound = Bound.MEMORY if memory >= compute else Bound.COMPUTE
    latency = max(compute, memory)  # the launch cost is the summary's: kernels x launch
    return Timing(compute, memory, latency, rate, peak.key, bound)


def is_copy(cost: OpCost) -> bool:
    """Data movement: an operator that does no arithmetic and moves bytes (a copy, transpose,
    gather, slice, ...), from its cost alone. Metadata ops move no bytes, so they are not; nor
    is an op without a formula (its FLOPs are unknown, not zero, and its bytes a lower bound)."""
    return cost.status is CostStatus.MODELLED and cost.flops == 0 and cost.bytes_moved > 0


def skinny_rows(cost: OpCost) -> float | None:
    """The effective row count M of a matrix product (tensor unit), from its cost alone; None
    for other operators.

    An M x K by K x N product at b bytes per element does 2MKN FLOPs over b(MK + KN + MN) bytes:
    intensity * b / 2 = MKN / (MK + KN + MN), which is M when K and N are much larger (a decode
    step's GEMV reads 1, a square n x n product n / 3). b is the compute dtype's width (4 when
    unknown).
    """
    if cost.unit is not ComputeUnit.TENSOR or cost.flops <= 0 or cost.bytes_moved <= 0:
        return None
    bits = cost.compute_dtype.bits if cost.compute_dtype is not None else 0
    return cost.flops * ((bits or 32) / 8) / (2 * cost.bytes_moved)


def _sum_parts(parts: list[Timing]) -> Timing:
    """A subgraph's parts run one after another; it is memory-bound if most of its time is."""
    total = sum(p.predicted_latency_s for p in parts)
    memory_bound = sum(p.predicted_latency_s for p in parts if p.bound is Bound.MEMORY)
    if not total:
        bound = Bound.NONE
    else:
        bound = Bound.MEMORY if 2 * memory_bound >= total else Bound.COMPUTE
    slowest = max(parts, key=lambda p: p.compute_time_s)
    return Timing(
        compute_time_s=sum(p.compute_time_s for p in parts),
        memory_time_s=sum(p.memory_time_s for p in parts),
        predicted_latency_s=total,
        peak_flops_per_s=slowest.peak_flops_per_s,
        peak_key=slowest.peak_key,
        bound=bound,
    )


def intensity(flops: float, bytes_moved: float) -> float | None:
    """Arithmetic intensity in FLOP/B; None when nothing moves."""
    return flops / bytes_moved if bytes_moved else None
