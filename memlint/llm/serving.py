"""The numbers of the "LLM serving" report section, from one analysed step.

- Bytes and time per token: the step's bytes moved over the tokens it processes (batch x new
  tokens); its predicted time is the time per token of each sequence in a decode step.
- KV cache: bytes per token of one sequence (every layer's key and value), at the context (the
  tokens cached before the step) per sequence, and for the whole batch.
- Largest batch that fits at this context: (capacity - resident weights) / (what is live at the
  peak besides the weights, per sequence), assuming KV cache and activations grow linearly with
  the batch (memlint.analysis.liveness; the same estimate as rule ML104).
- Tokens/s: per sequence new_tokens / step time, in aggregate batch x new_tokens / step time.
  Both are upper bounds: the roofline time is what the device cannot beat, before launch
  overheads the spec does not give, scheduling and sampling.
"""

from __future__ import annotations

from memlint.analysis.liveness import footprint
from memlint.analysis.structure import LlmStructure
from memlint.core.llm import ExpertRouting, LatentServing, Serving
from memlint.core.report import Report
from memlint.costs import CostStatus
from memlint.costs.model import ZERO_BYTES, ByteCounts, OpCost
from memlint.ir import ComputeUnit, DType
from memlint.llm.scenario import Scenario
from memlint.llm.sweep import Crossover
from memlint.llm.whatif import Precision
from memlint.roofline import time_op


def serving(
    report: Report,
    structure: LlmStructure,
    scenario: Scenario,
    *,
    precision: Precision | None = None,
    crossover: Crossover | None = None,
) -> Serving:
    """The serving numbers of the step in `report` (analysed at `scenario`)."""
    precision = precision or Precision()
    memory = footprint(report.model.graph)
    capacity = report.hardware.memory_capacity_bytes
    kv_resident = memory.kv_cache_bytes
    latent = _latent(report, structure, scenario, precision)
    if latent is not None:  # resident as the latent a serving engine keeps, with the new tokens
        kv_resident = latent.latent_bytes_per_token * scenario.total_tokens * scenario.batch
    grows = kv_resident + memory.peak_activation_bytes
    largest = None
    if grows > 0:
        largest = max(int((capacity - memory.weight_bytes) // (grows / scenario.batch)), 0)
    s = report.summary
    return Serving(
        scenario=scenario,
        hardware=report.hardware.name,
        precision=precision.label,
        step_latency_s=s.predicted_latency_s,
        flops=s.flops,
        bytes_moved=s.bytes_moved,
        weight_bytes_read=s.bytes_read.weights,
        kv_bytes_moved=s.bytes_by_kind.kv_cache,
        intensity=s.intensity,
        memory_bound_fraction=s.memory_bound_fraction,
        weight_bytes=memory.weight_bytes,
        kv_bytes_per_token=structure.kv_bytes_per_token(precision.kv_cache),
        peak_memory_bytes=memory.peak_total_bytes,
        capacity_bytes=capacity,
        largest_batch=largest,
        crossover=crossover,
        cross_kv_bytes_per_position=structure.cross_kv_bytes_per_position(precision.kv_cache),
        experts=None if not structure.experts else ExpertRouting(
            structure.experts, structure.experts_per_token or 1, scenario.tokens_per_step),
        kv_bytes_windowed=None if not structure.windows else structure.kv_bytes_at(
            scenario.context, precision.kv_cache),
        sliding_layers=len(structure.windows),
        latent=latent,
        state_bytes_per_sequence=structure.state_bytes_per_sequence,
        state_layers=structure.state_layers,
        window=min(structure.windows.values(), default=0),
    )


__all__ = ["Serving", "serving"]


def _latent(report: Report, structure: LlmStructure, scenario: Scenario,
            precision: Precision) -> LatentServing | None:  # fmt: skip
    """Multi-head latent attention's two caches and two attention cores (see LatentServing)."""
    mla, layers = structure.latent, structure.layers
    latent_per_token = structure.kv_bytes_per_token(precision.kv_cache)
    captured = structure.captured_kv_bytes_per_token(precision.kv_cache)
    if mla is None or not layers or latent_per_token is None or captured is None:
        return None
    element = latent_per_token / (layers * mla.latent_per_token)  # bytes per cached element
    dtype = structure.kv_dtype or DType.FLOAT32
    (naive_f, naive_e), (absorbed_f, absorbed_e) = mla.attention(
        scenario.tokens_per_step, scenario.context)
    figures = []
    for flops, elements in ((naive_f, naive_e), (absorbed_f, absorbed_e)):
        read = elements * element * scenario.batch * layers
        cost = OpCost(flops=flops * layers, bytes_read=ByteCounts(kv_cache=int(read)),
                      bytes_written=ZERO_BYTES, status=CostStatus.MODELLED,
                      unit=ComputeUnit.TENSOR, compute_dtype=dtype)  # fmt: skip
        figures.append((flops * layers, read, time_op(cost, report.hardware).predicted_latency_s))
    (nf, nb, ns), (af, ab, as_) = figures
    return LatentServing(latent_per_token, captured, nf, nb, ns, af, ab, as_)
