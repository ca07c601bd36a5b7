"""Renderers: one Report, many formats. Each format module has `render(report, **options) -> str`
and, where several models' reports combine other than one after another, `combine(outcomes)`.

FORMATS is the one table of output formats: the CLI's --format choices, many-model runs and the
tests read it. A format module only renders what it is given (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

from memlint.errors import OutputError


@dataclass(frozen=True)
class Format:
    name: str  # what --format takes
    module: str  # the module whose render(report, ...) writes it
    suffix: str  # a file name's usual ending
    purpose: str
    many: bool = True  # several models' reports combine into one document


FORMATS = {
    f.name: f
    for f in (
        Format("text", "memlint.report.text", "txt", "terminals and logs"),
        Format("json", "memlint.report.json_report", "json",
               "machines (docs/json-schema.md): exactly Report.to_dict()"),
        Format("markdown", "memlint.report.markdown", "md", "pull-request comments"),
        Format("html", "memlint.report.html", "html", "people who review models", many=False),
        Format("sarif", "memlint.report.sarif", "sarif", "code scanning (SARIF 2.1.0)"),
        Format("github", "memlint.report.github", "txt", "GitHub Actions workflow annotations"),
    )
}


def combine(outcomes: Sequence, fmt: str) -> str:
    """One document for many models (memlint.runner.ModelOutcome rows: model, rendered, error,
    findings, latency_s, fails), in the format's own way of holding several: its module's
    combine(outcomes), else the rendered reports one after another."""
    module = importlib.import_module(FORMATS[fmt].module)
    if hasattr(module, "combine"):
        return module.combine(outcomes)
    return "\n\n".join(o.rendered.rstrip("\n") for o in outcomes if not o.error) + "\n"


def render(report, fmt: str, *, top: int | None = None, timestamp: str | None = None,  # noqa: ANN001
           verbose: bool = False) -> str:
    """The report in format `fmt`; options a format does not take are not passed to it."""
    try:
        module = importlib.import_module(FORMATS[fmt].module)
    except KeyError:
        raise OutputError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})") from None
    renderer = module.render
    accepted = inspect.signature(renderer).parameters
    given = (("top", top), ("timestamp", timestamp), ("verbose", verbose))  # top None: default
    options = {k: v for k, v in given if k in accepted and not (k == "top" and v is None)}
    return renderer(report, **options)
