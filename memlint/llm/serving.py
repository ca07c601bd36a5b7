"""The numbers of the "LLM serving" report section, from one analysed step.

- Bytes and time per token: the step's bytes moved over the tokens it processes (batch x new
  tokens); its predicted time is the time per token of each sequence in a decode step.
- KV cache: bytes per token of one sequence (every layer's key and value), at the context (the
  tokens cached before the step) per sequence, and for the whole batch.
- Largest batch that fits at this context: (capacity - resident weights) / (what is live at the
  peak besides the weights, per sequence), assuming KV cache and activations grow linearly with
  the batch (memlint.liveness; the same estimate as rule ML104).
- Tokens/s: per sequence new_tokens / step time, in aggregate batch x new_tokens / step time.
  Both are upper bounds: the roofline time is what the device cannot beat, before launch
  overheads the spec does not give, scheduling and sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

from memlint.liveness import footprint
from memlint.llm.scenario import Scenario
from memlint.llm.structure import LlmStructure
from memlint.llm.sweep import Crossover
from memlint.llm.whatif import Precision
from memlint.report.model import Report


@dataclass(frozen=True)
class Serving:
    scenario: Scenario
    hardware: str
    precision: str  # the what-if applied ("as in the graph" when none)
    step_latency_s: float
    flops: int
    bytes_moved: int
    weight_bytes_read: int
    kv_bytes_moved: int
    intensity: float | None
    memory_bound_fraction: float
    weight_bytes: int  # resident weights
    kv_bytes_per_token: float | None  # per token of one sequence
    peak_memory_bytes: int
    capacity_bytes: int
    largest_batch: int | None  # at this context; None when nothing grows with the batch
    crossover: Crossover | None = None  # memlint.llm.sweep.crossover_batch, when computed

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_moved / self.scenario.tokens_per_step

    @property
    def time_per_token_s(self) -> float:
        """Step time per new token of one sequence (decode: the time per output token)."""
        return self.step_latency_s / self.scenario.new_tokens

    @property
    def tokens_per_s_per_sequence(self) -> float:
        return self.scenario.new_tokens / self.step_latency_s if self.step_latency_s else 0.0

    @property
    def tokens_per_s_aggregate(self) -> float:
        return self.scenario.tokens_per_step / self.step_latency_s if self.step_latency_s else 0.0

    @property
    def kv_bytes_at_context(self) -> float | None:
        """Per sequence, for the tokens cached before the step."""
        if self.kv_bytes_per_token is None:
            return None
        return self.kv_bytes_per_token * self.scenario.context

    @property
    def kv_bytes_batch(self) -> float | None:
        at = self.kv_bytes_at_context
        return None if at is None else at * self.scenario.batch

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes


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
    grows = memory.kv_cache_bytes + memory.peak_activation_bytes
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
    )


__all__ = ["Serving", "serving"]
