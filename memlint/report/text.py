"""Terminal rendering with rich: readable without colour; NO_COLOR is honoured by rich.

Every string that comes from the model, a config or a hardware file (node names, op types,
dims, messages, which quote node names) passes `inert` first: a node named "\\x1b[31m..." or
"\\x1b]8;;http://...\\x07" prints as those characters, never as an escape sequence that would
recolour the terminal, plant a hyperlink or rewrite the screen. Table cells are also escaped
for rich markup.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from memlint import units
from memlint._version import __version__
from memlint.core.report import Report
from memlint.report.blocks_view import SHORT_HEADERS, block_rows, short_cells, what_if_line
from memlint.report.lines import (
    as_written_text,
    best_fix,
    combined_saving,
    fused_line,
    inert,
    layer_groups,
    memory_bound_of,
    short_fix,
)
from memlint.roofline import Bound

DEFAULT_TOP = 5  # operator rows (identical layers are one row): the report fits a screen


def _kinds_line(counts) -> str:  # noqa: ANN001
    return (
        f"weights {units.nbytes(counts.weights)}, activations {units.nbytes(counts.activations)}, "
        f"KV cache {units.nbytes(counts.kv_cache)}"
    )


def render_to(console: Console, report: Report, *, top: int | None = DEFAULT_TOP,
              verbose: bool = False) -> None:
    """The report for a terminal: header, summary, LLM sections, one line per finding (with
    `verbose`: its evidence and every fix), the slowest operators with identical layers grouped."""
    summary, coverage, spec = report.summary, report.coverage, report.hardware
    console.print(
        Text.assemble(
            ("memlint ", "bold"), f"{__version__}  ", (inert(report.model.source), "bold"),
            " on ", (inert(spec.display_name), "bold"), f" ({inert(spec.name)})",
        )
    )
    dims_line = Text("dims: ")
    # an LLM scenario's default is assumed too, and says so (in yellow) on the dims line
    shown = [d for d in report.model.dims if not d.assumed or d.source]
    for i, d in enumerate(sorted(shown, key=lambda d: d.assumed)):
        text = f"{inert(d.name)}={d.value}"
        if d.assumed:
            dims_line.append(f"{text} (assumed: {inert(d.source)})", style="yellow")
        else:
            dims_line.append(text + (f" ({inert(d.source)})" if d.source else ""))
        if i < len(shown) - 1:
            dims_line.append(", ")
    console.print(dims_line if shown else Text("dims: none bound"))
    if report.config_files:
        console.print(Text("config: " + inert("; ".join(report.config_files))))
    what_if = what_if_line(report)
    if what_if:
        console.print(Text(inert(what_if), style="bold magenta"))
    unbound = [d.name for d in report.model.dims if d.assumed and not d.source]
    if unbound:
        console.print(
            Text(
                f"assumed dims (set to 1; bind them with --dim NAME=VALUE or --input-shape): "
                f"{inert(', '.join(unbound))}",
                style="bold yellow",
            )
        )
    console.print()

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("FLOPs", units.flops(summary.flops))
    table.add_row("bytes read", f"{units.nbytes(summary.bytes_read.total)}  ({_kinds_line(summary.bytes_read)})")
    table.add_row(
        "bytes written", f"{units.nbytes(summary.bytes_written.total)}  ({_kinds_line(summary.bytes_written)})"
    )
    table.add_row(
        "intensity",
        f"{units.intensity(summary.intensity)}  (ridge point {summary.ridge_point:.3g} FLOP/B "
        f"for {summary.ridge_peak_key})",
    )
    table.add_row("predicted latency",
                  f"{units.seconds(summary.predicted_latency_s)}  (as written: {as_written_text(report)})")
    fused = fused_line(report)
    if fused is not None:
        table.add_row("fused estimate", fused)
    table.add_row("memory-bound", f"{units.percent(summary.memory_bound_fraction)} of "
                  + memory_bound_of(summary))
    unmodelled = inert(", ".join(f"{op} x{n}" for op, n in coverage.unmodelled_ops.items()))
    cov = (
        f"{coverage.nodes_modelled}/{coverage.nodes_total} nodes modelled "
        f"({units.percent(coverage.node_fraction)}); {coverage.tensors_resolved}/"
        f"{coverage.tensors_total} tensor shapes resolved"
    )
    if coverage.nodes_modelled < coverage.nodes_total:
        cov += f"; lower-bound bytes {units.nbytes(coverage.bytes_lower_bound)}"
    table.add_row("coverage", cov)
    for line in report.model.control_flow:  # If nodes: taken statically or costed both ways
        table.add_row("control flow", Text(inert(line)))
    if unmodelled:
        table.add_row("unmodelled ops", Text(unmodelled))
    if coverage.unresolved_nodes:
        table.add_row(
            "unresolved shapes",
            Text(
                f"{coverage.unresolved_nodes} node(s), e.g. "
                + inert("; ".join(coverage.unresolved_examples))
                + " (bind the dims the model needs, or check that the values fit the model)"
            ),
        )
    console.print(table)
    console.print()
    if verbose or report.summary.what_if is not None:  # the screen: -v or a what-if shows it
        _blocks(console, report)
    _llm(console, report)
    if verbose:
        _findings(console, report)
    else:
        _finding_lines(console, report)
    _tally(console, report, verbose)
    _operators(console, report, DEFAULT_TOP if top is None else top)
    console.print(
        Text(
            "Counts are unfused, per operator as written; times are roofline bounds "
            "(docs/cost-model.md).",
            style="dim",
        )
    )


def _blocks(console: Console, report: Report) -> None:
    """The totals per block role (summary.by_block)."""
    rows = block_rows(report)
    if not rows:
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for i, header in enumerate(SHORT_HEADERS):
        table.add_column("by block" if i == 0 else header, justify="left" if i == 0 else "right",
                         no_wrap=True)  # fmt: skip
    for row in rows:
        table.add_row(*short_cells(row))
    console.print(table)
    console.print()


def _operators(console: Console, report: Report, top: int) -> None:
    """The slowest operators, identical layers as one row ('x12 /h.*/mlp/c_fc/MatMul')."""
    groups = layer_groups(report.nodes)[:top]
    if not groups:
        return
    total = report.summary.predicted_latency_s or 1.0
    nodes = Table(
        title=f"top {len(groups)} operators by predicted time (identical layers as one row)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=0,  # columns set apart by the box divider alone
    )
    nodes.add_column("n", justify="right", no_wrap=True)  # identical layers in the row
    nodes.add_column("node", overflow="fold", min_width=16)
    for name, justify in (
        ("op", "left"), ("FLOPs", "right"), ("bytes", "right"),
        ("FLOP/B", "right"), ("bound", "left"), ("time", "right"), ("share", "right"),
    ):  # fmt: skip
        nodes.add_column(name, justify=justify, no_wrap=True)
    for group in groups:
        n = group.first
        style = "red" if n.timing.bound is Bound.MEMORY else "green"
        count = len(group.members)
        nodes.add_row(
            f"{count}x" if count > 1 else "",
            escape(inert(group.first.name if count == 1 else group.pattern)),
            escape(inert(f"{n.domain}::{n.op_type}" if n.domain else n.op_type)),
            units.flops(n.cost.flops),
            units.nbytes(n.cost.bytes_moved),
            "-" if n.intensity is None else f"{n.intensity:.3g}",
            Text(n.timing.bound.value, style=style),
            units.seconds(group.latency_s),
            units.percent(group.latency_s / total),
        )
    console.print(nodes)


def _llm(console: Console, report: Report) -> None:
    """The LLM sections of a decoder and the measured run of --confirm."""
    from memlint.report.sections import blocks

    for block in blocks(report):
        console.print(Text(inert(block.title), style="bold"))
        if block.rows:
            rows = Table(show_header=False, box=None, pad_edge=False)
            rows.add_column(style="bold", no_wrap=True)
            rows.add_column()
            for label, value in block.rows:
                rows.add_row(escape(inert(label)), escape(inert(value)))
            console.print(rows)
        if block.table is not None:
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            for i, header in enumerate(block.table.headers):
                table.add_column(escape(inert(header)), justify="left" if i < block.table.text_columns else "right")
            for row in block.table.rows:
                table.add_row(*(escape(inert(cell)) for cell in row))
            console.print(table)
            for note in block.table.notes:
                console.print(Text(inert(note), style="dim"))
        console.print()


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _finding_lines(console: Console, report: Report) -> None:
    """One line per finding, most costly first: code, rule, where, saving, the best fix (cut to
    the width; -v prints every fix whole)."""
    if not report.findings:
        return
    total = report.summary.predicted_latency_s
    rows = []
    for finding in report.findings:
        fix = best_fix(finding)
        saving = ""
        if finding.saving_s:
            share = f" {units.percent(finding.saving_s / total)}" if total else ""
            saving = f"-{units.seconds(finding.saving_s)}{share}"
        rows.append((finding, inert(_where(finding)), saving,
                     inert(short_fix(fix.text)) if fix else ""))
    code_w = max(len(inert(f.code)) for f, *_ in rows)
    name_w = max(len(inert(f.name)) for f, *_ in rows)
    saving_w = max(len(r[2]) for r in rows)
    # what is left of the line goes to where (at most 40) and the best fix, cut with "..."
    room = max(console.width - (code_w + name_w + saving_w + 8), 24)
    where_w = min(max(len(r[1]) for r in rows), 40, room // 2)
    fix_w = room - where_w
    for finding, where, saving, fix in rows:
        console.print(Text.assemble(
            (inert(finding.code).ljust(code_w), _SEVERITY_STYLE[finding.severity.value]), "  ",
            (inert(finding.name).ljust(name_w), "bold"), "  ", saving.rjust(saving_w), "  ",
            _cut_middle(where, where_w).ljust(where_w), "  ", (_cut(fix, fix_w), "green"),
        ), no_wrap=True, overflow="ignore")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _cut_middle(text: str, width: int) -> str:
    """A node name cut in its middle, keeping its count and its tail (the layer's own part):
    'x12 /transformer/h.*/mlp/c_fc/MatMul' -> 'x12 /trans...mlp/c_fc/MatMul'."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    head = keep // 3
    return text[:head] + "..." + text[len(text) - (keep - head):]


def _where(finding) -> str:  # noqa: ANN001 - a Finding
    """The nodes of a finding in a few words: one name, 'x12 /h.*/mlp/MatMul', or '24 nodes'."""
    if not finding.nodes:
        return "the graph"
    if len(finding.nodes) == 1:
        return finding.nodes[0]
    patterns = {_NUMBERS.sub("*", node) for node in finding.nodes}
    if len(patterns) == 1:
        return f"x{len(finding.nodes)} {patterns.pop()}"
    return f"{len(finding.nodes)} nodes"


_NUMBERS = re.compile(r"\d+")


def _findings(console: Console, report: Report) -> None:
    """--verbose: each finding with its nodes, the measured message and every fix."""
    for finding in report.findings:
        where = finding.group or ", ".join(finding.nodes[:3]) + (
            f" and {len(finding.nodes) - 3} more" if len(finding.nodes) > 3 else ""
        )
        line = Text.assemble(
            (inert(finding.code), "bold"), " ",
            (finding.severity.value, _SEVERITY_STYLE[finding.severity.value]), " ",
            (inert(finding.name), "bold"),
        )
        if where:
            line.append(f"  {inert(where)}")
        if finding.source is not None:
            line.append(f"  ({inert(finding.source.file)}:{finding.source.line})", style="dim")
        console.print(line)
        console.print(Padding(Text(inert(finding.message)), (0, 0, 0, 2)))
        for fix in finding.fixes:
            saving = f" (saves {units.seconds(fix.saving_s)})" if fix.saving_s else ""
            console.print(Padding(Text(f"fix: {inert(fix.text)}{saving}", style="green"),
                                  (0, 0, 0, 2)))
        console.print()


def _tally(console: Console, report: Report, verbose: bool) -> None:
    """How many findings, what their fixes save together, and what was left out."""
    counts = Counter(f.severity.value for f in report.findings)
    parts = [f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]]
    label = "new finding(s)" if report.baseline is not None else "finding(s)"
    tally = f"{len(report.findings)} {label}" + (f" ({', '.join(parts)})" if parts else "")
    combined = combined_saving(report)
    if combined:
        tally += f"; {combined[:1].lower()}{combined[1:]}"
    if report.hidden_as_noise:
        tally += (
            f"; {report.hidden_as_noise} below the noise threshold hidden "
            "(--min-share / --min-saving-s to see them)"
        )
    if report.suppressed:
        tally += f"; {len(report.suppressed)} suppressed by configuration"
    if report.baseline is not None:
        tally += (
            f"; {len(report.baseline.known)} already in the baseline, "
            f"{len(report.baseline.fixed)} baseline entr{'y' if len(report.baseline.fixed) == 1 else 'ies'} fixed"
        )
    console.print(Text(tally, style="bold"))
    if report.findings and not verbose:
        console.print(Text("-v shows each finding's evidence and every fix; "
                           "`memlint rule CODE` explains a rule", style="dim"))
    if report.baseline is not None and report.baseline.fixed:
        fixed = inert(", ".join(f"{e.code} {e.node}" for e in report.baseline.fixed[:5]))
        more = len(report.baseline.fixed) - 5
        console.print(Text(f"fixed since the baseline: {fixed}" + (f" and {more} more" if more > 0 else ""),
                           style="green"))
    for unused in report.unused_suppressions:
        console.print(
            Text(
                f"unused suppression: code {inert(unused.code)} nodes {unused.nodes!r} "
                f"({inert(unused.reason)}) matched no finding",
                style="yellow",
            )
        )
    console.print()


