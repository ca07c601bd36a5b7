"""`memlint fix` output in text, JSON and Markdown: the transforms (applied, refused, planned)
with their library calls and predicted savings, then memlint diff's before/after table, the
findings the fix left, and the measured check (--confirm)."""

from __future__ import annotations

import json
from typing import Any

from memlint import units
from memlint.fix.apply import FixResult, Step
from memlint.report import diff_render
from memlint.report.markdown import md


def _codes(step: Step) -> str:
    counts: dict[str, int] = {}
    for finding in step.findings:
        counts[finding.code] = counts.get(finding.code, 0) + finding.count
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items()))


def _saving(step: Step) -> str:
    return f"predicted saving {units.by_unit(step.saving_s, 's')}" if step.saving_s else ""


def step_lines(result: FixResult) -> list[str]:
    lines = []
    for step in result.steps:
        status = "would apply" if step.status == "planned" else step.status
        head = f"{status:<11} {step.transform.name} ({_codes(step)})"
        detail = "; ".join(filter(None, [_saving(step), step.note]))
        lines.append(f"{head}: {detail}" if detail else head)
        lines.append(f"            {step.call}")
    if result.no_transform:
        codes = sorted({f"{f.code} {f.name}" for f in result.no_transform})
        lines.append(f"no automatic transform: {', '.join(codes)} (memlint -v shows their fixes)")
    return lines


def _confirm_lines(result: FixResult) -> list[str]:
    run = result.confirmation
    if run is None:
        return []
    lines = [(f"measured on onnxruntime {run.provider}, median of {run.runs} runs: "
              f"{units.by_unit(run.latency_before_s, 's')} -> "
              f"{units.by_unit(run.latency_after_s, 's')}")]
    several = len(run.feeds) > 1
    if several:
        lines.append(f"  outputs compared on {len(run.feeds)} feeds: {', '.join(run.feeds)}")
    for check in run.checks:
        verdict = "ok" if check.ok else "DIVERGED"
        where = f"{check.output}, {check.feed}" if several else check.output
        moved = (f"max error {check.error:.3g} of the largest value"
                 if not check.nonfinite else check.problem)
        lines.append(f"  outputs after {check.transform}: {moved} ({where}), "
                     f"tolerance {check.tolerance:g}: {verdict}")
    return lines


def _by_code(pairs: list[tuple[str, int]]) -> str:
    counts: dict[str, int] = {}
    for code, n in pairs:
        counts[code] = counts.get(code, 0) + n
    return ", ".join(f"{code} ({n} node{'s' * (n != 1)})" for code, n in sorted(counts.items()))


def _table(result: FixResult) -> list[str]:
    """memlint diff's before/after table; its findings by code (the nodes: --format json)."""
    comparison = result.comparison
    table = [("metric", "before", "after", "change"), *(r[:4] for r in diff_render.rows(comparison))]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [f"before/after on {comparison.new.hardware.name} (memlint diff):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    fixed = _by_code([(e.code, 1) for e in comparison.fixed])
    new = _by_code([(f.code, max(len(f.nodes), 1)) for f in comparison.new_findings])
    lines.append(f"findings resolved: {fixed or 'none'}")
    lines.append(f"findings new: {new or 'none'}")
    return lines


def render_text(result: FixResult) -> str:
    target = result.output or ("nothing written" if result.advice or not result.steps
                               else "dry run, nothing written")
    lines = [f"memlint fix: {result.model} -> {target}", ""]
    if result.advice:
        lines += ["a torch module is not rewritten; apply the fixes in code:", ""]
        lines += [*result.advice, ""]
    lines += step_lines(result) if not result.advice else []
    if not result.steps and not result.advice:
        lines.append("no selected finding has an automatic transform; nothing to apply")
    if result.comparison is not None:
        lines += ["", *_table(result)]
    for finding in result.unresolved:
        lines.append(f"still there: {finding.code} {finding.name} on {finding.nodes[0]} "
                     "(still flagged after the fix)")
    lines += _confirm_lines(result)
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def to_dict(result: FixResult) -> dict[str, Any]:
    run = result.confirmation
    return {
        "model": result.model,
        "output": result.output,
        "transforms": [
            {"name": s.transform.name, "status": s.status, "call": s.call,
             "codes": sorted({f.code for f in s.findings}), "findings": sum(f.count for f in s.findings),
             "needs_weights": s.transform.needs_weights, "tolerance": s.transform.tolerance,
             "predicted_saving_s": s.saving_s, "note": s.note}
            for s in result.steps
        ],
        "no_transform": sorted({f.code for f in result.no_transform}),
        "advice": list(result.advice),
        "comparison": None if result.comparison is None else diff_render.to_dict(result.comparison),
        "unresolved": [{"code": f.code, "nodes": list(f.nodes)} for f in result.unresolved],
        "confirm": None if run is None else {
            "provider": run.provider, "runs": run.runs,
            "latency_before_s": run.latency_before_s, "latency_after_s": run.latency_after_s,
            "feeds": list(run.feeds),
            "checks": [{"transform": c.transform, "error": c.error, "output": c.output,
                        "feed": c.feed, "nonfinite_after": c.nonfinite_after,
                        "nonfinite_before": c.nonfinite_before, "tolerance": c.tolerance,
                        "ok": c.ok} for c in run.checks],
        },
        "notes": list(result.notes),
    }


def render_json(result: FixResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def render_markdown(result: FixResult) -> str:
    lines = [f"### memlint fix: {md(result.model)} → {md(result.output or 'nothing written')}", ""]
    if result.advice:
        lines += ["A torch module is not rewritten; apply the fixes in code:", "", "```python",
                  *result.advice, "```", ""]
    lines += ["| transform | status | findings | predicted saving | library call |",
              "|---|---|---|---:|---|"]
    for s in result.steps:
        lines.append(f"| {md(s.transform.name)} | {md(s.status)} | {md(_codes(s))} | "
                     f"{units.by_unit(s.saving_s, 's')} | `{s.call}` |")
    lines.append("")
    lines += [f"- refused **{md(s.transform.name)}**: {md(s.note)}" for s in result.refused]
    if result.comparison is not None:
        lines += ["", diff_render.render_markdown(result.comparison).rstrip("\n")]
    lines += [f"- still there: {f.code} {md(f.nodes[0])}" for f in result.unresolved]
    lines += [md(line) for line in _confirm_lines(result)]
    lines += [f"- note: {md(n)}" for n in result.notes]
    return "\n".join(lines).rstrip() + "\n"


RENDER = {"text": render_text, "json": render_json, "markdown": render_markdown}
