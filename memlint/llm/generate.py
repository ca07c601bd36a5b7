"""Generation totals: the cost of producing N tokens one by one from a P-token prompt.

    prefill     one pass over the P prompt tokens (context 0); it yields token 1
    decode      N - 1 steps, step k (k = 1 .. N-1) adding 1 token after P + k - 1 cached tokens

Totals are sums over those N passes (FLOPs and bytes exactly, in integers; predicted time as the
sum of every step's roofline time), as the memory-wall literature measures decoder models.

Speed. Re-linting every decode step costs one load (shape inference) per step. When the decode
steps' costs are affine in the context they need not be: the steps are evaluated at SAMPLES
contexts spread over the range (both ends included) and, if for every node the FLOPs and the
bytes read and written of each kind are exactly affine in the context with a whole-number slope
at all of them (checked in integer arithmetic), with the same op status, unit and peak, every
step is computed from those lines: its nodes' roofline times (max(FLOPs / peak, bytes /
bandwidth), as memlint.roofline times them, plus the launch cost of each kernel) are summed
step by step, so a node that turns from memory- to compute-bound mid-generation is timed right.
Otherwise, or with exact=True, every step is evaluated. The check is exact at the sampled contexts, not a proof for
the ones between: a graph whose cost bends between them (a cache padded to blocks, a window
narrower than the range) would be mis-summed, and exact=True is the remedy. Standard decoders
(Optimum GPT-2, Llama with GQA) are affine: attention reads and the KV append grow by one
token's bytes per step.
"""

from __future__ import annotations

import numpy as np

from memlint.core.llm import NO_STEPS, Generation, StepTotals
from memlint.core.report import Report
from memlint.costs import ByteCounts, CostStatus
from memlint.llm import LlmError
from memlint.llm.scenario import Evaluator, Phase, Scenario

SAMPLES = 5
_CHUNK = 64  # decode steps timed at once
_KINDS = ("weights", "activations", "kv_cache")


def step_totals(report: Report) -> StepTotals:
    """One analysed pass as totals."""
    s = report.summary
    return StepTotals(
        steps=1,
        flops=s.flops,
        bytes_read=s.bytes_read,
        bytes_written=s.bytes_written,
        latency_s=s.predicted_latency_s,
        memory_bound_latency_s=s.memory_bound_latency_s,
        launch_s=s.launch_s,
    )


def generate(
    evaluator: Evaluator,
    *,
    tokens: int,
    prompt: int,
    batch: int = 1,
    exact: bool = False,
    samples: int = SAMPLES,
) -> Generation:
    """Totals of generating `tokens` tokens from a `prompt`-token prompt (module docstring)."""
    if tokens < 1 or prompt < 1 or batch < 1:
        raise LlmError(
            f"--generate {tokens} --prompt {prompt} --batch {batch}: each must be at least 1"
        )
    limit = evaluator.structure.max_positions
    if limit and prompt + tokens - 1 > limit:
        raise LlmError(
            f"--generate {tokens} from a {prompt}-token prompt needs {prompt + tokens - 1} "
            f"positions; the model has {limit}"
        )
    prefill = step_totals(evaluator.report(Scenario(Phase.PREFILL, batch, prompt, 0)))
    contexts = list(range(prompt, prompt + tokens - 1))
    if not contexts:
        return Generation(batch, prompt, tokens, prefill, NO_STEPS, "every step", ())
    if not exact and len(contexts) > max(samples, 3):
        picks = _spread(contexts[0], contexts[-1], max(samples, 3))
        reports = [evaluator.report(_decode(batch, c)) for c in picks]
        lines = _affine(picks, reports)
        if lines is not None:
            decode = lines.totals(np.asarray(contexts, dtype=np.int64))
            return Generation(batch, prompt, tokens, prefill, decode, "interpolated", picks)
    decode = NO_STEPS
    for context in contexts:
        decode = decode + step_totals(evaluator.report(_decode(batch, context)))
    return Generation(batch, prompt, tokens, prefill, decode, "every step", tuple(contexts))


def _decode(batch: int, context: int) -> Scenario:
    return Scenario(Phase.DECODE, batch, 1, context)


def _spread(first: int, last: int, count: int) -> tuple[int, ...]:
    """`count` contexts from first to last, ends included, evenly spaced."""
    return tuple(sorted({first + round(k * (last - first) / (count - 1)) for k in range(count)}))


