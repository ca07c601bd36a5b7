"""`memlint diff` output: text (terminal), JSON, Markdown (a pull-request comment) and HTML (one
self-contained page, templates/diff.html.j2, which `memlint fix --format html` shares)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from memlint import units
from memlint.core.document import finding_dict as _finding
from memlint.diff import Delta, ModelDiff
from memlint.findings import Finding
from memlint.report.markdown import md


def _change(delta: Delta) -> str:
    if delta.unit == "fraction":  # a share changes in percentage points
        return f"{100 * delta.change:+.1f} pt"
    relative = delta.relative
    if relative is None:
        return "new"
    return f"{100 * relative:+.1f}%"


def _gate(delta: Delta) -> str:
    if delta.limit is None:
        return ""
    verdict = "FAIL" if delta.breached else "ok"
    return f"{verdict} (max +{100 * delta.limit:g}%)"


HEADERS = ("metric", "old", "new", "change", "gate")


def rows(result: ModelDiff) -> list[tuple[str, str, str, str, str]]:
    return [
        (d.label, units.by_unit(d.old, d.unit), units.by_unit(d.new, d.unit), _change(d), _gate(d))
        for d in result.deltas
    ]


def verdict(result: ModelDiff) -> str:
    return "fails its gates" if result.regressions else "passes its gates"


def tally(result: ModelDiff) -> str:
    return f"{len(result.new_findings)} new finding(s), {len(result.fixed)} fixed"


def render_text(result: ModelDiff) -> str:
    lines = [f"memlint diff: {result.old.model.source} -> {result.new.model.source} "
             f"on {result.new.hardware.name}", ""]
    table = [HEADERS, *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(tally(result))
    for finding in result.new_findings:
        lines.append(f"  new  {finding.code} {finding.name}: {finding.message}")
    for entry in result.fixed:
        lines.append(f"  fixed {entry.code} {entry.node}")
    for delta in result.regressions:
        lines.append(f"regression: {delta.label} {_change(delta)} exceeds +{100 * delta.limit:g}%")
    return "\n".join(lines) + "\n"


def to_dict(result: ModelDiff) -> dict[str, Any]:
    return {
        "old": result.old.model.source,
        "new": result.new.model.source,
        "hardware": result.new.hardware.name,
        "metrics": [
            {"metric": d.key, "label": d.label, "unit": d.unit, "old": d.old, "new": d.new,
             "change": d.change, "relative": d.relative, "max_regression": d.limit,
             "breached": d.breached}
            for d in result.deltas
        ],
        "new_findings": [_finding(f) for f in result.new_findings],
        "fixed": [{"code": e.code, "node": e.node} for e in result.fixed],
        "regressions": [d.key for d in result.regressions],
    }


def render_json(result: ModelDiff) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def render_markdown(result: ModelDiff) -> str:
    lines = [
        (f"### memlint diff: {md(result.old.model.source)} → {md(result.new.model.source)}"
         f" ({md(result.new.hardware.name)}) {verdict(result)}"),
        "",
        "| metric | old | new | change | gate |",
        "|---|---:|---:|---:|---|",
        *(f"| {' | '.join(md(c) for c in row)} |" for row in rows(result)),
        "",
        f"**{tally(result)}**",
        "",
    ]
    lines += [f"- new **{f.code}** {md(f.name)}: {md(f.message)}" for f in result.new_findings]
    lines += [f"- fixed {e.code} {md(e.node)}" for e in result.fixed]
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class MetricRow:
    cells: tuple[str, ...]  # rows()'s, as many as the page's headers
    breached: bool


@dataclass(frozen=True)
class FixedGroup:
    code: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class DiffView:
    """What templates/diff.html.j2 prints of a diff: the Markdown's content, every number
    formatted here (`rows`), the fixed (code, node) pairs grouped by code."""

    old: str
    new: str
    hardware: str
    verdict: str
    fails: bool
    headers: tuple[str, ...]
    rows: tuple[MetricRow, ...]
    tally: str
    new_findings: tuple[Finding, ...]
    fixed: tuple[FixedGroup, ...]


def html_view(result: ModelDiff, headers: tuple[str, ...] = HEADERS) -> DiffView:
    """`headers` names the table's columns; as many of each row's cells are shown (`memlint fix`
    drops the gate: it sets none)."""
    fixed: dict[str, list[str]] = {}
    for entry in result.fixed:  # sorted by (code, node)
        fixed.setdefault(entry.code, []).append(entry.node)
    return DiffView(
        old=result.old.model.source,
        new=result.new.model.source,
        hardware=result.new.hardware.name,
        verdict=verdict(result),
        fails=bool(result.regressions),
        headers=headers,
        rows=tuple(MetricRow(row[:len(headers)], delta.breached)
                   for delta, row in zip(result.deltas, rows(result))),
        tally=tally(result),
        new_findings=result.new_findings,
        fixed=tuple(FixedGroup(code, tuple(nodes)) for code, nodes in fixed.items()),
    )


def render_page(title: str, diff: DiffView | None, fix: object = None) -> str:
    """templates/diff.html.j2 through the report's autoescaping environment (memlint.report.html)."""
    from memlint.report.html import environment

    return environment().get_template("diff.html.j2").render(title=title, diff=diff, fix=fix)


def render_html(result: ModelDiff) -> str:
    return render_page(f"{result.old.model.source} → {result.new.model.source}", html_view(result))
