"""A rule's documentation as Markdown: what `memlint rule CODE` prints and docs/rules.md holds."""

from __future__ import annotations

import inspect

from memlint.rulebase import SECTIONS, Example, Rule


def scope_of(rule: Rule) -> str:
    return "the whole graph" if rule.op_types is None else ", ".join(sorted(rule.op_types))


def _estimate_line(rule: Rule) -> str:
    if getattr(rule, "estimate", "both") == "as_written":
        return ("Its saving changes the as-written estimate only: a fusing runtime already does "
                "the fix, and the fused estimate assumes it (docs/cost-model.md).")
    return "Its saving changes both estimates, as written and fused (docs/cost-model.md)."


def rule_doc(rule: Rule, origin: str = "memlint") -> str:
    sections = rule.doc_sections()
    lines = [
        f"# {rule.name} ({rule.code})",
        "",
        f"Severity: {rule.severity.value}. Checks: {scope_of(rule)}. From: {origin}.",
        "",
        _estimate_line(rule),
        "",
        sections[""],
        "",
    ]
    for title in SECTIONS:
        lines += [f"## {title}", "", sections[title], ""]
    extra = [t for t in sections if t and t not in SECTIONS]
    for title in extra:
        lines += [f"## {title}", "", sections[title], ""]
    if rule.options:
        lines += ["## Options", ""]
        for key, option in rule.options.items():
            lines.append(f"- `{key}` (default `{option.default!r}`): {option.help}")
        lines += [
            "",
            f"Set them in `[tool.memlint.rules.{rule.code}]` or with "
            f"`--rule-option {rule.code}.OPTION=VALUE`.",
            "",
        ]
    lines += ["## Example that fires", "", *_example(rule.bad), "", "## Example that does not fire",
              "", *_example(rule.good), ""]
    return "\n".join(lines).rstrip() + "\n"


def _example(example: Example) -> list[str]:
    lines = ["```", inspect.cleandoc(example.onnx_text), "```"]
    context = [f"on {example.hw}"]
    if example.dims:
        context.append("with " + ", ".join(f"{k}={v}" for k, v in example.dims.items()))
    if example.options:
        context.append("and options " + ", ".join(f"{k}={v!r}" for k, v in example.options.items()))
    return [*lines, f"({' '.join(context)})"]
