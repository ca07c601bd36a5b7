"""The roofline chart of a report as plain SVG coordinates (the template prints static markup).

Log-log axes: x = intensity in FLOP/B, y = attained FLOP/s = FLOPs / predicted time. A node is
placed when it does arithmetic and moves bytes; nodes that land on one spot (identical layers:
same coordinates and family) share one circle whose area is their summed share of predicted
time, and whose hover text counts them. Circles of different spots that would overlap (a decode
step's matmuls all sit at one intensity) are spread around their true spot on a golden-angle
spiral, deterministically, each with a thin line to where it belongs. The `limit` slowest spots
are drawn as circles with hover text and a link to the node's row; the rest are binned into
3-px cells and drawn as one small dot per (cell, op family). Both bound the SVG for graphs of
many thousands of nodes (bench/html_large.py measures it).

Nodes that move bytes without arithmetic (copies: Concat, Transpose, Gather, Cast) have no
place on a roofline (intensity 0); they are drawn in a strip of their own under the plot,
largest first, with the same area scale, so a decode step's KV-cache copies are seen.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from memlint import units
from memlint.core.report import NodeResult, Report
from memlint.findings import layer_pattern
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
    x0: float = 0.0  # where the point belongs, when it was moved off it to be seen
    y0: float = 0.0
    moved: bool = False


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
    # the strip of nodes without arithmetic (copies), under the plot; strip_height 0: none
    strip: tuple[Point, ...] = ()
    strip_top: float = 0.0
    strip_height: float = 0.0
    strip_mid: float = 0.0
    strip_title: str = ""
    strip_title_y: float = 0.0


_W, _H = 760, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 84.0, 736.0, 24.0, 392.0
_R_MIN, _R_MAX = 2.5, 14.0
_DOT_R, _CELL = 1.4, 3.0
_LABEL_GAP = 13.0
_GOLDEN = math.pi * (3 - math.sqrt(5))  # golden angle: spiral offsets that never line up
_SPIRAL_TRIES = 120  # positions tried around a spot before a circle stays where it belongs
_GAP = 1.0  # px between spread circles
_STRIP_GAP, _STRIP_H = 64.0, 2 * _R_MAX + 12  # the copies strip: below the x-axis title


def on_chart(node: NodeResult) -> bool:
    """A node the chart places: it does arithmetic, moves bytes, and takes time."""
    return node.cost.flops > 0 and node.cost.bytes_moved > 0 and node.timing.predicted_latency_s > 0


def in_strip(node: NodeResult) -> bool:
    """A node of the copies strip: it moves bytes in time without arithmetic."""
    return (node.cost.flops == 0 and node.cost.bytes_moved > 0
            and node.timing.predicted_latency_s > 0)


def _spread(circles: list[tuple[float, float, float]], box: tuple[float, float, float, float]
            ) -> list[tuple[float, float]]:
    """Centres for circles (x, y, r), largest first, that do not overlap: each at its own spot
    when free, else at the first free place on a golden-angle spiral around it (inside `box`:
    left, top, right, bottom); one with no free place near stays on its spot."""
    cell = 2 * _R_MAX + _GAP
    grid: dict[tuple[int, int], list[tuple[float, float, float]]] = defaultdict(list)
    left, top, right, bottom = box
    out = []

    def free(x: float, y: float, r: float) -> bool:
        gx, gy = int(x // cell), int(y // cell)
        return all(
            (x - ox) ** 2 + (y - oy) ** 2 >= (r + orad + _GAP) ** 2
            for i in (gx - 1, gx, gx + 1) for j in (gy - 1, gy, gy + 1)
            for ox, oy, orad in grid[(i, j)]
        )

    for x0, y0, r in circles:
        x, y = x0, y0
        if not free(x, y, r):
            step = r + _GAP
            for k in range(1, _SPIRAL_TRIES + 1):
                distance = step * math.sqrt(k) * 1.2
                cx = x0 + distance * math.cos(k * _GOLDEN)
                cy = y0 + distance * math.sin(k * _GOLDEN)
                if left + r <= cx <= right - r and top + r <= cy <= bottom - r and free(cx, cy, r):
                    x, y = _r(cx), _r(cy)
                    break
        grid[(int(x // cell), int(y // cell))].append((x, y, r))
        out.append((x, y))
    return out


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


def _names(nodes: list[tuple[int, NodeResult]]) -> str:
    """The node's name, or the patterns of the nodes at one spot ("x12 /h.*/mlp/c_fc/MatMul")."""
    if len(nodes) == 1:
        return nodes[0][1].name
    patterns = Counter(layer_pattern(n.name).replace("#", "*") for _, n in nodes)
    shown = [f"x{count} {pattern}" if count > 1 else pattern
             for pattern, count in sorted(patterns.items(), key=lambda item: (-item[1], item[0]))]
    return "\n".join(shown[:4] + ([f"and {len(shown) - 4} more"] if len(shown) > 4 else []))


