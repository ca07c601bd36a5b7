"""Renderers: one Report, many formats. Each format module has `render(report, **options) -> str`.

| format   | module                        | for                                  |
|----------|-------------------------------|--------------------------------------|
| text     | memlint.report.text           | terminals and logs                   |
| json     | memlint.report.json_report    | machines (docs/json-schema.md)       |
| markdown | memlint.report.markdown       | pull-request comments                |
| html     | memlint.report.html           | people who review models             |
| sarif    | memlint.report.sarif          | code scanning (SARIF 2.1.0)          |
| github   | memlint.report.github         | GitHub Actions workflow annotations  |
"""

from __future__ import annotations

import importlib
import inspect

from memlint.errors import OutputError

FORMAT_MODULES = {
    "text": "memlint.report.text",
    "json": "memlint.report.json_report",
    "markdown": "memlint.report.markdown",
    "html": "memlint.report.html",
    "sarif": "memlint.report.sarif",
    "github": "memlint.report.github",
}


def render(report, fmt: str, *, top: int = 15, timestamp: str | None = None) -> str:  # noqa: ANN001
    """The report in format `fmt`; options a format does not take are not passed to it."""
    try:
        module = importlib.import_module(FORMAT_MODULES[fmt])
    except KeyError:
        raise OutputError(f"unknown report format {fmt!r} (one of {', '.join(FORMAT_MODULES)})") from None
    renderer = module.render
    accepted = inspect.signature(renderer).parameters
    options = {k: v for k, v in (("top", top), ("timestamp", timestamp)) if k in accepted}
    return renderer(report, **options)
