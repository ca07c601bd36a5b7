"""`memlint diff` output: text (terminal), JSON and Markdown (a pull-request comment)."""

from __future__ import annotations

import json
from typing import Any

from memlint import units
from memlint.core.document import finding_dict as _finding
from memlint.diff import Delta, ModelDiff
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


def rows(result: ModelDiff) -> list[tuple[str, str, str, str, str]]:
    return [
        (d.label, units.by_unit(d.old, d.unit), units.by_unit(d.new, d.unit), _change(d), _gate(d))
        for d in result.deltas
    ]


def render_text(result: ModelDiff) -> str:
    lines = [f"memlint diff: {result.old.model.source} -> {result.new.model.source} "
             f"on {result.new.hardware.name}", ""]
    table = [("metric", "old", "new", "change", "gate"), *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(f"{len(result.new_findings)} new finding(s), {len(result.fixed)} fixed")
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
    verdict = "fails its gates" if result.regressions else "passes its gates"
    lines = [
        f"### memlint diff: {md(result.old.model.source)} → {md(result.new.model.source)}"
        f" ({md(result.new.hardware.name)}) {verdict}",
        "",
        "| metric | old | new | change | gate |",
        "|---|---:|---:|---:|---|",
        *(f"| {' | '.join(md(c) for c in row)} |" for row in rows(result)),
        "",
        f"**{len(result.new_findings)} new finding(s), {len(result.fixed)} fixed**",
        "",
    ]
    lines += [f"- new **{f.code}** {md(f.name)}: {md(f.message)}" for f in result.new_findings]
    lines += [f"- fixed {e.code} {md(e.node)}" for e in result.fixed]
    return "\n".join(lines).rstrip() + "\n"
