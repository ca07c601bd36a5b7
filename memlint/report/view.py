"""The view model of a Report: what the HTML and Markdown templates print.

Every number is formatted here (memlint.units) and every list is already sorted, so templates
only loop and print (STYLE.md), and two renders of one report are byte-identical.

Two splits of the predicted time are shown:

* by op type: the summed time of each op type, the largest `top_ops` named and the rest as one
  "other" bar;
* by byte kind: a memory-bound node's time (kernel overhead included) is split over weights,
  activations and KV cache in proportion to the bytes of each kind it reads and writes; a
  compute-bound node's time goes whole to a "compute" bucket, since more bandwidth would not
  shorten it. The buckets add up to the predicted latency.

The roofline chart is computed here as plain SVG coordinates (log-log: x = intensity in FLOP/B,
y = attained FLOP/s = FLOPs / predicted time), so the template prints static markup. A node is
placed when it does arithmetic and moves bytes; nodes that land on one spot (identical layers:
same coordinates, radius and family) share one circle, whose hover text counts them. The
`chart_points` slowest spots are drawn as circles with hover text and a link to the node's row;
the rest are binned into 3-px cells and drawn as one small dot per (cell, op family). Both
bound the SVG for graphs of many thousands of nodes: 300 identical blocks (6,000 nodes) draw
8 circles; bench/html_large.py measures it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memlint import units
from memlint._version import __version__
from memlint.core.report import CONVENTIONS, NodeResult, Report
from memlint.findings import Finding, Metric
from memlint.ir import SourceLocation
from memlint.report.blocks_view import BLOCK_HEADERS, block_rows, what_if_line
from memlint.report.chart import CHART_POINTS, Chart, in_strip, on_chart, roofline_chart
from memlint.report.families import (  # noqa: F401 - family_of, css_key: part of the view API
    FAMILIES,
    css_key,
    family_of,
    node_anchors,
    plural,
    qualified,
)
from memlint.report.labels import evidence_label
from memlint.report.lines import (  # noqa: F401 - the shared lines are part of the view API
    LayerGroup,
    as_written_text,
    best_fix,
    combined_saving,
    fused_line,
    fused_texts,
    inert,
    layer_groups,
    memory_bound_of,
    natural_key,
    pct,
    short_fix,
)
from memlint.roofline import Bound

TOP_OPS = 8  # op types named in the time-by-op chart; the rest are "other"
FINDING_NODES_SHOWN = 8  # node links shown before "and N more" in a finding

BYTE_KINDS = (("weights", "weights"), ("activations", "activations"), ("kv_cache", "KV cache"))


# ---------------------------------------------------------------------------------------------
# The view dataclasses


@dataclass(frozen=True)
class DimView:
    name: str
    value: str
    assumed: bool
    source: str = ""  # the export's file and key that gave it ("config.json image_size")


@dataclass(frozen=True)
class Header:
    title: str  # the model file's name
    model_source: str
    model_format: str
    producer: str
    hardware: str  # display name
    hardware_name: str
    hardware_detail: str  # bandwidth, capacity
    dims: tuple[DimView, ...]
    assumed_dims: tuple[str, ...]
    memlint_version: str
    conventions: tuple[str, ...]
    tf32: str  # "on" / "off"
    timestamp: str | None
    config_files: tuple[str, ...] = ()  # the configuration files applied, and what each gave


@dataclass(frozen=True)
class Part:
    """One slice of a stacked bar: a label, its formatted value and its width in percent."""

    label: str
    value: str
    width: str
    key: str  # CSS class suffix


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    detail: str
    tone: str = "neutral"  # neutral / good / warn / bad
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Bar:
    label: str
    time: str
    share: str
    width: str  # percent of the longest bar
    count: str  # "12 nodes"
    key: str  # CSS class suffix (family or byte kind)


@dataclass(frozen=True)
class MetricView:
    name: str  # the evidence key, as JSON and SARIF have it
    value: str
    label: str = ""  # what a person reads (memlint.report.labels)


@dataclass(frozen=True)
class FixView:
    text: str
    saving: str  # "" when not estimated


@dataclass(frozen=True)
class NodeLink:
    name: str
    anchor: str  # "" when the report has no row of that name


@dataclass(frozen=True)
class FindingView:
    rank: int
    anchor: str
    code: str
    name: str
    severity: str
    message: str
    nodes_head: tuple[NodeLink, ...]
    nodes_tail: tuple[NodeLink, ...]
    node_count: str  # "14 nodes"
    where: str  # the group text, or the first few node names
    count: int
    group: str
    time: str
    share: str
    saving: str
    evidence: tuple[MetricView, ...]
    fixes: tuple[FixView, ...]
    best_fix: FixView | None
    source: str
    estimate: str = ""  # "as written only" when the fused estimate already assumes the fix


@dataclass(frozen=True)
class SuppressedView:
    code: str
    name: str
    severity: str
    nodes: str
    message: str
    pattern: str
    reason: str


@dataclass(frozen=True)
class UnusedView:
    code: str
    nodes: str
    reason: str


@dataclass(frozen=True)
class NodeRow:
    index: int  # position in the graph (topological order)
    name: str
    name_parts: tuple[str, ...]  # the name cut after each "/", where a long name may wrap
    anchor: str
    op: str
    family: str
    flops: str
    bytes: str
    bytes_weights: str
    bytes_activations: str
    bytes_kv: str
    intensity: str
    bound: str
    time: str
    share: str
    share_width: str  # percent of the slowest node, for a bar in the share cell
    status: str
    note: str
    source: str
    # raw values, for sorting in the browser
    flops_value: int
    bytes_value: int
    weights_value: int
    activations_value: int
    kv_value: int
    intensity_value: float | None
    time_value: float


@dataclass(frozen=True)
class ReportView:
    header: Header
    cards: tuple[Card, ...]
    coverage_notes: tuple[str, ...]
    chart: Chart
    chart_families: tuple[tuple[str, str], ...]  # (label, CSS key) of families on the chart
    families: tuple[tuple[str, str], ...]  # (label, CSS key) of the families of all nodes
    time_by_op: tuple[Bar, ...]
    time_by_kind: tuple[Bar, ...]
    findings: tuple[FindingView, ...]
    findings_tally: str
    combined_saving: str  # what the fixes save together, each node once ("" without findings)
    hidden_as_noise: int
    noise_note: str
    suppressed: tuple[SuppressedView, ...]
    unused: tuple[UnusedView, ...]
    nodes: tuple[NodeRow, ...]  # graph order
    nodes_by_time: tuple[NodeRow, ...]  # slowest first (ties by graph order)
    llm: tuple = ()  # memlint.report.llm_view.Block: the LLM sections (decoders with a KV cache)
    llm_charts: tuple = ()  # memlint.report.sweep_chart.SweepChart: one per sweep
    sections_title: str = ""  # the heading over `llm`: LLM serving and/or the measured run
    blocks: tuple = ()  # memlint.report.blocks_view.BlockRow: summary.by_block
    block_headers: tuple[str, ...] = ()
    what_if: str = ""  # "totals are a what-if: ..." ("" without one)


# ---------------------------------------------------------------------------------------------
# Building the view


def build(
    report: Report,
    *,
    timestamp: str | None = None,
    top_ops: int = TOP_OPS,
    chart_points: int = CHART_POINTS,
) -> ReportView:
    """The view of `report`; `timestamp` is printed as given (None: no time in the output)."""
    anchors = node_anchors(report.nodes)
    total, slowest = report.summary.predicted_latency_s, _slowest(report)
    rows = tuple(_node_row(i, n, anchors[i], total, slowest) for i, n in enumerate(report.nodes))
    by_time = tuple(sorted(rows, key=lambda r: (-r.time_value, r.index)))
    anchor_of = {}
    for row in rows:
        anchor_of.setdefault(row.name, row.anchor)
    charted = {family_of(n) for n in report.nodes if on_chart(n) or in_strip(n)}
    present = {family_of(n) for n in report.nodes}
    return ReportView(
        llm=llm_blocks(report),
        llm_charts=llm_charts(report),
        sections_title=" and ".join(
            t for t, present in (("LLM serving", report.llm is not None and report.llm.serving
                                  is not None), ("Measured run", report.measurement is not None))
            if present
        ) or "Details",
        header=_header(report, timestamp),
        cards=_cards(report),
        coverage_notes=_coverage_notes(report),
        chart=roofline_chart(report, anchors, limit=chart_points),
        chart_families=tuple((f, css_key(f)) for f in FAMILIES if f in charted),
        families=tuple((f, css_key(f)) for f in FAMILIES if f in present),
        time_by_op=_time_by_op(report, top_ops),
        time_by_kind=_time_by_kind(report),
        findings=tuple(_finding(i + 1, f, anchor_of) for i, f in enumerate(report.findings)),
        findings_tally=findings_tally(report.findings),
        combined_saving=combined_saving(report),
        hidden_as_noise=report.hidden_as_noise,
        noise_note=(
            f"{plural(report.hidden_as_noise, 'finding')} below the noise thresholds hidden "
            "(--min-share / --min-saving-s to see them)."
            if report.hidden_as_noise
            else ""
        ),
        suppressed=tuple(
            SuppressedView(
                s.finding.code,
                s.finding.name,
                s.finding.severity.value,
                _nodes_text(s.finding.nodes),
                s.finding.message,
                s.pattern,
                s.reason,
            )
            for s in report.suppressed
        ),
        unused=tuple(UnusedView(u.code, u.nodes, u.reason) for u in report.unused_suppressions),
        nodes=rows,
        nodes_by_time=by_time,
        blocks=block_rows(report),
        block_headers=BLOCK_HEADERS,
        what_if=what_if_line(report),
    )


def llm_blocks(report: Report) -> tuple:
    """The LLM sections as titled rows or tables (memlint.report.llm_view), or () otherwise."""
    from memlint.report.sections import blocks

    return blocks(report)


def llm_charts(report: Report) -> tuple:
    """An SVG chart per LLM sweep (memlint.report.sweep_chart)."""
    if report.llm is None:
        return ()
    from memlint.report.sweep_chart import sweep_chart

    charts = (sweep_chart(s) for s in report.llm.sweeps)
    return tuple(c for c in charts if c is not None)


def findings_tally(findings: Sequence[Finding]) -> str:
    counts = Counter(f.severity.value for f in findings)
    parts = [f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]]
    return plural(len(findings), "finding") + (f" ({', '.join(parts)})" if parts else "")


def evidence_value(metric: Metric) -> str:
    """A finding's measured number, formatted by its unit."""
    return units.by_unit(metric.value, metric.unit)


