"""The Markdown report (pull-request comments): content, escaping, the size limit, determinism."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from jinja2 import nodes

from memlint import api
from memlint.config import Config, Suppression
from memlint.findings import Suppressed
from memlint.frontends.onnx import load_onnx_proto
from memlint.frontends.onnx_text import parse_example
from memlint.report import markdown

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "sample_models" / "gpt2_decoder_step.onnx"
GPT2_DIMS = {"batch_size": 4, "sequence_length": 1, "past_sequence_length": 128}
EVIL = "</script><img src=x onerror=alert(1)>|`x`_*y*"
NOISE_OFF = Config(min_share=0.0, min_saving_s=0.0)


@pytest.fixture(scope="module")
def gpt2_report():  # replayed as a CUDA graph: the figures below have no launch cost
    return api.lint(GPT2, hw="a100", dims=GPT2_DIMS, cuda_graphs=True)


@pytest.fixture(scope="module")
def gpt2_md(gpt2_report) -> str:
    return markdown.render(gpt2_report)


def lint_text(text: str, name: str = "model.onnx", config: Config = NOISE_OFF, rename=None):
    proto = parse_example(text)
    for node in proto.graph.node:
        node.name = rename or node.name
    return api.lint(load_onnx_proto(proto, Path(name)), hw="a100", config=config)


def many_gemvs(count: int):
    """`count` GEMVs of distinct widths, so the engine groups none of them: x[1,1024] times
    w_i[1024, 1024 + 8i] float16, intensity ~1 FLOP/B, each flagged by ML101 (plus one ML106)."""
    outputs = ", ".join(f"float16[1,{1024 + 8 * i}] y{i}" for i in range(count))
    weights = ", ".join(f"float16[1024,{1024 + 8 * i}] w{i}" for i in range(count))
    body = "\n".join(f"  y{i} = MatMul(x, w{i})" for i in range(count))
    return lint_text(f"g (float16[1,1024] x) => ({outputs}) <{weights}> {{\n{body}\n}}")


def table_cells(line: str) -> list[str]:
    """The cells of a table row: split at pipes that are not backslash-escaped."""
    return re.split(r"(?<!\\)\|", line)[1:-1]


# --- content -----------------------------------------------------------------------------------


def test_content(gpt2_report, gpt2_md):
    text = gpt2_md
    first = text.splitlines()[0]
    assert first == (
        "### memlint: gpt2\\_decoder\\_step.onnx on NVIDIA A100 SXM4 80GB: 9 findings (9 warning)"
    )
    assert "| Predicted latency | **3.48 us** |" in text
    assert "| Memory-bound | **100.0%** |" in text
    assert "#### Top findings" in text
    assert text.count("> **Fix:**") == len(gpt2_report.findings) == 9
    # each finding: its rank, code, name and saving; the best fix with its saving
    top = gpt2_report.findings[0]
    assert f"**1. {top.code} copied-kv-cache** (warning): saves **1.03 us**" in text
    assert "(saves 1.03 us)" in text
    # details: every finding's evidence, the slowest operators, conventions
    assert "<summary>Evidence and fixes of all 9 findings</summary>" in text
    assert "| Past KV cache | 262 kB |" in text  # the evidence's label, not its key
    assert "past\\_bytes" not in text
    assert "<summary>Top 15 operators by predicted time</summary>" in text
    assert (
        "| /lm\\_head/MatMul | MatMul | 1.02 MFLOP | 530 kB | 1.93 FLOP/B | memory | 260 ns "
        "| 7.5% |" in text
    )
    assert "<summary>Conventions</summary>" in text
    assert "4 findings below the noise thresholds hidden" in text
    assert "Note:" not in text  # nothing was cut


def test_renders_as_github_markdown(gpt2_md):
    lines = gpt2_md.splitlines()
    # tables have a blank line before and after them
    for i, line in enumerate(lines):
        if line.startswith("|"):
            if not lines[i - 1].startswith("|"):
                assert lines[i - 1] == "", (i, line)
            if i + 1 < len(lines) and not lines[i + 1].startswith("|"):
                assert lines[i + 1] == "", (i, line)
    # <details>: a blank line after </summary> and before </details>, so Markdown renders inside
    for i, line in enumerate(lines):
        if line.startswith("<summary>"):
            assert lines[i - 1] == "<details>" and lines[i + 1] == ""
        if line == "</details>":
            assert lines[i - 1] == ""
    assert gpt2_md.count("<details>") == gpt2_md.count("</details>") == 3
    # every row of a table has as many cells as its header
    header = None
    for line in lines:
        if line.startswith("|"):
            header = header or len(table_cells(line))
            assert len(table_cells(line)) == header, line
        else:
            header = None


def test_suppressed_listed(gpt2_report):
    finding = gpt2_report.findings[0]
    report = dataclasses.replace(
        gpt2_report,
        findings=gpt2_report.findings[1:],
        suppressed=(Suppressed(finding, reason="tracked | in ISSUE-7", pattern="*/Concat_*"),),
        unused_suppressions=(Suppression("ML104", "/nothing/*", "old layer"),),
    )
    text = markdown.render(report)
    assert "<summary>1 suppressed finding(s), 1 unused suppression(s)</summary>" in text
    assert "tracked \\| in ISSUE-7" in text and "\\*/Concat\\_\\*" in text
    assert "Unused suppression: ML104 on /nothing/\\* (old layer) matched no finding." in text


def test_no_findings(gpt2_report):
    text = markdown.render(dataclasses.replace(gpt2_report, findings=(), hidden_as_noise=0))
    assert "No findings" in text and "Top findings" not in text
    assert "Evidence and fixes" not in text


# --- escaping ----------------------------------------------------------------------------------


def test_md_filter():
    assert markdown.md("a|b`c<d>&e_f*g[h]\\i~j$k\nl") == (
        "a\\|b\\`c&lt;d&gt;&amp;e\\_f\\*g\\[h\\]\\\\i\\~j\\$k l"
    )
    assert markdown.html_text("<b>&\n") == "&lt;b&gt;&amp; "


def test_names_are_escaped():
    report = lint_text(
        "g (float16[1,1024] x) => (float16[1,4096] y) <float16[1024,4096] w> { y = MatMul(x, w) }",
        name="<b>evil.onnx",
        rename=EVIL,
    )
    assert report.findings and EVIL in report.findings[0].nodes
    text = markdown.render(report)
    assert "<img" not in text and "<b>" not in text and "</script>" not in text
    escaped = "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;\\|\\`x\\`\\_\\*y\\*"
    assert escaped in text
    assert "### memlint: &lt;b&gt;evil.onnx on" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {escaped} |"))
    assert len(table_cells(row)) == 8  # the | in the name did not split the cell


def test_every_output_is_filtered():
    """Autoescape is off for Markdown, so each {{ ... }} must pass the md or html filter."""
    env = markdown.environment()
    assert env.autoescape is False
    source = env.loader.get_source(env, "report.md.j2")[0]
    outputs = 0
    for output in env.parse(source).find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            outputs += 1
            assert isinstance(child, nodes.Filter) and child.name in ("md", "html"), child
    assert outputs > 40


# --- size limit --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemv_report():
    report = many_gemvs(400)
    assert len(report.findings) == 401  # 400 x ML101 + 1 x ML106, none grouped, none hidden
    return report


def test_details_dropped_first(gemv_report):
    text = markdown.render(gemv_report)  # top 15: the evidence of 401 findings does not fit
    assert len(text) <= markdown.LIMIT
    assert "Evidence and fixes" not in text
    assert "<summary>Top 15 operators by predicted time</summary>" in text  # small: kept
    assert "<summary>Conventions</summary>" in text
    assert text.count("> **Fix:**") == 15
    assert "the details (evidence and fixes) are left out" in text
    assert "386 more finding(s) in the full report" in text


def test_findings_cut_from_the_end(gemv_report):
    text = markdown.render(gemv_report, top=1000)
    assert len(text) <= markdown.LIMIT
    assert "<details>" not in text
    shown = text.count("> **Fix:**")
    assert 50 < shown < 401
    ranks = [int(r) for r in re.findall(r"^\*\*(\d+)\. ML1", text, re.M)]
    assert ranks == list(range(1, shown + 1))  # the first ones, in order
    note = next(line for line in text.splitlines() if line.startswith("> **Note:**"))
    assert f"{401 - shown} findings after the first {shown} are left out" in note
    assert "--format html" in note


# --- determinism -------------------------------------------------------------------------------


def test_deterministic(gpt2_report, gpt2_md):
    assert markdown.render(gpt2_report) == gpt2_md
    stamped = markdown.render(gpt2_report, timestamp="2025-01-02T03:04:05Z")
    assert "2025-01-02T03:04:05Z" in stamped.splitlines()[2]
    assert "2025" not in gpt2_md