def terminal_console() -> Console:
    """stdout; at least 120 columns when stdout is not a terminal (pipes, CI logs). Under
    NO_COLOR no escape sequences at all (rich alone drops colours but keeps bold and dim)."""
    plain = {"color_system": None} if os.environ.get("NO_COLOR") else {}
    console = _Stdout(highlight=False, **plain)
    if not console.is_terminal:
        console = _Stdout(highlight=False, width=max(console.width, 120), **plain)
    return console


class _Stdout(Console):
    """A reader that stops early (`memlint M | head`) raises BrokenPipeError to the caller,
    which keeps the run's exit code (rich's own handler exits 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def render(report: Report, *, top: int | None = DEFAULT_TOP, width: int = 120,
           verbose: bool = False) -> str:
    """Plain text (no colour), as written to a file."""
    buffer = io.StringIO()
    render_to(Console(file=buffer, width=width, color_system=None, soft_wrap=False), report,
              top=top, verbose=verbose)
    # rich pads table cells; a file keeps no trailing blanks (editors and hooks strip them)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def combine(outcomes: Sequence) -> str:
    """Many models: each report, then one line per model (findings and predicted time, or why
    it could not be linted)."""
    lines = [f"{len(outcomes)} models:"]
    for o in outcomes:
        status = f"error: {inert(o.error)}" if o.error else (
            f"{o.findings} finding(s), predicted {units.seconds(o.latency_s)}"
            + (" - FAIL" if o.fails else ""))
        lines.append(f"  {o.model}: {status}")
    parts = [o.rendered.rstrip("\n") for o in outcomes if not o.error]
    return "\n\n".join([*parts, "\n".join(lines)]) + "\n"