def _slowest(report: Report) -> float:
    return max((n.timing.predicted_latency_s for n in report.nodes), default=0.0)


def _source(location: SourceLocation | None) -> str:
    return "" if location is None else f"{location.file}:{location.line}"


def _header(report: Report, timestamp: str | None) -> Header:
    spec, model = report.hardware, report.model
    source = model.source
    return Header(
        title=re.split(r"[\\/]", source.rstrip("/\\"))[-1] or source,
        model_source=source,
        model_format=model.format,
        producer=model.producer,
        hardware=spec.display_name,
        hardware_name=spec.name,
        hardware_detail=(
            f"{units.si(spec.memory_bandwidth_bytes_per_s, 'B/s')} memory bandwidth, "
            f"{units.nbytes(spec.memory_capacity_bytes)} memory"
            + (
                f", {units.seconds(spec.kernel_overhead_s)} per kernel"
                if spec.kernel_overhead_s
                else ""
            )
        ),
        dims=tuple(
            DimView(d.name, str(d.value), d.assumed, d.source)
            for d in sorted(model.dims, key=lambda d: d.name)
        ),
        assumed_dims=tuple(sorted(report.assumed_dims)),
        memlint_version=__version__,
        conventions=CONVENTIONS,
        tf32="on" if report.tf32 else "off",
        timestamp=timestamp,
        config_files=tuple(inert(f) for f in report.config_files),
    )


