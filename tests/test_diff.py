"""`memlint diff --format html`: one self-contained page with the text format's numbers (the same
`diff_render.rows`), the findings fixed and new, and every model-supplied string escaped."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import onnx

from memlint.cli import main
from memlint.frontends.onnx_text import parse_example

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
OLD, NEW = SAMPLES / "gpt2_small_graph_only.onnx", SAMPLES / "gpt2_decoder_step.onnx"
VOID = {"meta", "br", "link", "img", "hr", "input"}


class Page(HTMLParser):
    """Well-formedness (every element closed, in order) and the text of each table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[str] = []
        self.errors: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.open.append(tag)
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:]}")
            return
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.open, (page.errors, page.open)
    return page


def diff(capsys, *args: str | Path) -> tuple[int, str]:
    code = main(["diff", *map(str, args)])
    return code, capsys.readouterr().out


def test_html_diff_prints_the_text_formats_numbers(capsys, tmp_path):
    gate = ("--max-regression", "findings=5%")
    code, text = diff(capsys, OLD, NEW, *gate)
    # 12 findings -> 13 (+8.3%) breaches the 5% gate: exit 1 in every format
    assert code == 1
    out = tmp_path / "diff.html"
    assert diff(capsys, OLD, NEW, *gate, "--format", "html", "-o", out) == (1, "")
    html = out.read_text()
    page = parse(html)
    assert "script" not in page.tags and "http" not in html  # self-contained, nothing to fetch
    assert page.cells[:5] == ["metric", "old", "new", "change", "gate"]
    # the text table's rows (cells two or more spaces apart), each a row of the page
    body = text.split("\n\n")[1].splitlines()[1:]
    for line in body:
        cells = re.split(r" {2,}", line)
        assert len(cells) >= 4, line
        start = page.cells.index(cells[0])
        assert page.cells[start:start + len(cells)] == cells, line
    assert "FAIL (max +5%)" in page.cells and "passes its gates" not in html
    # the Markdown's findings: the new ML102 chain, the fixed pairs (by code, every node)
    tally = re.search(r"\d+ new finding\(s\), \d+ fixed", text).group()
    assert tally in html
    assert "unfused-elementwise-chain" in html and "/transformer/h.9/mlp/c_fc/MatMul" in html


CHAIN = """
g (float[8,512,3072] h) => (float[8,512,3072] z)
  <float s = {1.4142135}, float one = {1.0}, float half = {0.5}> {
  d = Div(h, s)
  e = Erf(d)
  p = Add(e, one)
  m = Mul(h, p)
  z = Mul(m, half)
}
"""
FUSED = """
g (float[8,512,3072] h) => (float[8,512,3072] z) {
  z = Gelu(h)
}
"""
HEADER = '<ir_version: 9, opset_import: ["" : 20]>\n'
SCRIPT = "<script>alert(1)</script>"


def test_html_diff_escapes_paths_node_names_and_messages(capsys, tmp_path):
    # a folder "<script>alert(1)<" holding "script>.onnx": the path reads <script>alert(1)</script>
    folder = tmp_path / "<script>alert(1)<"
    folder.mkdir()
    old, new = folder / "script>.onnx", tmp_path / "new.onnx"
    assert SCRIPT in str(old)
    chain = parse_example(HEADER + CHAIN)
    chain.graph.node[0].name = SCRIPT  # the Div: a fixed (code, node) pair the page lists
    onnx.save(chain, old)
    onnx.save(parse_example(HEADER + FUSED), new)
    code, html = diff(capsys, old, new, "--format", "html")
    assert code == 0
    parse(html)
    assert "<script" not in html
    assert "<dd class=\"mono\">" + str(old).replace("<", "&lt;").replace(">", "&gt;") in html
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in html  # the fixed Div
    # a finding's message, through the API: the page is the same function's
    import memlint
    from memlint.diff import diff as compare
    from memlint.report import diff_render

    result = compare(memlint.lint(str(new), hw="a100"), memlint.lint(str(old), hw="a100"))
    assert result.new_findings  # the chain is new when the files swap roles
    hostile = dataclasses.replace(result.new_findings[0], message=f"{SCRIPT} & more")
    html = diff_render.render_html(dataclasses.replace(result, new_findings=(hostile,)))
    parse(html)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html

