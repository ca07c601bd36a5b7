"""Sweeps: the same step re-linted at several batches, contexts or prompt lengths, one row each,
and the batch at which decode turns compute-bound.

    --sweep batch=1,8,64,256      batch varies, the rest as in the scenario
    --sweep context=128,1024,8192 tokens in the KV cache vary
    --sweep prompt=128,512        prompt length of a prefill varies

Each point is loaded and analysed on its own (memlint.api.load / analyse, through the
Evaluator), from the file read once; a decoder of repeated layers loads and costs one layer per
point (memlint.llm.steps), the figures the same as a full load's.

Crossover batch. Decode turns compute-bound when the matrix products that read weights (its
GEMMs) spend at least as much time computing as reading: summed over those nodes, FLOPs / peak
>= bytes / bandwidth, i.e. their aggregate intensity reaches the ridge point of the peak they run
at. Both sums are straight lines in the batch (FLOPs and activation bytes grow with it, the
weights are read once), so the crossover is solved from the steps at batch 1, 2 and 4 (the
lines checked at the third) and confirmed by linting the batch found and the one below it: five
loads at most. When the probes are not on a line, or the confirmation fails, it falls back to
doubling then bisection over whole batches (using the swept points that bracket it), up to
`max_batch`. Lines that never cross (memory time growing as fast as compute time) give None.
Attention over the KV cache and unfused element-wise ops stay memory-bound at any batch (every
sequence reads its own cache), so a step's memory-bound share never reaches zero; the table
shows it per row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from memlint.core.llm import Crossover, GemmBalance, Sweep, SweepRow
from memlint.core.report import Report
from memlint.llm import LlmError
from memlint.llm.scenario import Evaluator, Phase, Scenario
from memlint.llm.steps import StepFigures, gemm_balance_of

AXES = {"batch": "batch", "context": "context", "prompt": "new_tokens"}
MAX_BATCH = 16384


def parse_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    """'batch=1,8,64' -> ('batch', (1, 8, 64)): the axis and its values, sorted, unique."""
    axis, sep, listed = text.partition("=")
    axis = axis.strip().lower()
    usage = f"--sweep {text!r}: expected AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}"
    if not sep or axis not in AXES or not listed.strip():
        raise LlmError(usage)
    values = []
    for part in listed.split(","):
        try:
            values.append(int(part.strip()))
        except ValueError:
            raise LlmError(f"{usage} ({part.strip()!r} is not a whole number)") from None
    least = 0 if axis == "context" else 1
    if min(values) < least:
        raise LlmError(f"--sweep {axis}: values must be at least {least}")
    return axis, tuple(sorted(set(values)))


def gemm_balance(report: Report) -> GemmBalance:
    """Sum the matrix products (tensor unit) that read weights."""
    return gemm_balance_of(report.nodes, report.hardware)


def row(evaluator: Evaluator, scenario: Scenario) -> SweepRow:
    step = step_figures(evaluator, scenario)
    s = step.summary
    per_sequence = evaluator.structure.kv_bytes_at(scenario.context,
                                                   evaluator.precision.kv_cache)  # fmt: skip
    return SweepRow(
        scenario=scenario,
        flops=s.flops,
        bytes_moved=s.bytes_moved,
        latency_s=s.predicted_latency_s,
        intensity=s.intensity,
        memory_bound_fraction=s.memory_bound_fraction,
        kv_cache_bytes=None if per_sequence is None else per_sequence * scenario.batch,
        peak_memory_bytes=step.peak_memory_bytes,
        capacity_bytes=step.capacity_bytes,
        gemm=step.gemm,
    )


def step_figures(evaluator: Evaluator, scenario: Scenario) -> StepFigures:
    """What a row reads of the step at `scenario` (Evaluator.figures)."""
    return evaluator.figures(scenario)


def sweep(
    evaluator: Evaluator,
    base: Scenario,
    axis: str,
    values: Iterable[int],
    *,
    find_crossover: bool = True,
    max_batch: int = MAX_BATCH,
) -> Sweep:
    """One row per value of `axis`; the crossover batch for a batch sweep of a decode step."""
    if axis not in AXES:
        raise LlmError(f"--sweep {axis}: expected one of {', '.join(AXES)}")
    if axis == "prompt" and base.phase is not Phase.PREFILL:
        raise LlmError("--sweep prompt: sweeps the prompt of a prefill; add --phase prefill "
                       "(for decode steps sweep the context)")  # fmt: skip
    rows = tuple(row(evaluator, base.at(**{AXES[axis]: v})) for v in values)
    crossover = None
    if find_crossover and axis == "batch" and base.phase is Phase.DECODE:
        known = {r.scenario.batch: r.gemm.compute_bound for r in rows}
        crossover = crossover_batch(evaluator, base, known=known, max_batch=max_batch)
    return Sweep(axis, base, rows, crossover, evaluator.spec.name)


def crossover_batch(
    evaluator: Evaluator,
    base: Scenario,
    *,
    known: dict[int, bool] | None = None,
    max_batch: int = MAX_BATCH,
) -> Crossover:
    """The smallest batch at which `base`'s GEMMs turn compute-bound (module docstring)."""
    seen: dict[int, GemmBalance] = {}

    def balance(batch: int) -> GemmBalance:
        if batch not in seen:
            seen[batch] = step_figures(evaluator, base.at(batch=batch)).gemm
        return seen[batch]

    def bound(batch: int) -> bool:
        if known and batch in known and batch not in seen:
            return known[batch]
        return balance(batch).compute_bound

    solved = _solve(balance)
    if solved is not None and (solved == 1 or not bound(solved - 1)) and bound(solved):
        hi: int | None = solved
    elif solved is None and _never(balance):
        hi = None
    else:
        hi = _bisect(bound, known or {}, max_batch)
    at = hi if hi is not None else max_batch
    step = step_figures(evaluator, base.at(batch=at))
    gemms = step.gemm
    fits = step.peak_memory_bytes <= step.capacity_bytes
    return Crossover(
        batch=hi,
        searched_to=at,
        peak_key=gemms.peak_key,
        ridge_point=gemms.ridge_point,
        gemm_intensity=gemms.intensity,
        fits=fits if hi is not None else None,
    )


