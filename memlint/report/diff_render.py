"""`memlint diff` output: text (terminal), JSON and Markdown (a pull-request comment)."""

from __future__ import annotations

import json
from typing import Any

from memlint import units
from memlint.diff import Delta, ModelDiff
from memlint.report.json_report import _finding


def _value(unit: str, value: float) -> str:
    if unit == "s":
        return units.seconds(value)
    if unit == "B":
        return units.nbytes(value)
    if unit == "FLOP":
        return units.flops(value)
    if unit == "fraction":
        return units.percent(value)
    return f"{value:g}"


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
        (d.label, _value(d.unit, d.old), _value(d.unit, d.new), _change(d), _gate(d))
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


def _md(text: str) -> str:
    """Markdown-safe text: HTML special characters as entities, table pipes and backticks escaped."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("`", "\\`"))


def render_markdown(result: ModelDiff) -> str:
    verdict = "fails its gates" if result.regressions else "passes its gates"
    lines = [
        f"### memlint diff: `{_md(result.old.model.source)}` → `{_md(result.new.model.source)}`"
        f" ({_md(result.new.hardware.name)}) {verdict}",
        "",
        "| metric | old | new | change | gate |",
        "|---|---:|---:|---:|---|",
        *(f"| {' | '.join(_md(c) for c in row)} |" for row in rows(result)),
        "",
        f"**{len(result.new_findings)} new finding(s), {len(result.fixed)} fixed**",
        "",
    ]
    lines += [f"- new **{f.code}** {_md(f.name)}: {_md(f.message)}" for f in result.new_findings]
    lines += [f"- fixed {e.code} `{_md(e.node)}`" for e in result.fixed]
    return "\n".join(lines).rstrip() + "\n"
