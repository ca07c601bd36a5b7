"""The LLM sections of a report as data: the scenario of a step, the serving figures, sweeps,
generation totals, precision and tensor-parallel what-ifs (computed by memlint.llm, formatted by
memlint.report.llm_view, written to JSON by memlint.core.document)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from memlint.core.whatif import ByteTotals, WhatIf
from memlint.costs.model import ByteCounts
from memlint.errors import LlmError
from memlint.ir import DType

if TYPE_CHECKING:  # annotations only
    from memlint.analysis.structure import LlmStructure


@dataclass(frozen=True)
class ScenarioRequest:
    """What the caller asks of a decoder with a KV cache (memlint.lint(..., scenario=...), the
    CLI's --phase/--batch/--context/--prompt/--sweep/--generate/--weights-dtype/--kv-dtype/--tp).
    None / () everywhere (the default) means: the default decode step for a decoder with a KV
    cache, the graph as bound for any other model (docs/llm.md). The precision what-ifs and
    --exclude-block (`what_if`) apply to every model: the report's totals are the what-if's
    (docs/blocks.md)."""

    phase: str | None = None  # "prefill" or "decode"
    batch: int | None = None
    context: int | None = None
    prompt: int | None = None
    sweeps: tuple[str, ...] = ()  # "batch=1,8,64", "context=...", "prompt=..."
    generate: int | None = None  # tokens generated one by one from the prompt
    weights_dtype: str | None = None  # what-if: fp16, bf16, fp8, int8, int4
    kv_dtype: str | None = None  # what-if: fp16, fp8, int8
    act_dtype: str | None = None  # what-if: int8, fp8, fp16, bf16 (every model)
    exclude_blocks: tuple[str, ...] = ()  # what-if: block roles left out of every total
    tp: int | None = None  # what-if: tensor parallelism over N devices
    # a torch MoE step's routing: "expected" (the default), "all" experts, or "top-k" only
    moe_routing: str | None = None
    exact: bool = False  # --generate lints every step instead of interpolating
    find_crossover: bool | None = None  # search the compute-bound batch (None: with a sweep)

    @classmethod
    def of(cls, value: ScenarioRequest | Mapping[str, Any] | None) -> ScenarioRequest:
        """A request from itself, None, or a mapping of its field names (LlmError for others)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise LlmError(f"scenario: expected a ScenarioRequest or a mapping, got "
                           f"{type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise LlmError(f"scenario: unknown field(s) {', '.join(map(repr, unknown))} "
                           f"(known: {', '.join(sorted(known))})")
        given = dict(value)
        if isinstance(given.get("sweeps"), str):
            given["sweeps"] = (given["sweeps"],)
        given["sweeps"] = tuple(given.get("sweeps", ()))
        blocks = given.get("exclude_blocks", ())
        blocks = (blocks,) if isinstance(blocks, str) else tuple(blocks)
        given["exclude_blocks"] = tuple(
            part.strip() for text in blocks for part in text.split(",") if part.strip()
        )
        return cls(**given)

    @property
    def what_if(self) -> WhatIf:
        """The what-ifs that apply to every model (memlint.llm.whatif.apply_what_if);
        LlmError for an unknown dtype or block name."""
        from memlint.analysis.blocks import BLOCKS, unknown_blocks

        Precision.parse(self.weights_dtype, self.kv_dtype, self.act_dtype)  # names checked
        unknown = unknown_blocks(self.exclude_blocks)
        if unknown:
            raise LlmError(f"--exclude-block {unknown[0]!r}: expected block names from "
                           f"{', '.join(BLOCKS)} (comma-separated)")
        return WhatIf(self.weights_dtype, self.act_dtype, self.kv_dtype,
                      tuple(dict.fromkeys(self.exclude_blocks)))

    @property
    def flags(self) -> tuple[str, ...]:
        """The CLI flags this request sets, e.g. ("--batch", "--sweep")."""
        return tuple(
            "--" + f.name.replace("_", "-").removesuffix("s") if f.name == "sweeps"
            else "--" + f.name.replace("_", "-")
            for f in fields(self)
            if f.name not in ("exact", "find_crossover", *_EVERY_MODEL)
            and getattr(self, f.name) not in (None, ())
        )


# What-ifs that apply to every model (no scenario flags: any source takes them).
_EVERY_MODEL = ("weights_dtype", "kv_dtype", "act_dtype", "exclude_blocks")


class Phase(enum.Enum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True)
class Scenario:
    """One forward pass: `batch` sequences, each adding `new_tokens` after `context` cached ones.

    `defaulted` names what no flag or dim gave ("batch", "context", "prompt"); `origin` says
    where the scenario came from: "flags", "dims" (all from --dim) or "default".
    """

    phase: Phase
    batch: int
    new_tokens: int
    context: int
    defaulted: tuple[str, ...] = ()
    origin: str = "flags"
    default_reason: str = ""  # how the default context was chosen, when one was
    # An encoder-decoder's decoder: the encoder positions cross-attention reads every step
    # (None for a decoder-only model), and where the figure came from.
    encoder_length: int | None = None
    encoder_source: str = ""

    @property
    def total_tokens(self) -> int:
        """Tokens per sequence after this step (positions used)."""
        return self.context + self.new_tokens

    @property
    def tokens_per_step(self) -> int:
        """Tokens processed by the step over the whole batch."""
        return self.batch * self.new_tokens

    def at(self, **changes: int) -> Scenario:
        """This scenario with some of batch / new_tokens / context changed (no longer defaults)."""
        kept = tuple(d for d in self.defaulted if _FIELD[d] not in changes)
        return dataclasses.replace(self, defaulted=kept, origin="flags", **changes)

    def describe(self) -> str:
        """One line for the report, e.g. 'decode step: batch 1, 1 new token after 1024 cached
        tokens (default batch 1; default context 1024 = min(1024, 2048 positions - 1))'."""
        if self.phase is Phase.DECODE:
            what = f"decode step: batch {self.batch}, 1 new token after {self.context} cached tokens"
        else:
            after = f" after {self.context} cached tokens" if self.context else ""
            what = f"prefill: batch {self.batch}, prompt of {self.new_tokens} tokens{after}"
        if self.encoder_length is not None:
            what += f", cross-attention over {self.encoder_length:,} encoder positions"
        notes = []
        for name in self.defaulted:
            value = getattr(self, _FIELD[name])
            if name == "encoder":
                notes.append(f"default encoder length {value} ({self.encoder_source})")
                continue
            reason = f" = {self.default_reason}" if name != "batch" and self.default_reason else ""
            notes.append(f"default {name} {value}{reason}")
        if self.encoder_length is not None and "encoder" not in self.defaulted \
                and self.encoder_source:
            notes.append(f"encoder length from {self.encoder_source}")
        return what + (f" ({'; '.join(notes)})" if notes else "")


_FIELD = {
    "batch": "batch", "context": "context", "prompt": "new_tokens", "encoder": "encoder_length",
}  # fmt: skip


WEIGHT_DTYPES = {
    "fp16": DType.FLOAT16,
    "bf16": DType.BFLOAT16,
    "fp8": DType.FLOAT8E4M3FN,
    "int8": DType.INT8,
    "int4": DType.INT4,
}


KV_DTYPES = {"fp16": DType.FLOAT16, "fp8": DType.FLOAT8E4M3FN, "int8": DType.INT8}


ACT_DTYPES = {"int8": DType.INT8, "fp8": DType.FLOAT8E4M3FN, "fp16": DType.FLOAT16,
              "bf16": DType.BFLOAT16}  # fmt: skip


DTYPE_LABELS = {dtype: name for name, dtype in WEIGHT_DTYPES.items()}


@dataclass(frozen=True)
class Precision:
    """Target widths for the weights, the KV cache and the activations (None: as in the
    graph)."""

    weights: DType | None = None
    kv_cache: DType | None = None
    activations: DType | None = None

    @classmethod
    def parse(cls, weights: str | None = None, kv_cache: str | None = None,
              activations: str | None = None) -> Precision:
        """From the flag values ("int4", "fp8", ...); LlmError names the accepted ones."""
        return cls(_pick("--weights-dtype", weights, WEIGHT_DTYPES),
                   _pick("--kv-dtype", kv_cache, KV_DTYPES),
                   _pick("--act-dtype", activations, ACT_DTYPES))  # fmt: skip

    @property
    def is_identity(self) -> bool:
        return self.weights is None and self.kv_cache is None and self.activations is None

    @property
    def label(self) -> str:
        parts = []
        if self.weights is not None:
            parts.append(f"weights {DTYPE_LABELS[self.weights]}")
        if self.kv_cache is not None:
            parts.append(f"KV cache {DTYPE_LABELS[self.kv_cache]}")
        if self.activations is not None:
            parts.append(f"activations {DTYPE_LABELS[self.activations]}")
        return ", ".join(parts) or "as in the graph"


def _pick(flag: str, text: str | None, table: dict[str, DType]) -> DType | None:
    if text is None:
        return None
    dtype = table.get(text.strip().lower())
    if dtype is None:
        raise LlmError(f"{flag} {text!r}: expected one of {', '.join(table)}")
    return dtype


@dataclass(frozen=True)
class PrecisionGain:
    """One step before and after a precision what-if."""

    precision: Precision
    weight_bytes_before: int  # resident weights (memlint.analysis.liveness), each counted once
    weight_bytes_after: int
    converted_before: int  # resident weights the what-if narrows, before and after
    converted_after: int
    weight_bytes_read_before: int  # weight bytes the step reads
    weight_bytes_read_after: int
    kv_bytes_moved_before: int  # KV-cache bytes read + written by the step
    kv_bytes_moved_after: int
    bytes_moved_before: int
    bytes_moved_after: int
    peak_memory_before: int
    peak_memory_after: int
    latency_before_s: float
    latency_after_s: float
    intensity_before: float | None
    intensity_after: float | None

    @property
    def saving_s(self) -> float:
        return self.latency_before_s - self.latency_after_s

    @property
    def speedup(self) -> float | None:
        return self.latency_before_s / self.latency_after_s if self.latency_after_s else None


@dataclass(frozen=True)
class StepTotals(ByteTotals):
    """Summed cost of one or more forward passes."""

    steps: int
    flops: int
    bytes_read: ByteCounts
    bytes_written: ByteCounts
    latency_s: float
    memory_bound_latency_s: float
    launch_s: float = 0.0  # kernels x the spec's launch cost, in latency_s

    @property
    def memory_bound_fraction(self) -> float:
        """Share of the operators' time (launch costs aside) that waits on memory."""
        work = self.latency_s - self.launch_s
        return min(self.memory_bound_latency_s / work, 1.0) if work > 0 else 0.0

    def __add__(self, other: StepTotals) -> StepTotals:
        return StepTotals(
            steps=self.steps + other.steps,
            flops=self.flops + other.flops,
            bytes_read=self.bytes_read + other.bytes_read,
            bytes_written=self.bytes_written + other.bytes_written,
            latency_s=self.latency_s + other.latency_s,
            memory_bound_latency_s=self.memory_bound_latency_s + other.memory_bound_latency_s,
            launch_s=self.launch_s + other.launch_s,
        )


NO_STEPS = StepTotals(0, 0, ByteCounts(), ByteCounts(), 0.0, 0.0)


@dataclass(frozen=True)
class Generation:
    """N tokens generated one by one from a prompt, for `batch` sequences at once."""

    batch: int
    prompt: int
    tokens: int
    prefill: StepTotals
    decode: StepTotals
    method: str  # "every step" or "interpolated"
    contexts_evaluated: tuple[int, ...]  # decode contexts that were linted

    @property
    def total(self) -> StepTotals:
        return self.prefill + self.decode

    @property
    def time_to_first_token_s(self) -> float:
        return self.prefill.latency_s

    @property
    def time_per_output_token_s(self) -> float | None:
        """Mean decode-step time (every sequence gets one token per step)."""
        return self.decode.latency_s / self.decode.steps if self.decode.steps else None

    @property
    def tokens_per_s(self) -> float:
        """Per sequence, prefill included: N / total time."""
        total = self.total.latency_s
        return self.tokens / total if total else 0.0

    @property
    def aggregate_tokens_per_s(self) -> float:
        return self.batch * self.tokens_per_s


@dataclass(frozen=True)
class TensorParallel:
    """One step split over `tp` devices (see the module docstring for the model)."""

    tp: int
    layers: int
    hidden_size: int
    activation_bytes: float  # bytes per element of the hidden states that are all-reduced
    tokens: int  # batch x new tokens of the step
    allreduce_bytes_per_layer: float  # per device, both all-reduces of one layer
    allreduce_time_s: float  # every layer, over the interconnect
    compute_latency_s: float  # per device: the split operators on the roofline
    weight_bytes_per_device: float
    kv_cache_bytes_per_device: float
    activation_bytes_per_device: int  # live activations at the peak (not split)
    capacity_bytes: int
    interconnect_bandwidth_bytes_per_s: float | None

    @property
    def step_latency_s(self) -> float:
        return self.compute_latency_s + self.allreduce_time_s

    @property
    def memory_per_device_bytes(self) -> float:
        return (
            self.weight_bytes_per_device + self.kv_cache_bytes_per_device
            + self.activation_bytes_per_device
        )  # fmt: skip

    @property
    def fits(self) -> bool:
        return self.memory_per_device_bytes <= self.capacity_bytes

    @property
    def interconnect_share(self) -> float:
        total = self.step_latency_s
        return self.allreduce_time_s / total if total else 0.0


@dataclass(frozen=True)
class GemmBalance:
    """The weight-reading matrix products of one step, summed."""

    flops: int
    bytes_moved: int
    compute_time_s: float
    memory_time_s: float
    peak_key: str  # the peak most of their FLOPs run at
    ridge_point: float

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes_moved if self.bytes_moved else None

    @property
    def compute_bound(self) -> bool:
        return self.flops > 0 and self.compute_time_s >= self.memory_time_s


@dataclass(frozen=True)
class SweepRow:
    scenario: Scenario
    flops: int
    bytes_moved: int
    latency_s: float
    intensity: float | None
    memory_bound_fraction: float
    kv_cache_bytes: float | None  # batch x context x KV bytes per token (the cache it reads)
    peak_memory_bytes: int
    capacity_bytes: int
    gemm: GemmBalance

    @property
    def tokens_per_s(self) -> float:
        """Tokens the step processes (decode: generates) per second, over the batch."""
        return self.scenario.tokens_per_step / self.latency_s if self.latency_s else 0.0

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes


@dataclass(frozen=True)
class Crossover:
    """The smallest batch at which the step's GEMMs are compute-bound (None: not up to
    `searched_to`)."""

    batch: int | None
    searched_to: int
    peak_key: str
    ridge_point: float
    gemm_intensity: float | None  # at `batch` (or at `searched_to` when None)
    fits: bool | None  # does the step at `batch` fit in device memory


@dataclass(frozen=True)
class Sweep:
    axis: str
    base: Scenario
    rows: tuple[SweepRow, ...]
    crossover: Crossover | None  # for batch sweeps of a decode step
    hardware: str


@dataclass(frozen=True)
class ExpertRouting:
    """A mixture of experts at the step's tokens: of `experts` routed experts per MoE layer,
    each token picks `top_k`; under uniform routing a step of `tokens` tokens touches
    E(1 - (1 - k/E)^T) distinct experts per layer on average, the experts whose weights it
    reads (memlint.frontends.fx_moe captures a torch step at that number, rounded up)."""

    experts: int
    top_k: int
    tokens: int

    @property
    def expected_touched(self) -> float:
        return self.experts * (1.0 - (1.0 - self.top_k / self.experts) ** self.tokens)

    @property
    def touched_fraction(self) -> float:
        """The share of the experts' weights a step reads."""
        return self.expected_touched / self.experts


@dataclass(frozen=True)
class LatentServing:
    """Multi-head latent attention in a step, over every layer and the batch: the cache per
    token of one sequence as a serving engine stores it (the latent) and as the graph holds it
    (decompressed keys and values), and the attention core as the graph runs it (naive) and
    absorbed (memlint.analysis.structure.LatentAttention), each with its FLOPs, cache bytes
    read and roofline time on the step's hardware."""

    latent_bytes_per_token: float
    decompressed_bytes_per_token: float
    naive_flops: int
    naive_bytes: float
    naive_s: float
    absorbed_flops: int
    absorbed_bytes: float
    absorbed_s: float


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
    # An encoder-decoder's cross-attention K/V per encoder position of one sequence (None for a
    # decoder-only model): written once from the encoder output, read whole every step.
    cross_kv_bytes_per_position: float | None = None
    experts: ExpertRouting | None = None  # a mixture of experts (None for a dense model)
    # The self-attention cache of one sequence at the context when sliding-window layers keep
    # fewer tokens (LlmStructure.kv_bytes_at); None: every layer keeps the context
    kv_bytes_windowed: float | None = None
    latent: LatentServing | None = None  # multi-head latent attention (None otherwise)
    # state-space layers' recurrent state of one sequence, constant in the context (Mamba)
    state_bytes_per_sequence: int | None = None
    state_layers: int = 0
    sliding_layers: int = 0  # layers that slide over a window
    window: int = 0  # the smallest of their windows

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
        if self.kv_bytes_windowed is not None:
            return self.kv_bytes_windowed
        if self.kv_bytes_per_token is None:
            return None
        return self.kv_bytes_per_token * self.scenario.context

    @property
    def cross_kv_bytes_per_sequence(self) -> float | None:
        """Cross-attention K/V of one sequence at the scenario's encoder length."""
        if self.cross_kv_bytes_per_position is None or self.scenario.encoder_length is None:
            return None
        return self.cross_kv_bytes_per_position * self.scenario.encoder_length

    @property
    def kv_bytes_batch(self) -> float | None:
        """Every cache of the batch: self-attention at the context plus cross-attention."""
        at = self.kv_bytes_at_context
        if at is None:
            return None
        return (at + (self.cross_kv_bytes_per_sequence or 0)) * self.scenario.batch

    @property
    def cache_traffic(self) -> tuple[float, float, float] | None:
        """KV-cache bytes one step must move with the cache kept in place: (self-attention
        read: the context, self-attention written: the new tokens, cross-attention read: the
        whole encoder length), over the batch. The cross-attention cache is never written."""
        at = self.kv_bytes_at_context
        if self.kv_bytes_per_token is None or at is None:
            return None
        sc = self.scenario
        cross = self.cross_kv_bytes_per_sequence or 0
        return (at * sc.batch,
                self.kv_bytes_per_token * sc.new_tokens * sc.batch, cross * sc.batch)

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.capacity_bytes


@dataclass(frozen=True)
class LlmSections:
    """Everything the LLM parts of a report show (None: not asked for / not applicable)."""

    structure: LlmStructure
    serving: Serving | None
    sweeps: tuple[Sweep, ...] = ()
    generation: Generation | None = None
    precision: PrecisionGain | None = None
    tensor_parallel: TensorParallel | None = None
    smallest_tp: TensorParallel | None = None