class _Lines:
    """Per node: value = base + slope * (context - c0) for FLOPs and each byte kind."""

    def __init__(self, c0: int, base: np.ndarray, slope: np.ndarray, runs: np.ndarray,
                 peak: np.ndarray, bandwidth: float, overhead: float) -> None:  # fmt: skip
        self.c0, self.base, self.slope = c0, base, slope  # [field, node], field 0 = FLOPs
        self.runs, self.peak, self.bandwidth, self.overhead = runs, peak, bandwidth, overhead

    def totals(self, contexts: np.ndarray) -> StepTotals:
        offsets = contexts - self.c0  # [step]
        steps = len(contexts)
        offset_sum = int(offsets.sum())
        exact = [
            steps * int(b) + int(s) * offset_sum
            for b, s in zip(self.base.sum(axis=1).tolist(), self.slope.sum(axis=1).tolist())
        ]  # per field, summed over nodes and steps, in Python integers
        flops0, flops1 = self.base[0], self.slope[0]
        moved0, moved1 = self.base[1:].sum(axis=0), self.slope[1:].sum(axis=0)
        time_s = memory_bound_s = launch_s = 0.0
        for start in range(0, steps, _CHUNK):  # [chunk, node] arrays: bounded memory
            at = offsets[start:start + _CHUNK, None]
            flops = (flops0 + flops1 * at).astype(np.float64)
            moved = (moved0 + moved1 * at).astype(np.float64)
            compute = flops / self.peak
            memory = moved / self.bandwidth
            # as memlint.roofline.time_op: a node that runs takes max(compute, memory) and is
            # memory-bound when its memory time is at least its compute time; as
            # memlint.core.report.summarize, each kernel adds the launch cost to the total
            runs = self.runs & ((flops > 0) | (moved > 0))
            time = np.where(runs, np.maximum(compute, memory), 0.0)
            launch = self.overhead * int(runs.sum())
            time_s += float(time.sum()) + launch
            launch_s += launch
            memory_bound_s += float(np.where(runs & (memory >= compute), time, 0.0).sum())
        return StepTotals(
            steps=steps,
            flops=exact[0],
            bytes_read=ByteCounts(*exact[1:4]),
            bytes_written=ByteCounts(*exact[4:7]),
            latency_s=time_s,
            memory_bound_latency_s=memory_bound_s,
            launch_s=launch_s,
        )


def _fields(report: Report) -> np.ndarray:
    """[7, node]: FLOPs, bytes read by kind, bytes written by kind (Python ints in an object
    array, so nothing overflows before the exactness check)."""
    rows = [[n.cost.flops for n in report.nodes]]
    for side in ("bytes_read", "bytes_written"):
        for kind in _KINDS:
            rows.append([getattr(getattr(n.cost, side), kind) for n in report.nodes])
    return np.array(rows, dtype=object)


def _affine(contexts: tuple[int, ...], reports: list[Report]) -> _Lines | None:
    """Per-node lines through the sampled steps, or None when any node is not exactly affine
    with a whole-number slope, or the steps differ in anything but their sizes, or the spec
    times matrix products by shape class (a product's class can change with the context) or
    copies at their own bandwidth (the lines below time every node at the memory bandwidth)."""
    first = reports[0]
    if (first.hardware.skinny_matmul_flops_per_s
            or first.hardware.weight_streaming_bandwidth_bytes_per_s
            or first.hardware.copy_bandwidth_bytes_per_s
            or first.hardware.transpose_bandwidth_bytes_per_s):
        return None
    signature = [(n.name, n.cost.status, n.cost.unit, n.timing.peak_key, bool(n.cost.parts))
                 for n in first.nodes]  # fmt: skip
    for report in reports[1:]:
        other = [(n.name, n.cost.status, n.cost.unit, n.timing.peak_key, bool(n.cost.parts))
                 for n in report.nodes]  # fmt: skip
        if other != signature:
            return None
    if any(parts for *_, parts in signature):
        return None  # control flow: its parts are timed one by one
    values = [_fields(r) for r in reports]
    c0, c1 = contexts[0], contexts[-1]
    span = c1 - c0
    rise = values[-1] - values[0]
    if any(int(x) % span for x in rise.ravel()):
        return None
    slope = rise // span
    for context, value in zip(contexts[1:-1], values[1:-1]):
        if not (value == values[0] + slope * (context - c0)).all():
            return None
    base = values[0].astype(np.int64)
    slope = slope.astype(np.int64)
    spec = first.hardware
    runs = np.array([n.cost.status not in (CostStatus.METADATA, CostStatus.FOLDED)
                     for n in first.nodes], dtype=bool)  # fmt: skip
    peak = np.array([n.timing.peak_flops_per_s for n in first.nodes], dtype=np.float64)
    return _Lines(c0, base, slope, runs, peak, spec.memory_bandwidth_bytes_per_s,
                  spec.kernel_overhead_s or 0.0)  # fmt: skip


__all__ = ["SAMPLES", "Generation", "StepTotals", "generate", "step_totals"]