def _cards(report: Report) -> tuple[Card, ...]:
    summary, coverage = report.summary, report.coverage
    by_kind = summary.bytes_by_kind
    moved = by_kind.total
    parts = tuple(
        Part(
            label,
            units.nbytes(getattr(by_kind, attr)),
            pct(getattr(by_kind, attr), moved),
            css_key(attr),
        )
        for attr, label in BYTE_KINDS
    )
    intensity = summary.intensity
    below = intensity is not None and intensity < summary.ridge_point
    mem_share = summary.memory_bound_fraction
    fused = fused_texts(report)
    return (
        Card(
            "Predicted latency",
            units.seconds(summary.predicted_latency_s),
            f"as written: every operator a kernel ({as_written_text(report)})",
        ),
        *((Card("Fused estimate", fused[0], fused[1]),) if fused else ()),
        Card(
            "Memory-bound",
            units.percent(mem_share),
            f"of {memory_bound_of(summary)} ({units.seconds(summary.memory_bound_latency_s)})",
            tone="bad" if mem_share >= 0.5 else "good",
        ),
        Card("FLOPs", units.flops(summary.flops), "multiply-accumulate = 2 FLOPs"),
        Card(
            "Bytes moved",
            units.nbytes(moved),
            f"read {units.nbytes(summary.bytes_read.total)}, "
            f"written {units.nbytes(summary.bytes_written.total)}",
            parts=parts,
        ),
        Card(
            "Intensity",
            units.intensity(intensity),
            ("no bytes move; " if intensity is None else "below " if below else "at or above ")
            + f"the ridge point {units.intensity(summary.ridge_point)} ({summary.ridge_peak_key})",
            tone="neutral" if intensity is None else "bad" if below else "good",
        ),
        Card(
            "Coverage",
            units.percent(coverage.node_fraction),
            f"{coverage.nodes_modelled:,} of {plural(coverage.nodes_total, 'node')} modelled; "
            f"{coverage.tensors_resolved:,}/{coverage.tensors_total:,} tensor shapes resolved",
            tone="good" if coverage.nodes_modelled == coverage.nodes_total else "warn",
        ),
    )


