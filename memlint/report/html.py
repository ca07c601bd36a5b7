"""HTML rendering: one self-contained page (CSS, JS and SVG inline; no network) for people.

The page prints the view model (memlint.report.view) through templates/report.html.j2. Node
names, messages and metadata are data, never markup: the Jinja2 environment autoescapes
everything (explicitly: `select_autoescape` does not match `*.html.j2`), and the node table's
data travels as JSON in a `<script type="application/json">` island with `<`, `>` and `&`
written as \\u003c, \\u003e and \\u0026, so no text in it can close the script element. The
script renders the table from that island PAGE_SIZE rows at a time (sortable, filterable), so
a graph of many thousands of nodes stays responsive; the slowest PAGE_SIZE rows are also
printed as static markup, for readers without scripts and for print. Control characters and
invisible format characters (bidi overrides) in any printed string and in the island's cells
are written as visible escapes (view.inert), so a name shows exactly what it holds.
"""

from __future__ import annotations

import json
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from memlint.core.report import Report
from memlint.report import view

PAGE_SIZE = 200  # node-table rows rendered at a time

# Columns of the node-table data island, in order (the script reads them by name).
NODE_COLUMNS = (
    "index", "name", "anchor", "op", "family", "flops", "bytes_weights", "bytes_activations",
    "bytes_kv", "bytes", "intensity", "bound", "time", "share", "share_width", "status", "note",
    "source", "flops_value", "weights_value", "activations_value", "kv_value", "bytes_value",
    "intensity_value", "time_value",
)  # fmt: skip

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _finalize(value: object) -> object:
    """Every {{ expression }}: plain strings made inert before autoescaping (markup is ours);
    line breaks stay (multi-line tooltips; whitespace in HTML)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return view.inert(value, keep="\n")
    return value


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("memlint.templates", "."),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )


def json_island(data: object) -> Markup:
    """JSON that is safe as the text of a <script type="application/json"> element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return Markup(text)


def node_data(rows: tuple[view.NodeRow, ...]) -> dict[str, object]:
    return {
        "columns": list(NODE_COLUMNS),
        "page_size": PAGE_SIZE,
        "rows": [[_cell(getattr(row, column)) for column in NODE_COLUMNS] for row in rows],
    }


def _cell(value: object) -> object:
    return view.inert(value, keep="\n") if isinstance(value, str) else value


def render(report: Report, *, timestamp: str | None = None) -> str:
    """The report as one HTML document, byte-identical run to run unless `timestamp` is given."""
    model = view.build(report, timestamp=timestamp)
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            view=model,
            static_rows=model.nodes_by_time[:PAGE_SIZE],
            page_size=PAGE_SIZE,
            node_json=json_island(node_data(model.nodes)),
        )
    )