def _together(nodes: list[tuple[int, NodeResult]], total_s: float) -> str:
    time_s = sum(n.timing.predicted_latency_s for _, n in nodes)
    share = f", {units.percent(time_s / total_s)} of predicted" if total_s else ""
    return f"together {units.seconds(time_s)}{share}"


def _each(nodes: list[tuple[int, NodeResult]], total_s: float, what: str) -> str:
    """'129 ns predicted', or for several nodes '4 nodes at this spot, 16.1 ns to 129 ns each;
    together 273 ns, 28.0% of predicted'."""
    times = sorted({n.timing.predicted_latency_s for _, n in nodes})
    each = units.seconds(times[0]) if len(times) == 1 else (
        f"{units.seconds(times[0])} to {units.seconds(times[-1])}")
    if len(nodes) == 1:
        return f"{each} predicted"
    return f"{len(nodes):,} nodes {what}, {each} each; {_together(nodes, total_s)}"


def _point_title(nodes: list[tuple[int, NodeResult]], total_s: float = 0.0) -> str:
    n = nodes[0][1]
    attained = n.cost.flops / n.timing.predicted_latency_s
    return (
        f"{_names(nodes)}\n{qualified(n)} ({family_of(n)}), {n.timing.bound.value}-bound\n"
        f"intensity {units.intensity(n.cost.intensity)}, {units.si(attained, 'FLOP/s')} attained\n"
        + _each(nodes, total_s, "at this spot")
    )


def _strip_title(nodes: list[tuple[int, NodeResult]], total_s: float) -> str:
    n = nodes[0][1]
    return (f"{_names(nodes)}\n{qualified(n)} ({family_of(n)}), no arithmetic, "
            f"{units.nbytes(n.cost.bytes_moved)} moved\n" + _each(nodes, total_s, "alike"))