def _coverage_notes(report: Report) -> tuple[str, ...]:
    coverage = report.coverage
    notes = []
    if coverage.unmodelled_ops:
        ops = ", ".join(f"{op} x{n}" for op, n in coverage.unmodelled_ops.items())
        notes.append(f"Unmodelled ops (no cost formula; bytes are a lower bound): {ops}.")
    if coverage.unresolved_nodes:
        notes.append(
            f"{coverage.unresolved_nodes} node(s) with unresolved shapes, e.g. "
            + "; ".join(coverage.unresolved_examples)
            + ". Bind the dims the model needs."
        )
    if coverage.nodes_modelled < coverage.nodes_total:
        notes.append(
            f"Bytes of unmodelled and unresolved nodes (lower bound): "
            f"{units.nbytes(coverage.bytes_lower_bound)}."
        )
    unbound = sorted(d.name for d in report.model.dims if d.assumed and not d.source)
    if unbound:
        notes.append(
            "Assumed dims (set to 1; bind them with --dim NAME=VALUE): " + ", ".join(unbound) + "."
        )
    defaults = sorted(d.name for d in report.model.dims if d.assumed and d.source)
    if defaults:
        notes.append(
            "Assumed LLM scenario defaults (set them with --batch, --context, --phase or --dim "
            "NAME=VALUE): " + ", ".join(defaults) + "."
        )
    notes.extend(f"{line}." for line in report.model.control_flow)  # If nodes and their branch
    return tuple(notes)


def _bars(groups: Iterable[tuple[str, float, str, str]], total: float) -> tuple[Bar, ...]:
    """(label, time, count text, key) -> bars, widths relative to the longest."""
    items = list(groups)
    longest = max((t for _, t, _, _ in items), default=0.0)
    return tuple(
        Bar(
            label,
            units.seconds(t),
            units.percent(t / total) if total else "0.0%",
            pct(t, longest),
            count,
            key,
        )
        for label, t, count, key in items
    )


def _time_by_op(report: Report, top: int) -> tuple[Bar, ...]:
    time_of: dict[str, float] = defaultdict(float)
    count_of: Counter[str] = Counter()
    family: dict[str, str] = {}
    for node in report.nodes:
        if node.timing.predicted_latency_s > 0:
            op = qualified(node)
            time_of[op] += node.timing.predicted_latency_s
            count_of[op] += 1
            family[op] = family_of(node)
    ranked = sorted(time_of, key=lambda op: (-time_of[op], op))
    groups = [
        (op, time_of[op], plural(count_of[op], "node"), css_key(family[op])) for op in ranked[:top]
    ]
    rest = ranked[top:]
    if rest:
        groups.append(
            (
                f"other ({plural(len(rest), 'op type')})",
                sum(time_of[op] for op in rest),
                plural(sum(count_of[op] for op in rest), "node"),
                "other",
            )
        )
    return _bars(groups, report.summary.predicted_latency_s)


