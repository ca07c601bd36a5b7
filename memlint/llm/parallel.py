"""Tensor-parallel what-if (--tp N) on an analysed step: the interconnect wall.

Megatron-style: each device holds 1/N of every weight and ceil(kv_heads / N) / kv_heads of the
KV cache (KV heads are replicated when N > kv_heads); it does 1/N of the FLOPs and moves 1/N of the weight bytes and its share of the KV bytes of every
operator, while activation bytes are not split (conservative: the replicated norms and residuals
move them whole). Each layer all-reduces its attention output and its MLP output; a ring
all-reduce of M bytes sends and receives 2 (N-1)/N x M bytes per device, so per step

    all-reduce bytes per device = layers x 2 x 2 (N-1)/N x batch x new tokens x hidden x bytes

over the spec's interconnect bandwidth, added to the step time (not overlapped with compute).
"""

from __future__ import annotations

import dataclasses
import math

from memlint.analysis.liveness import MemoryFootprint, footprint
from memlint.analysis.structure import LlmStructure
from memlint.core.llm import TensorParallel
from memlint.core.report import Report
from memlint.costs import OpCost
from memlint.llm import LlmError
from memlint.roofline import time_op

ALLREDUCES_PER_LAYER = 2  # after attention and after the MLP


def allreduce_bytes(tp: int, tokens: int, hidden: int, element_bytes: float) -> float:
    """Bytes one device sends (and receives) in a ring all-reduce of a tokens x hidden tensor:
    2 (N-1)/N x tokens x hidden x bytes."""
    return 2 * (tp - 1) / tp * tokens * hidden * element_bytes


def tensor_parallel(
    report: Report, structure: LlmStructure, tp: int, *, batch: int, new_tokens: int,
    memory: MemoryFootprint | None = None,
) -> TensorParallel:
    """The step of `report` (batch x new_tokens tokens) split over `tp` devices."""
    if tp < 1:
        raise LlmError(f"--tp {tp}: the number of devices must be at least 1")
    missing = [n for n, v in (("layers", structure.layers),
                              ("hidden size", structure.hidden_size)) if not v]  # fmt: skip
    if missing:
        raise LlmError(
            f"--tp {tp}: the model's {' and '.join(missing)} could not be found (no KV-cache "
            f"inputs, embedding table or config.json to read them from)"
        )
    spec = report.hardware
    bandwidth = spec.interconnect_bandwidth_bytes_per_s
    if tp > 1 and not bandwidth:
        raise LlmError(
            f"--tp {tp}: {spec.name} has no interconnect bandwidth in its spec; add "
            f"interconnect_bandwidth in a --hw-file"
        )
    kv_share = _kv_share(structure, tp)
    compute = sum(
        time_op(_split(n.cost, tp, kv_share), spec, tf32=report.tf32).predicted_latency_s
        for n in report.nodes
    ) + report.summary.launch_s  # each device launches every kernel of the step
    element = structure.activation_dtype.bits / 8
    tokens = batch * new_tokens
    per_layer = ALLREDUCES_PER_LAYER * allreduce_bytes(tp, tokens, structure.hidden_size, element)
    layers = structure.layers or 0
    mem = memory or footprint(report.model.graph)
    return TensorParallel(
        tp=tp,
        layers=layers,
        hidden_size=structure.hidden_size or 0,
        activation_bytes=element,
        tokens=tokens,
        allreduce_bytes_per_layer=per_layer,
        allreduce_time_s=layers * per_layer / bandwidth if tp > 1 and bandwidth else 0.0,
        compute_latency_s=compute,
        weight_bytes_per_device=mem.weight_bytes / tp,
        kv_cache_bytes_per_device=mem.kv_cache_bytes * kv_share,
        activation_bytes_per_device=mem.peak_activation_bytes,
        capacity_bytes=spec.memory_capacity_bytes,
        interconnect_bandwidth_bytes_per_s=bandwidth,
    )


def tp_candidates(structure: LlmStructure, max_tp: int = 64) -> tuple[int, ...]:
    """Degrees to try: the divisors of the query heads (each device gets whole heads), else
    powers of two, up to `max_tp`."""
    if structure.heads:
        return tuple(n for n in range(1, min(structure.heads, max_tp) + 1)
                     if structure.heads % n == 0)  # fmt: skip
    return tuple(2**i for i in range(int(math.log2(max_tp)) + 1))


def smallest_fitting_tp(
    report: Report, structure: LlmStructure, *, batch: int, new_tokens: int, max_tp: int = 64
) -> TensorParallel | None:
    """The smallest degree (of tp_candidates) at which the step fits in each device's memory;
    None when none does."""
    memory = footprint(report.model.graph)
    for tp in tp_candidates(structure, max_tp):
        if tp > 1 and not report.hardware.interconnect_bandwidth_bytes_per_s:
            return None
        split = tensor_parallel(
            report, structure, tp, batch=batch, new_tokens=new_tokens, memory=memory
        )
        if split.fits:
            return split
    return None


def _kv_share(structure: LlmStructure, tp: int) -> float:
    if structure.kv_heads:
        return math.ceil(structure.kv_heads / tp) / structure.kv_heads
    return 1 / tp


def _split(cost: OpCost, tp: int, kv_share: float) -> OpCost:
    read, written = cost.bytes_read, cost.bytes_written
    return dataclasses.replace(
        cost,
        flops=cost.flops / tp,
        bytes_read=dataclasses.replace(
            read, weights=read.weights / tp, kv_cache=read.kv_cache * kv_share),
        bytes_written=dataclasses.replace(
            written, weights=written.weights / tp, kv_cache=written.kv_cache * kv_share),
        parts=tuple(_split(p, tp, kv_share) for p in cost.parts),
    )  # fmt: skip


__all__ = [
    "ALLREDUCES_PER_LAYER", "TensorParallel", "allreduce_bytes", "smallest_fitting_tp",
    "tensor_parallel", "tp_candidates",
]  # fmt: skip
