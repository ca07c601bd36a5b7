"""Markdown rendering for pull-request comments (GitHub-flavoured).

The comment holds a title line, a summary table, the top findings with their best fix and
saving, and <details> blocks (every finding's evidence and fixes, the slowest operators, the
suppressed findings, the conventions). GitHub refuses comments over 65,536 characters, so the
text stays under LIMIT: <details> blocks are dropped first, then findings from the end, and a
note says what was cut.

Autoescape is off (this is not HTML), so every data field in templates/report.md.j2 passes an
explicit filter: `md` for Markdown text (backslash-escapes the characters that start Markdown
syntax and writes <, > and & as HTML entities, so `<img ...>` shows as text) and `html` for text
inside HTML tags such as <summary>. Both write control characters as visible escapes and keep
names from a model from acting on GitHub: a word joiner (U+2060) after "@" stops @mentions
(and e-mail autolinks), and one inside "http://", "https://", "ftp://" and "www." stops bare
URLs from becoming links.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import escape

from memlint import units
from memlint.core.report import Report
from memlint.report import view
from memlint.report.view import inert

LIMIT = 65_000  # characters; GitHub's limit for a comment body is 65,536
DEFAULT_TOP = 15
# <details> blocks, in the order they are dropped when the comment is too long.
DETAILS = ("conventions", "operators", "suppressed", "evidence")
_DETAIL_NAMES = {
    "conventions": "conventions",
    "operators": "top operators",
    "suppressed": "suppressed findings",
    "evidence": "evidence and fixes",
}

_MD_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "\\": "\\\\",
        "`": "\\`",
        "|": "\\|",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "~": "\\~",
        "$": "\\$",
        "\r": " ",
        "\n": " ",
    }
)


_WORD_JOINER = "\u2060"
# What GitHub turns into links or pictures, each broken by a word joiner after its lead-in:
# @mentions and e-mail, bare URLs, issue references (#1, owner/repo#1, GH-1) and :emoji: codes.
_ACTIVE = re.compile(
    r"@(?=[A-Za-z0-9])|(?i:\b(?:https?|ftp)(?=://)|\bwww(?=\.))|#(?=\d)|(?i:\bGH)(?=-\d)"
    r"|:(?=[a-z0-9_+-]*[a-z][a-z0-9_+-]*:)"  # an emoji code has a letter; a time does not
)


def _inactive(text: str) -> str:
    """No mention, autolink, issue reference or emoji: a word joiner breaks each pattern."""
    return _ACTIVE.sub(lambda m: m.group(0) + _WORD_JOINER, text)


def md(value: object) -> str:
    """Text safe in a Markdown paragraph or table cell: shown as written, never as markup."""
    return _inactive(inert(str(value), keep="\r\n").translate(_MD_ESCAPES))


def html_text(value: object) -> str:
    """Text safe inside an HTML element of the comment (e.g. <summary>)."""
    return _inactive(str(escape(inert(str(value).replace("\n", " ")))))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("memlint.templates", "."),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md
    env.filters["html"] = html_text
    return env


def render(report: Report, *, top: int = DEFAULT_TOP, timestamp: str | None = None) -> str:
    """The report as a Markdown comment of at most LIMIT characters."""
    model = view.build(report, timestamp=timestamp)
    template = environment().get_template("report.md.j2")
    wanted = min(max(top, 0), len(model.findings))
    operators = tuple(r for r in model.nodes_by_time[: max(top, 0)] if r.time_value > 0)
    present = {
        "conventions": True,
        "operators": bool(operators),
        "suppressed": bool(model.suppressed or model.unused),
        "evidence": bool(model.findings),
    }
    available = tuple(d for d in DETAILS if present[d])

    def attempt(shown: int, details: tuple[str, ...]) -> str:
        dropped = tuple(d for d in available if d not in details)
        return template.render(
            view=model,
            findings=model.findings[:shown],
            more_findings=len(model.findings) - shown,
            operators=operators,
            details=details,
            cut_note=_cut_note(dropped, wanted - shown, shown),
        )

    def fits(shown: int, details: tuple[str, ...]) -> bool:
        return len(attempt(shown, details)) <= LIMIT

    if fits(wanted, available):
        return attempt(wanted, available)
    # Drop <details> blocks in DETAILS order until the rest fits, then take back the ones that
    # were dropped on the way but fit beside the rest (the big evidence block goes last).
    kept = list(available)
    for name in available:
        kept.remove(name)
        if fits(wanted, tuple(kept)):
            for back in reversed(available[: available.index(name)]):
                trial = tuple(d for d in available if d in kept or d == back)
                if fits(wanted, trial):
                    kept = list(trial)
            return attempt(wanted, tuple(kept))
    low, high = 0, wanted  # the largest count of findings that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle, ()):
            low = middle
        else:
            high = middle - 1
    text = attempt(low, ())
    if len(text) > LIMIT:  # the header alone is too long (enormous names): cut it bluntly
        note = "\n\n> **Note:** cut at 65,000 characters.\n"
        text = text[: LIMIT - len(note)] + note
    return text


def _cut_note(dropped: tuple[str, ...], findings_cut: int, shown: int) -> str:
    cut = [_DETAIL_NAMES[d] for d in dropped]
    parts = []
    if cut:
        parts.append("the details (" + ", ".join(cut) + ")")
    if findings_cut:
        parts.append(
            f"{findings_cut} finding{'s' if findings_cut != 1 else ''} after the first {shown}"
            if shown
            else f"all {findings_cut} findings"
        )
    if not parts:
        return ""
    return (
        "This comment was cut to fit GitHub's comment size limit: "
        + " and ".join(parts)
        + " are left out. Run memlint with --format html for the full report."
    )


def combine(outcomes: Sequence) -> str:
    """Many models: each report, then a table of every model's result."""
    lines = ["| model | result |", "|---|---|"]
    for o in outcomes:
        result = f"error: {o.error}" if o.error else (
            f"{o.findings} finding(s), {units.seconds(o.latency_s)}"
            + (" **fails**" if o.fails else ""))
        lines.append(f"| {md(o.model)} | {md(result)} |")
    parts = [o.rendered.rstrip("\n") for o in outcomes if not o.error]
    return "\n\n".join([*parts, "\n".join(lines)]) + "\n"
