"""`memlint fix` output in text, JSON, Markdown and HTML (memlint diff's page,
templates/diff.html.j2): the transforms (applied, refused, planned) with their library calls and
predicted savings, then memlint diff's before/after table, the findings the fix left, and the
measured check (--confirm)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from memlint import units
from memlint.fix.apply import FixResult, Step
from memlint.fix.verify import Confirmation, OutputCheck
from memlint.report import diff_render
from memlint.report.markdown import md

NOTHING_TO_APPLY = "no selected finding has an automatic transform; nothing to apply"


def _codes(step: Step) -> str:
    counts: dict[str, int] = {}
    for finding in step.findings:
        counts[finding.code] = counts.get(finding.code, 0) + finding.count
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items()))


def _saving(step: Step) -> str:
    return f"predicted saving {units.by_unit(step.saving_s, 's')}" if step.saving_s else ""


def _status(step: Step) -> str:
    return "would apply" if step.status == "planned" else step.status


def _detail(step: Step) -> str:
    return "; ".join(filter(None, [_saving(step), step.note]))


def _no_transform(result: FixResult) -> str:
    if not result.no_transform:
        return ""
    codes = sorted({f"{f.code} {f.name}" for f in result.no_transform})
    return f"no automatic transform: {', '.join(codes)} (memlint -v shows their fixes)"


def step_lines(result: FixResult) -> list[str]:
    lines = []
    for step in result.steps:
        head = f"{_status(step):<11} {step.transform.name} ({_codes(step)})"
        detail = _detail(step)
        lines.append(f"{head}: {detail}" if detail else head)
        lines.append(f"            {step.call}")
    if result.no_transform:
        lines.append(_no_transform(result))
    return lines


def _measured(run: Confirmation) -> str:
    return (f"measured on onnxruntime {run.provider}, median of {run.runs} runs: "
            f"{units.by_unit(run.latency_before_s, 's')} -> "
            f"{units.by_unit(run.latency_after_s, 's')}")


def _feeds(run: Confirmation) -> str:
    """The feeds line; empty for one feed (the checks then name no feed)."""
    if len(run.feeds) < 2:
        return ""
    return f"outputs compared on {len(run.feeds)} feeds: {', '.join(run.feeds)}"


def _check(check: OutputCheck, several: bool) -> tuple[str, str]:
    """(what the outputs did after the transform, its verdict: ok or DIVERGED)."""
    where = f"{check.output}, {check.feed}" if several else check.output
    moved = (f"max error {check.error:.3g} of the largest value"
             if not check.nonfinite else check.problem)
    text = f"outputs after {check.transform}: {moved} ({where}), tolerance {check.tolerance:g}"
    return text, "ok" if check.ok else "DIVERGED"


def _confirm_lines(result: FixResult) -> list[str]:
    run = result.confirmation
    if run is None:
        return []
    lines = [_measured(run)]
    feeds = _feeds(run)
    if feeds:
        lines.append(f"  {feeds}")
    for check in run.checks:
        text, verdict = _check(check, bool(feeds))
        lines.append(f"  {text}: {verdict}")
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


def _target(result: FixResult) -> str:
    return result.output or ("nothing written" if result.advice or not result.steps
                             else "dry run, nothing written")


def render_text(result: FixResult) -> str:
    lines = [f"memlint fix: {result.model} -> {_target(result)}", ""]
    if result.advice:
        lines += ["a torch module is not rewritten; apply the fixes in code:", ""]
        lines += [*result.advice, ""]
    lines += step_lines(result) if not result.advice else []
    if not result.steps and not result.advice:
        lines.append(NOTHING_TO_APPLY)
    if result.comparison is not None:
        lines += ["", *_table(result)]
    lines += _still_there(result)
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


def _still_there(result: FixResult) -> list[str]:
    return [f"still there: {f.code} {f.name} on {f.nodes[0]} (still flagged after the fix)"
            for f in result.unresolved]


@dataclass(frozen=True)
class StepView:
    status: str  # as step_lines prints it: applied, refused, would apply
    name: str
    codes: str
    detail: str  # predicted saving; note
    call: str


@dataclass(frozen=True)
class CheckView:
    text: str
    verdict: str  # ok | DIVERGED


@dataclass(frozen=True)
class MeasuredView:
    headline: str
    feeds: str  # empty for one feed
    checks: tuple[CheckView, ...]


@dataclass(frozen=True)
class FixView:
    """What templates/diff.html.j2 prints around memlint diff's table: the text report's lines'
    content (step_lines, _confirm_lines), computed by the same helpers."""

    model: str
    target: str
    advice: tuple[str, ...]
    steps: tuple[StepView, ...]
    no_transform: str
    nothing: str
    unresolved: tuple[str, ...]
    measured: MeasuredView | None
    notes: tuple[str, ...]


def _measured_view(run: Confirmation | None) -> MeasuredView | None:
    if run is None:
        return None
    feeds = _feeds(run)
    return MeasuredView(_measured(run), feeds,
                        tuple(CheckView(*_check(c, bool(feeds))) for c in run.checks))


def html_view(result: FixResult) -> FixView:
    return FixView(
        model=result.model,
        target=_target(result),
        advice=result.advice,
        steps=tuple(StepView(_status(s), s.transform.name, _codes(s), _detail(s), s.call)
                    for s in ([] if result.advice else result.steps)),
        no_transform=_no_transform(result),
        nothing=NOTHING_TO_APPLY if not result.steps and not result.advice else "",
        unresolved=tuple(_still_there(result)),
        measured=_measured_view(result.confirmation),
        notes=result.notes,
    )


def render_html(result: FixResult) -> str:
    comparison = None if result.comparison is None else diff_render.html_view(
        result.comparison, ("metric", "before", "after", "change"))
    return diff_render.render_page(f"{result.model} → {_target(result)}", comparison,
                                   html_view(result))


RENDER = {"text": render_text, "json": render_json, "markdown": render_markdown,
          "html": render_html}