_PROBES = (1, 2, 4)


def _lines(balance) -> tuple[float, float, float, float] | None:  # noqa: ANN001
    """(c0, c1, m0, m1): the GEMMs' compute and memory time as c0 + c1*B and m0 + m1*B, when
    they are straight lines through the probes (to 1e-9), else None."""
    (b1, g1), (b2, g2), (b3, g3) = [(b, balance(b)) for b in _PROBES]
    if not g1.flops:
        return None
    c1 = (g2.compute_time_s - g1.compute_time_s) / (b2 - b1)
    m1 = (g2.memory_time_s - g1.memory_time_s) / (b2 - b1)
    c0, m0 = g1.compute_time_s - c1 * b1, g1.memory_time_s - m1 * b1
    for got, want in ((g3.compute_time_s, c0 + c1 * b3), (g3.memory_time_s, m0 + m1 * b3)):
        if abs(got - want) > 1e-9 * max(abs(got), 1e-30):
            return None
    return c0, c1, m0, m1


def _solve(balance) -> int | None:  # noqa: ANN001
    """The crossover from the straight lines: the smallest B >= 1 with c0 + c1 B >= m0 + m1 B
    (checked by the caller with real loads); None when the lines never cross or are not lines."""
    lines = _lines(balance)
    if lines is None:
        return None
    c0, c1, m0, m1 = lines
    if c0 + c1 >= m0 + m1:
        return 1
    if c1 <= m1:
        return None
    return max(1, math.ceil((m0 - c0) / (c1 - m1) - 1e-9))


def _never(balance) -> bool:  # noqa: ANN001
    """The GEMMs' lines exist and never cross: memory time grows at least as fast as compute."""
    lines = _lines(balance)
    return lines is not None and lines[1] <= lines[3] and lines[0] < lines[2]


def _bisect(bound, known: dict[int, bool], max_batch: int) -> int | None:  # noqa: ANN001
    """Doubling then bisection over whole batches; None when not compute-bound by max_batch."""
    above = sorted(b for b, v in known.items() if v)
    hi = above[0] if above else None
    lo = max((b for b, v in known.items() if not v and (hi is None or b < hi)), default=0)
    while hi is None:
        probe = max(2 * lo, 1)
        if probe > max_batch:
            return None
        if bound(probe):
            hi = probe
        else:
            lo = probe
    while hi - lo > 1:  # invariant: lo not compute-bound (or 0), hi compute-bound
        mid = (lo + hi) // 2
        if bound(mid):
            hi = mid
        else:
            lo = mid
    return hi


__all__ = [
    "AXES", "MAX_BATCH", "Crossover", "GemmBalance", "Sweep", "SweepRow", "crossover_batch",
    "gemm_balance", "parse_sweep", "row", "sweep",
]  # fmt: skip
