"""The roofline: pure functions from an operator's cost and a device to a predicted time.

time = max(flops / peak(dtype, unit), bytes / bandwidth) + per-kernel overhead (where the spec
gives one). An operator is memory-bound when its memory time is the larger of the two, which
is the same as its intensity (FLOPs per byte) falling below the ridge point peak / bandwidth.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from memlint.costs import CostStatus, OpCost
from memlint.hardware import HardwareSpec
from memlint.ir import SourceLocation


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
    compute = cost.flops / peak.flops_per_s
    memory = cost.bytes_moved / spec.memory_bandwidth_bytes_per_s
    runs = cost.status not in (CostStatus.METADATA, CostStatus.FOLDED) and (
        cost.flops > 0 or cost.bytes_moved > 0
    )
    if not runs:
        return Timing(0.0, 0.0, 0.0, peak.flops_per_s, peak.key, Bound.NONE)
    bound = Bound.MEMORY if memory >= compute else Bound.COMPUTE
    latency = max(compute, memory) + (spec.kernel_overhead_s or 0.0)
    return Timing(compute, memory, latency, peak.flops_per_s, peak.key, bound)


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
