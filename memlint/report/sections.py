"""The optional report sections every renderer prints the same way: the LLM sections
(memlint.report.llm_view) and the measured run of --confirm, as titled label/value rows or tables."""

from __future__ import annotations

from typing import Any

from memlint import units
from memlint.core.report import Report

TOP_MEASURED = 12  # nodes in the predicted-vs-measured table


def blocks(report: Report) -> tuple:
    """memlint.report.llm_view.Block items, in report order (() for a plain lint)."""
    found: list = []
    if report.llm is not None:
        from memlint.report.llm_view import blocks as llm_blocks

        found += llm_blocks(report.llm)
    if report.measurement is not None:
        found += measured_blocks(report.measurement)
    return tuple(found)


def measured_blocks(m: Any) -> list:  # m: memlint.confirm.Measurement
    from memlint.report.llm_view import Block, Table

    def error(value: float) -> str:
        return f"{100 * value:+.1f}%"

    optimised = m.optimised_latency_s is not None  # onnxruntime's second run; torch has none
    as_written = "eager, op by op" if m.runtime.startswith("torch") else "graph optimisations off"
    small = m.small_kernels
    rows = (
        ("run", f"{m.runtime} {m.provider}, {m.runs} timed runs after "
                f"{m.warmup} warm-up, {m.weights} weights; prediction on {m.hardware}"),
        ("predicted", units.seconds(m.predicted_latency_s)),
        ("measured, as written", f"{units.seconds(m.unoptimised_latency_s)} ({as_written}; "
                                 f"prediction error {error(m.total_error)})"),
        *((("measured, optimised", f"{units.seconds(m.optimised_latency_s)} (onnxruntime's full "
                                   f"optimisations; prediction error {error(m.optimised_error)})"),
           *((("fused estimate", f"{units.seconds(m.predicted_fused_latency_s)} (against the "
                                 f"optimised run: error {error(m.fused_error)})"),)
             if m.fused_error is not None else ()),
           ("kernels mapped", f"{units.percent(m.kernels_mapped_fraction)} of the optimised "
                              "run's kernel time maps back to graph nodes"))
          if optimised else ()),
        ("rank correlation", rank_text(m.rank_correlation)),
        *((("small kernels", small_kernels_text(small, m.kernel_overhead_s)),) if small[0] else ()),
        *(("note", note) for note in m.notes),
    )
    findings = tuple(
        (c.finding.code, ", ".join(c.finding.nodes[:2]) + (" ..." if len(c.finding.nodes) > 2 else ""),
         c.verdict.value, c.reason)
        for c in m.findings
    )
    slowest = sorted(m.nodes, key=lambda n: -n.measured_s)[:TOP_MEASURED]
    nodes = tuple(
        (n.name, n.op_type, units.seconds(n.predicted_s), units.seconds(n.measured_s),
         units.si(n.achieved_bandwidth_bytes_per_s, "B/s"),
         units.si(n.achieved_flops_per_s, "FLOP/s"),
         "-" if n.roof_fraction is None else units.percent(n.roof_fraction))
        for n in slowest
    )
    out = [Block("Measured (--confirm)", rows)]
    if findings:
        out.append(Block("Findings, measured", table=Table(
            "Findings, measured", ("code", "nodes", "verdict", "why"), findings,
            text_columns=4)))
    if nodes:
        out.append(Block("Predicted vs measured, slowest nodes", table=Table(
            "Predicted vs measured, slowest nodes",
            ("node", "op", "predicted", "measured", "bandwidth", "FLOP rate", "of roof"), nodes,
            text_columns=2)))
    return out


def small_kernels_text(small: tuple[int, float | None], overhead_s: float | None) -> str:
    """What kernels with next to no work cost in the run (Measurement.small_kernels), against
    the spec's per-kernel overhead."""
    count, median = small
    spec = ("no per-kernel overhead" if not overhead_s
            else f"a per-kernel overhead of {units.seconds(overhead_s)}")
    return (f"{count:,} kernels with under 0.5 us of roofline work (shape and index ops, views) "
            f"took a median {units.seconds(median)} each; the prediction used {spec}")


def rank_text(rank: Any) -> str:  # rank: memlint.confirm.RankCorrelation
    """The rank correlation with what it covers, e.g. "0.93 (Spearman) over 9 groups ..."."""
    value = "undefined" if rank.rho is None else f"{rank.rho:.2f}"
    unit = "groups" if rank.grouped else "nodes"
    why = (" (fewer than three, or one prediction for all)" if rank.rho is None else "")
    text = (f"{value} (Spearman) over the {rank.groups} {unit}{why} that take "
            f">= {units.percent(rank.share)} of the measured node time")
    if rank.grouped:
        text += (f" ({rank.nodes} nodes: the same node of identical layers, named alike but "
                 "for numbers, taken as one)")
    return text
