"""The roofline chart of a report as plain SVG coordinates (the template prints static markup).

Log-log axes: x = intensity in FLOP/B, y = attained FLOP/s = FLOPs / predicted time. A node is
placed when it does arithmetic and moves bytes; nodes that land on one spot (identical layers:
same coordinates, radius and family) share one circle, whose hover text counts them. The
`limit` slowest spots are drawn as circles with hover text and a link to the node's row; the
rest are binned into 3-px cells and drawn as one small dot per (cell, op family). Both bound the
SVG for graphs of many thousands of nodes (bench/html_large.py measures it).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from memlint import units
from memlint.core.report import NodeResult, Report
from memlint.report.families import css_key, family_of, node_anchors, plural, qualified

CHART_POINTS = 400  # nodes drawn individually on the roofline chart


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Roof:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    label_x: float
    label_y: float
    main: bool  # the peak that bounds most of the model's FLOPs


@dataclass(frozen=True)
class Point:
    cx: float
    cy: float
    r: float
    family: str  # CSS class suffix
    title: str
    anchor: str  # "" for an aggregated dot


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    plot_width: float
    plot_height: float
    mid_x: float
    mid_y: float
    x_title_y: float
    y_title_x: float
    text_y: float  # baseline of the labels along the bottom of the plot
    left_text_x: float
    right_text_x: float
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    roofs: tuple[Roof, ...]
    memory_line: str  # SVG polyline points of the bandwidth diagonal
    memory_label: str
    memory_label_x: float
    memory_label_y: float
    memory_label_angle: float
    ridge_x: float
    ridge_width: float  # of the memory-bound region, left of the ridge
    ridge_label: str
    ridge_label_x: float
    ridge_label_y: float
    dots: tuple[Point, ...]  # nodes beyond the drawn ones, aggregated per cell
    points: tuple[Point, ...]
    note: str


_W, _H = 760, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 84.0, 736.0, 24.0, 392.0
_R_MIN, _R_MAX = 2.5, 14.0
_DOT_R, _CELL = 1.4, 3.0
_LABEL_GAP = 13.0


def on_chart(node: NodeResult) -> bool:
    """A node the chart places: it does arithmetic, moves bytes, and takes time."""
    return node.cost.flops > 0 and node.cost.bytes_moved > 0 and node.timing.predicted_latency_s > 0


def _r(value: float) -> float:
    return round(value, 1)


def _decades(low: float, high: float, max_span: int) -> tuple[int, int]:
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if hi <= lo:
        hi = lo + 1
    return max(lo, hi - max_span), hi


def _tick_label(exponent: int, unit: str) -> str:
    value = 10.0**exponent
    if unit:
        return units.si(value, unit)
    if exponent < 0:
        return f"{value:.{-exponent}f}"
    return units.si(value, "").replace(" ", "")


def _point_title(nodes: list[tuple[int, NodeResult]]) -> str:
    n = nodes[0][1]
    attained = n.cost.flops / n.timing.predicted_latency_s
    title = (
        f"{n.name}\n{qualified(n)} ({family_of(n)}), {n.timing.bound.value}-bound\n"
        f"intensity {units.intensity(n.cost.intensity)}, {units.si(attained, 'FLOP/s')} attained\n"
        f"{units.seconds(n.timing.predicted_latency_s)} predicted"
    )
    if len(nodes) > 1:
        title += f" (each of {len(nodes):,} nodes at this spot)"
    return title


def roofline_chart(
    report: Report, anchors: Sequence[str] | None = None, *, limit: int = CHART_POINTS
) -> Chart:
    spec = report.hardware
    bandwidth = spec.memory_bandwidth_bytes_per_s
    anchors = anchors or node_anchors(report.nodes)
    placed = [(i, n) for i, n in enumerate(report.nodes) if on_chart(n)]
    peaks: dict[float, list[str]] = defaultdict(list)
    for key, value in sorted(spec.peak_flops_per_s.items()):
        peaks[value].append(key)
    ridges = [p / bandwidth for p in peaks]
    xs = [n.cost.intensity for _, n in placed] + ridges
    ys = [n.cost.flops / n.timing.predicted_latency_s for _, n in placed]
    top_peak = max(peaks)
    x_lo, x_hi = _decades(min(xs) / 2, max(xs) * 8, 9)
    y_lo, y_hi = _decades(min(ys + [top_peak / 1e3]) / 2, top_peak * 1.5, 9)

    def px(x: float) -> float:
        t = (math.log10(max(x, 1e-300)) - x_lo) / (x_hi - x_lo)
        return _r(_LEFT + min(max(t, 0.0), 1.0) * (_RIGHT - _LEFT))

    def py(y: float) -> float:
        t = (math.log10(max(y, 1e-300)) - y_lo) / (y_hi - y_lo)
        return _r(_BOTTOM - min(max(t, 0.0), 1.0) * (_BOTTOM - _TOP))

    roofs = []
    last_label_y = -math.inf
    for value in sorted(peaks, reverse=True):
        ridge = value / bandwidth
        label_y = max(py(value) - 5, last_label_y + _LABEL_GAP)
        last_label_y = label_y
        roofs.append(
            Roof(
                px(ridge),
                py(value),
                _RIGHT,
                py(value),
                f"{', '.join(peaks[value])}  {units.si(value, 'FLOP/s')}",
                _RIGHT - 4,
                _r(label_y),
                main=report.summary.ridge_peak_key in peaks[value],
            )
        )
    x_start = max(10.0**x_lo, 10.0**y_lo / bandwidth)
    x_end = top_peak / bandwidth
    (x1, y1), (x2, y2) = (px(x_start), py(bandwidth * x_start)), (px(x_end), py(top_peak))
    angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
    lx, ly = x1 + 0.12 * (x2 - x1), y1 + 0.12 * (y2 - y1)
    ridge_x = px(report.summary.ridge_point)

    ranked = sorted(placed, key=lambda item: (-item[1].timing.predicted_latency_s, item[0]))
    slowest = ranked[0][1].timing.predicted_latency_s if ranked else 1.0
    spots: dict[tuple[float, float, float, str], list[tuple[int, NodeResult]]] = {}
    for i, n in ranked:  # nodes drawn at one spot (identical layers) share one circle
        attained = n.cost.flops / n.timing.predicted_latency_s
        radius = _R_MIN + (_R_MAX - _R_MIN) * math.sqrt(n.timing.predicted_latency_s / slowest)
        key = (px(n.cost.intensity), py(attained), _r(radius), css_key(family_of(n)))
        spots.setdefault(key, []).append((i, n))
    keys = list(spots)
    points = tuple(
        Point(*key, _point_title(spots[key]), anchors[spots[key][0][0]]) for key in keys[:limit]
    )
    cells: Counter[tuple[float, float, str]] = Counter()
    for x, y, _, family in keys[limit:]:
        cell = (_r(round(x / _CELL) * _CELL), _r(round(y / _CELL) * _CELL), family)
        cells[cell] += len(spots[(x, y, _, family)])
    dots = tuple(
        Point(
            x,
            y,
            _DOT_R,
            family,
            f"{plural(count, 'smaller node')} ({family.replace('-', ' ')})",
            "",
        )
        for (x, y, family), count in sorted(cells.items())
    )
    rest = sum(len(spots[key]) for key in keys[limit:])
    note = f"{plural(len(placed), 'node')} with arithmetic and bytes placed"
    if len(keys) < len(placed):
        note += " (nodes at one spot share a circle)"
    if rest:
        note += f"; the {len(points):,} slowest spots drawn as circles, {rest:,} more nodes as dots"
    total = report.summary.predicted_latency_s
    off_chart = total - sum(n.timing.predicted_latency_s for _, n in placed)
    if total and off_chart > 1e-3 * total:
        note += (
            f". Nodes without arithmetic (copies, gathers; {units.percent(off_chart / total)} "
            "of predicted time) have no place on a roofline"
        )
    return Chart(
        width=_W,
        height=_H,
        left=_LEFT,
        top=_TOP,
        right=_RIGHT,
        bottom=_BOTTOM,
        plot_width=_RIGHT - _LEFT,
        plot_height=_BOTTOM - _TOP,
        mid_x=_r((_LEFT + _RIGHT) / 2),
        mid_y=_r((_TOP + _BOTTOM) / 2),
        x_title_y=_H - 8,
        y_title_x=14,
        text_y=_BOTTOM - 8,
        left_text_x=_LEFT + 8,
        right_text_x=_RIGHT - 8,
        x_ticks=tuple(
            Tick(px(10.0**e), _tick_label(e, ""), px(10.0**e), _BOTTOM + 16)
            for e in range(x_lo, x_hi + 1)
        ),
        y_ticks=tuple(
            Tick(py(10.0**e), _tick_label(e, "FLOP/s"), _LEFT - 6, _r(py(10.0**e) + 4))
            for e in range(y_lo, y_hi + 1)
        ),
        roofs=tuple(roofs),
        memory_line=f"{x1},{y1} {x2},{y2}",
        memory_label=f"memory {units.si(bandwidth, 'B/s')}",
        memory_label_x=_r(lx),
        memory_label_y=_r(ly - 6),
        memory_label_angle=_r(angle),
        ridge_x=ridge_x,
        ridge_width=_r(ridge_x - _LEFT),
        ridge_label_x=_r(ridge_x - 5),
        ridge_label_y=_BOTTOM - 24,
        ridge_label=f"ridge {units.intensity(report.summary.ridge_point)}",
        dots=dots,
        points=points,
        note=note + ".",
    )