def time_by_kind(report: Report) -> dict[str, float]:
    """Predicted time per bucket: weights / activations / kv_cache (memory-bound time split by
    bytes of each kind), compute (compute-bound time) and, where the spec has a per-kernel
    launch cost, launch (kernels x launch). The buckets sum to the latency."""
    buckets = {"weights": 0.0, "activations": 0.0, "kv_cache": 0.0, "compute": 0.0}
    if report.summary.launch_s:
        buckets["launch"] = report.summary.launch_s
    for node in report.nodes:
        time_s = node.timing.predicted_latency_s
        moved = node.cost.bytes_read + node.cost.bytes_written
        if time_s <= 0:
            continue
        if node.timing.bound is Bound.MEMORY and moved.total:
            for attr, _ in BYTE_KINDS:
                buckets[attr] += time_s * getattr(moved, attr) / moved.total
        else:
            buckets["compute"] += time_s
    return buckets


def _time_by_kind(report: Report) -> tuple[Bar, ...]:
    buckets = time_by_kind(report)
    labels = dict(BYTE_KINDS) | {"compute": "compute (compute-bound nodes)",
                                 "launch": "kernel launches"}
    groups = [(labels[k], t, "", css_key(k)) for k, t in buckets.items()]
    return _bars(groups, report.summary.predicted_latency_s)


def _nodes_text(nodes: Sequence[str]) -> str:
    return ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")


def _fix(text: str, saving_s: float | None) -> FixView:
    return FixView(text, units.seconds(saving_s) if saving_s else "")


def _finding(rank: int, finding: Finding, anchor_of: dict[str, str]) -> FindingView:
    links = tuple(NodeLink(name, anchor_of.get(name, "")) for name in finding.nodes)
    fixes = tuple(_fix(f.text, f.saving_s) for f in finding.fixes)
    best = None
    if finding.fixes:
        index = max(range(len(finding.fixes)), key=lambda i: (finding.fixes[i].saving_s or 0.0, -i))
        best = fixes[index]
    return FindingView(
        rank=rank,
        anchor=f"finding-{rank}",
        code=finding.code,
        name=finding.name,
        severity=finding.severity.value,
        message=finding.message,
        nodes_head=links[:FINDING_NODES_SHOWN],
        nodes_tail=links[FINDING_NODES_SHOWN:],
        node_count=plural(len(links), "node"),
        where=finding.group or _nodes_text(finding.nodes),
        count=finding.count,
        group=finding.group,
        time=units.seconds(finding.time_s) if finding.time_s is not None else "-",
        share=units.percent(finding.share) if finding.share is not None else "-",
        saving=units.seconds(finding.saving_s) if finding.saving_s else "-",
        evidence=tuple(MetricView(m.name, evidence_value(m), evidence_label(m.name))
                       for m in finding.evidence),
        fixes=fixes,
        best_fix=best,
        source=_source(finding.source),
        estimate="as written only" if finding.estimate == "as_written" else "",
    )


def _node_row(index: int, node: NodeResult, anchor: str, total: float, slowest: float) -> NodeRow:
    cost, timing = node.cost, node.timing
    moved = cost.bytes_read + cost.bytes_written
    time_s = timing.predicted_latency_s
    return NodeRow(
        index=index,
        name=node.name,
        name_parts=tuple(re.findall(r"[^/]*/|[^/]+$", node.name)) or (node.name,),
        anchor=anchor,
        op=qualified(node),
        family=css_key(family_of(node)),
        flops=units.flops(cost.flops),
        bytes=units.nbytes(moved.total),
        bytes_weights=units.nbytes(moved.weights),
        bytes_activations=units.nbytes(moved.activations),
        bytes_kv=units.nbytes(moved.kv_cache),
        intensity=units.intensity(cost.intensity),
        bound=timing.bound.value,
        time=units.seconds(time_s),
        share=units.percent(time_s / total) if total else "0.0%",
        share_width=pct(time_s, slowest),
        status=cost.status.value,
        note=cost.note,
        source=_source(node.source),
        flops_value=cost.flops,
        bytes_value=moved.total,
        weights_value=moved.weights,
        activations_value=moved.activations,
        kv_value=moved.kv_cache,
        intensity_value=None if cost.intensity is None else round(cost.intensity, 6),
        time_value=time_s,
    )
