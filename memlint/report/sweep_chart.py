"""An LLM sweep as a small SVG chart (coordinates only; the HTML template prints the markup).

x: the swept value (batch, context or prompt), log scale. Two series on log axes: tokens/s
(left axis) and arithmetic intensity (right axis, with the ridge point as a dashed line), so the
batch at which decode turns compute-bound reads where intensity crosses the ridge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memlint import units

_W, _H = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 70.0, 570.0, 20.0, 210.0


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class AxisTick:
    pos: float
    label: str


@dataclass(frozen=True)
class SweepChart:
    title: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    x_ticks: tuple[AxisTick, ...]
    rate_ticks: tuple[AxisTick, ...]  # left axis: tokens/s
    intensity_ticks: tuple[AxisTick, ...]  # right axis: FLOP/B
    rate_line: str  # SVG polyline points
    rate_marks: tuple[Mark, ...]
    intensity_line: str
    intensity_marks: tuple[Mark, ...]
    ridge_y: float | None  # the ridge point on the intensity axis, when inside it
    ridge_label: str
    crossover_x: float | None  # the crossover batch, when inside the x range
    crossover_label: str


def _log_axis(values: list[float], low_pad: float = 1.0, high_pad: float = 1.0):  # noqa: ANN202
    lo = math.floor(math.log10(min(values) / low_pad))
    hi = math.ceil(math.log10(max(values) * high_pad))
    return lo, max(hi, lo + 1)


def _scale(value: float, lo: int, hi: int, start: float, end: float) -> float:
    t = (math.log10(max(value, 1e-300)) - lo) / (hi - lo)
    return round(start + min(max(t, 0.0), 1.0) * (end - start), 1)


def _points(marks: tuple[Mark, ...]) -> str:
    return " ".join(f"{m.x},{m.y}" for m in marks)


def sweep_chart(sweep) -> SweepChart | None:  # noqa: ANN001 - memlint.llm.sweep.Sweep
    """The chart of one sweep; None when it has fewer than two points with numbers."""
    field = {"batch": "batch", "context": "context", "prompt": "new_tokens"}[sweep.axis]
    rows = [r for r in sweep.rows if r.latency_s > 0 and r.intensity and getattr(r.scenario, field)]
    if len(rows) < 2:
        return None
    xs = [float(getattr(r.scenario, field)) for r in rows]
    rates = [r.tokens_per_s for r in rows]
    intensities = [r.intensity for r in rows]
    ridge = sweep.crossover.ridge_point if sweep.crossover is not None else None
    x_lo, x_hi = _log_axis(xs)
    r_lo, r_hi = _log_axis(rates)
    i_lo, i_hi = _log_axis(intensities + ([ridge] if ridge else []))

    def px(x: float) -> float:
        return _scale(x, x_lo, x_hi, _LEFT, _RIGHT)

    def ticks(lo: int, hi: int, start: float, end: float, unit: str) -> tuple[AxisTick, ...]:
        return tuple(AxisTick(_scale(10.0 ** e, lo, hi, start, end), units.si(10.0 ** e, unit))
                     for e in range(lo, hi + 1))

    rate_marks = tuple(
        Mark(px(x), _scale(v, r_lo, r_hi, _BOTTOM, _TOP), f"{x:g}: {units.si(v, 'tokens/s')}")
        for x, v in zip(xs, rates)
    )
    intensity_marks = tuple(
        Mark(px(x), _scale(v, i_lo, i_hi, _BOTTOM, _TOP), f"{x:g}: {units.intensity(v)}")
        for x, v in zip(xs, intensities)
    )
    crossover = sweep.crossover.batch if sweep.crossover is not None else None
    in_x = crossover is not None and sweep.axis == "batch" and xs[0] <= crossover <= xs[-1] * 8
    return SweepChart(
        title=f"Sweep over {sweep.axis}",
        width=_W, height=_H, left=_LEFT, right=_RIGHT, top=_TOP, bottom=_BOTTOM,
        x_ticks=tuple(AxisTick(px(10.0 ** e), f"{10 ** e:,}") for e in range(x_lo, x_hi + 1)),
        rate_ticks=ticks(r_lo, r_hi, _BOTTOM, _TOP, "tok/s"),
        intensity_ticks=ticks(i_lo, i_hi, _BOTTOM, _TOP, "FLOP/B"),
        rate_line=_points(rate_marks),
        rate_marks=rate_marks,
        intensity_line=_points(intensity_marks),
        intensity_marks=intensity_marks,
        ridge_y=None if ridge is None else _scale(ridge, i_lo, i_hi, _BOTTOM, _TOP),
        ridge_label="" if ridge is None else f"ridge {units.intensity(ridge)}",
        crossover_x=px(crossover) if in_x else None,
        crossover_label=f"compute-bound from batch {crossover:,}" if in_x else "",
    )