def _copy_groups(report: Report) -> list[tuple[float, list[tuple[int, NodeResult]]]]:
    """The strip's circles, largest first: nodes without arithmetic, those of identical layers
    (same name pattern, op and bytes) as one, with their summed predicted time."""
    groups: dict[tuple[str, str, int], list[tuple[int, NodeResult]]] = {}
    for i, n in enumerate(report.nodes):
        if in_strip(n):
            key = (layer_pattern(n.name), qualified(n), n.cost.bytes_moved)
            groups.setdefault(key, []).append((i, n))
    timed = [(sum(n.timing.predicted_latency_s for _, n in members), members)
             for members in groups.values()]
    return sorted(timed, key=lambda item: (-item[0], item[1][0][0]))


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

    total = report.summary.predicted_latency_s
    ranked = sorted(placed, key=lambda item: (-item[1].timing.predicted_latency_s, item[0]))
    spots: dict[tuple[float, float, str], list[tuple[int, NodeResult]]] = {}
    for i, n in ranked:  # nodes drawn at one spot (identical layers) share one circle
        attained = n.cost.flops / n.timing.predicted_latency_s
        key = (px(n.cost.intensity), py(attained), css_key(family_of(n)))
        spots.setdefault(key, []).append((i, n))
    copies = _copy_groups(report)
    spot_s = {key: sum(n.timing.predicted_latency_s for _, n in members)
              for key, members in spots.items()}
    largest = max([*spot_s.values(), *(t for t, _ in copies)], default=1.0) or 1.0

    def radius(time_s: float) -> float:  # area by share of predicted time
        return _r(_R_MIN + (_R_MAX - _R_MIN) * math.sqrt(time_s / largest))

    keys = sorted(spots, key=lambda k: (-spot_s[k], spots[k][0][0]))
    drawn = keys[:limit]
    circles = [(k[0], k[1], radius(spot_s[k])) for k in drawn]
    centres = _spread(circles, (_LEFT, _TOP, _RIGHT, _BOTTOM))
    points = tuple(
        Point(cx, cy, r, k[2], _point_title(spots[k], total), anchors[spots[k][0][0]],
              x0, y0, (cx, cy) != (x0, y0))
        for k, (x0, y0, r), (cx, cy) in zip(drawn, circles, centres)
    )
    cells: Counter[tuple[float, float, str]] = Counter()
    for x, y, family in keys[limit:]:
        cell = (_r(round(x / _CELL) * _CELL), _r(round(y / _CELL) * _CELL), family)
        cells[cell] += len(spots[(x, y, family)])
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
    note = f"{plural(len(placed), 'node')} with arithmetic and bytes placed; area is predicted time"
    if len(keys) < len(placed):
        note += " (nodes at one spot share a circle)"
    if any(p.moved for p in points):
        note += "; circles that would hide each other are moved aside, a line to their spot"
    if rest:
        note += f"; the {len(points):,} slowest spots drawn as circles, {rest:,} more nodes as dots"
    strip_top = _BOTTOM + _STRIP_GAP
    strip: list[Point] = []
    x = _LEFT + 8
    for time_s, members in copies:
        r = radius(time_s)
        if x + 2 * r > _RIGHT - 8:
            break
        strip.append(Point(_r(x + r), _r(strip_top + _STRIP_H / 2), r,
                           css_key(family_of(members[0][1])), _strip_title(members, total),
                           anchors[members[0][0]]))
        x += 2 * r + 3
    copied = [n for _, members in copies for _, n in members]
    copy_s = sum(n.timing.predicted_latency_s for n in copied)
    if copied:
        note += (f". {plural(len(copied), 'node')} without arithmetic (copies, gathers; "
                 f"{units.percent(copy_s / total) if total else '0%'} of predicted time) in the "
                 "strip below")
        if len(strip) < len(copies):
            hidden = sum(len(m) for _, m in copies[len(strip):])
            note += f", the {plural(hidden, 'smallest')} left out"
    strip_title = (f"No arithmetic (0 FLOP/B): {plural(len(copied), 'node')}, "
                   f"{units.seconds(copy_s)} predicted; largest first") if copied else ""
    return Chart(
        width=_W,
        height=int(strip_top + _STRIP_H + 8) if strip else _H,
        left=_LEFT,
        top=_TOP,
        right=_RIGHT,
        bottom=_BOTTOM,
        plot_width=_RIGHT - _LEFT,
        plot_height=_BOTTOM - _TOP,
        mid_x=_r((_LEFT + _RIGHT) / 2),
        mid_y=_r((_TOP + _BOTTOM) / 2),
        x_title_y=_H - 8,
        strip=tuple(strip),
        strip_top=strip_top if strip else 0.0,
        strip_height=_STRIP_H if strip else 0.0,
        strip_mid=_r(strip_top + _STRIP_H / 2),
        strip_title=strip_title,
        strip_title_y=strip_top - 6,
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
