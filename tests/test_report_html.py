"""The HTML report and its view layer: structure, escaping, determinism, and a headless-Chromium
run that checks the page's script renders without errors."""

from __future__ import annotations

import dataclasses
import html as htmllib
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import markupsafe
import pytest

from memlint import api
from memlint.config import Config, Suppression
from memlint.costs import registry
from memlint.findings import Metric, Suppressed
from memlint.frontends.onnx import load_onnx_proto
from memlint.frontends.onnx_text import parse_example
from memlint.report import chart as chart_module
from memlint.report import html, view

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "sample_models" / "gpt2_decoder_step.onnx"
GPT2_DIMS = {"batch_size": 4, "sequence_length": 1, "past_sequence_length": 128}
EVIL = "</script><img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium or chromium-browser binary on PATH (headless check)"
)

# A GEMV that ML101 flags: [1,1024] x [1024,4096] float16 reads 8.4 MB of weights for
# 8.4 MFLOP, intensity ~1 FLOP/B, far below any ridge point.
_GEMV = "g (float16[1,1024] x) => (float16[1,4096] y) <float16[1024,4096] w> { y = MatMul(x, w) }"


@pytest.fixture(scope="module")
def gpt2_report():
    return api.lint(GPT2, hw="a100", dims=GPT2_DIMS)


@pytest.fixture(scope="module")
def gpt2_html(gpt2_report) -> str:
    return html.render(gpt2_report)


def evil_report():
    """A report whose node name, model path and producer are markup."""
    proto = parse_example(_GEMV)
    proto.graph.node[0].name = EVIL
    proto.producer_name = "<script>alert('producer')</script>"
    model = load_onnx_proto(proto, Path("/tmp/<b>evil</b>.onnx"))
    config = Config(min_share=0.0, min_saving_s=0.0)
    return api.lint(model, hw="a100", config=config)


def chain_report(count: int):
    """`count` Add nodes in a chain (each moves 12 kB of float32 activations)."""
    body = "\n".join(f"  y{i + 1} = Add(y{i}, y{i})" for i in range(count))
    text = f"g (float[1,1024] y0) => (float[1,1024] y{count}) {{\n{body}\n}}"
    return api.lint(load_onnx_proto(parse_example(text), Path("chain.onnx")), hw="a100")


def island(page: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="memlint-nodes">(.*?)</script>', page, re.S
    )
    assert match, "no node data island"
    return json.loads(match.group(1))


# --- structure ---------------------------------------------------------------------------------


def test_page_has_every_section(gpt2_report, gpt2_html):
    page = gpt2_html
    assert page.startswith("<!DOCTYPE html>")
    for section in ("summary", "roofline", "findings", "nodes", "conventions"):
        assert f'<section id="{section}"' in page
    assert page.count('<svg class="roofline"') == 1
    assert '<table class="nodes">' in page
    assert page.count('<article class="finding') == len(gpt2_report.findings) > 0
    assert "NVIDIA A100 SXM4 80GB" in page and "nvidia-a100-sxm4-80gb" in page
    for line in gpt2_report.findings[0].message, *(f.text for f in gpt2_report.findings[0].fixes):
        assert str(markupsafe.escape(line)) in page  # as autoescape writes it: ' is &#39;
    # dims are printed bound, and the conventions are stated
    assert "batch_size=4" in page and "past_sequence_length=128" in page
    assert htmllib.escape(view.CONVENTIONS[0], quote=False) in page


def test_findings_link_to_node_rows(gpt2_report, gpt2_html):
    anchors = {row[2] for row in island(gpt2_html)["rows"]}
    links = re.findall(r'<a href="#(node-[^"]+)">', gpt2_html)
    assert links, "no finding or chart point links to a node"
    assert set(links) <= anchors
    # the slowest node's row is also printed as static markup (readable without scripts)
    slowest = max(gpt2_report.nodes, key=lambda n: n.timing.predicted_latency_s)
    assert f'<tr id="{view.node_anchors([slowest])[0]}">' in gpt2_html
    # the first finding links every node it names
    first = gpt2_report.findings[0]
    for name in first.nodes[: view.FINDING_NODES_SHOWN]:
        assert f">{htmllib.escape(name)}</a>" in gpt2_html


def test_node_data_island_holds_every_node(gpt2_report, gpt2_html):
    data = island(gpt2_html)
    assert data["columns"] == list(html.NODE_COLUMNS)
    assert len(data["rows"]) == len(gpt2_report.nodes) == 222
    names = [row[data["columns"].index("name")] for row in data["rows"]]
    assert names == [n.name for n in gpt2_report.nodes]


def test_self_contained(gpt2_html):
    # the SVG namespace is the only URL; no external script, style, font or image
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", gpt2_html))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert "<link" not in gpt2_html
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", gpt2_html)
    assert "@import" not in gpt2_html and "@font-face" not in gpt2_html
    assert "@media print" in gpt2_html


def test_large_graph_is_paginated():
    report = chain_report(450)
    page = html.render(report)
    assert len(island(page)["rows"]) == 450
    # only one page of rows is static markup; the script renders the rest on demand
    assert page.count('<tr id="node-') == html.PAGE_SIZE == 200


def test_suppressed_and_unused_are_listed(gpt2_report):
    finding = gpt2_report.findings[0]
    report = dataclasses.replace(
        gpt2_report,
        findings=gpt2_report.findings[1:],
        suppressed=(Suppressed(finding, reason="tracked in ISSUE-7", pattern="*/Concat_*"),),
        unused_suppressions=(Suppression("ML104", "/nothing/*", "old layer"),),
    )
    page = html.render(report)
    assert '<section id="suppressed">' in page
    assert "tracked in ISSUE-7" in page and "*/Concat_*" in page
    assert "/nothing/*" in page and "old layer" in page


def test_no_findings_says_so(gpt2_report):
    page = html.render(dataclasses.replace(gpt2_report, findings=(), hidden_as_noise=0))
    assert "No findings" in page
    assert '<article class="finding' not in page


# --- escaping ----------------------------------------------------------------------------------


def test_markup_in_names_is_text():
    report = evil_report()
    assert any(EVIL in f.nodes for f in report.findings), "the GEMV should be flagged"
    page = html.render(report)
    assert "<img" not in page
    assert "<script>alert" not in page
    assert "<b>evil" not in page
    escaped = htmllib.escape(EVIL)  # &lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;
    assert escaped in page  # finding links, static row and SVG <title>
    svg = page[page.index('<svg class="roofline"') : page.index("</svg>")]
    assert escaped in svg
    # in the JSON island, < > & are \u escapes: no text can close the script element
    raw = re.search(r'id="memlint-nodes">(.*?)</script>', page, re.S).group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    assert "\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e" in raw
    assert island(page)["rows"][0][1] == EVIL


def test_json_island_escapes():
    text = str(html.json_island({"name": "a</script>&<b>\u2028"}))
    assert text == '{"name":"a\\u003c/script\\u003e\\u0026\\u003cb\\u003e\\u2028"}'
    assert json.loads(text) == {"name": "a</script>&<b>\u2028"}


def test_environment_autoescapes():
    env = html.environment()
    assert env.autoescape is True
    assert env.undefined.__name__ == "StrictUndefined"
    # the templates never mark data safe themselves; only the JSON island arrives as Markup
    for name in ("report.html.j2", "html_chart.j2", "html_finding.j2"):
        source = env.loader.get_source(env, name)[0]
        assert "|safe" not in source.replace(" ", "") and "Markup" not in source


# --- determinism -------------------------------------------------------------------------------


def test_deterministic(gpt2_report, gpt2_html):
    assert html.render(gpt2_report) == gpt2_html
    assert "Generated" not in gpt2_html
    stamped = html.render(gpt2_report, timestamp="2025-01-02T03:04:05Z")
    assert "2025-01-02T03:04:05Z" in stamped and "Generated" in stamped


def test_chart_coordinates_are_rounded(gpt2_html):
    svg = gpt2_html[gpt2_html.index('<svg class="roofline"') : gpt2_html.index("</svg>")]
    numbers = re.findall(r'(?:x|y|x1|x2|y1|y2|cx|cy|r|width|height)="(-?[\d.]+)"', svg)
    assert numbers and all(re.fullmatch(r"-?\d+(\.\d)?", n) for n in numbers), numbers[:20]


# --- view layer --------------------------------------------------------------------------------


def test_evidence_formatted_by_unit():
    cases = [
        (Metric("past_bytes", 262144, "B"), "262 kB"),
        (Metric("copy_time_s", 2.591e-7, "s"), "259 ns"),
        (Metric("intensity", 1.92, "FLOP/B"), "1.92 FLOP/B"),
        (Metric("fused_flops", 280704, "FLOP"), "281 kFLOP"),
        (Metric("share", 0.0746, "fraction"), "7.5%"),
        (Metric("nodes", 4, ""), "4"),
        (Metric("score_passes", 10.0, ""), "10"),
        (Metric("ratio", 0.123456, ""), "0.1235"),
        (Metric("rows", 24, "rows"), "24 rows"),
    ]
    for metric, text in cases:
        assert view.evidence_value(metric) == text


def test_time_by_kind_adds_up(gpt2_report):
    buckets = view.time_by_kind(gpt2_report)
    # a100 has a launch cost per kernel: its bucket holds kernels x launch
    assert set(buckets) == {"weights", "activations", "kv_cache", "compute", "launch"}
    assert buckets["launch"] == gpt2_report.summary.kernels * 2.4e-6
    assert math.isclose(
        sum(buckets.values()), gpt2_report.summary.predicted_latency_s, rel_tol=1e-9
    )
    # GPT-2 decoding at batch 4 is memory-bound throughout (text report: 100.0%), so no time is
    # compute-bound. The cache is read once, 4 sequences x 2 layers x (K, V) x 128 cached tokens
    # x 128 x 4 B = 1,048,576 B, and the new token written, 4 x 2 x 2 x 1 x 128 x 4 = 8,192 B;
    # its copies (the Concat into present, the Transpose of K) are activation traffic and,
    # with the other activations, move the most bytes.
    assert buckets["compute"] == 0.0
    assert gpt2_report.summary.bytes_read.kv_cache == 4 * 2 * 2 * 128 * 128 * 4
    assert gpt2_report.summary.bytes_written.kv_cache == 4 * 2 * 2 * 1 * 128 * 4
    assert buckets["activations"] > buckets["weights"] > buckets["kv_cache"] > 0


def test_time_by_op_has_top_and_other(gpt2_report):
    bars = view.build(gpt2_report, top_ops=3).time_by_op
    assert [b.label for b in bars[:3]] == ["MatMul", "Concat", "Transpose"]
    assert bars[-1].label.startswith("other (") and len(bars) == 4
    assert bars[0].width == "100.0"


def test_node_anchors_are_unique():
    class N:  # only .name is read
        def __init__(self, name: str) -> None:
            self.name = name

    anchors = view.node_anchors([N("a/b"), N("a-b"), N("a b"), N(""), N("<x>")])
    assert anchors == ("node-a-b", "node-a-b-2", "node-a-b-3", "node-unnamed", "node-x")


def test_roofline_chart(gpt2_report):
    chart = chart_module.roofline_chart(gpt2_report)
    spec = gpt2_report.hardware
    assert len(chart.roofs) == len(set(spec.peak_flops_per_s.values()))  # fp16 = bf16 share one
    assert [r.main for r in chart.roofs].count(True) == 1
    assert "tensor.bfloat16, tensor.float16" in " ".join(r.label for r in chart.roofs)
    placed = [n for n in gpt2_report.nodes if n.cost.flops and n.cost.bytes_moved]
    assert 0 < len(chart.points) <= len(placed)
    for p in chart.points:
        assert chart.left <= p.cx <= chart.right and chart.top <= p.cy <= chart.bottom
        assert chart_module._R_MIN <= p.r <= chart_module._R_MAX
    # area is predicted time: the slowest spot (or copies) gets the largest circle
    assert max(p.r for p in (*chart.points, *chart.strip)) == chart_module._R_MAX
    # memory-bound nodes sit on the bandwidth diagonal: attained = bandwidth x intensity
    lm_head = next(p for p in chart.points if p.title.startswith("/lm_head/MatMul\n"))
    assert "1.93 FLOP/B" in lm_head.title and "3.94 TFLOP/s attained" in lm_head.title


def test_chart_caps_drawn_points(gpt2_report):
    full = chart_module.roofline_chart(gpt2_report)
    capped = chart_module.roofline_chart(gpt2_report, limit=5)
    assert len(capped.points) == 5
    assert capped.points == full.points[:5]
    assert capped.dots and "as dots" in capped.note
    dotted = sum(int(d.title.split()[0].replace(",", "")) for d in capped.dots)
    placed = sum(1 for n in gpt2_report.nodes if chart_module.on_chart(n))
    drawn = sum(
        int(m.group(1).replace(",", ""))
        if (m := re.search(r"([\d,]+) nodes at this spot", p.title))
        else 1
        for p in capped.points
    )
    assert drawn + dotted == placed


def test_family_colours_come_from_the_cost_registry(gpt2_report):
    """A node's colour is the registry's family of its (domain, op_type); tests/test_op_table.py
    checks the table itself."""
    for node in gpt2_report.nodes:
        assert view.family_of(node) == registry.family_of(node.domain, node.op_type)
    node = gpt2_report.nodes[0]
    assert view.family_of(dataclasses.replace(node, op_type="MatMul", domain="")) == "matmul"
    # The domain is part of the identity: an op the registry does not know is "other".
    assert view.family_of(dataclasses.replace(node, op_type="MatMul", domain="com.example")) == (
        "other"
    )
    assert view.family_of(dataclasses.replace(node, op_type="SomeCustomOp")) == "other"
    assert view.FAMILIES[-1] == "other" and view.FAMILIES[:-1] == registry.FAMILIES


# --- headless Chromium -------------------------------------------------------------------------


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
        "--v=0", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@needs_chromium
def test_renders_in_headless_chromium(gpt2_report, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html.render(gpt2_report), encoding="utf-8")
    run = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert not _console_errors(run.stderr), _console_errors(run.stderr)
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the page script did not finish"
    assert '<svg class="roofline"' in dom and "<circle" in dom
    assert 'id="node-rows" data-rendered="script"' in dom
    assert dom.count('<tr id="node-') == html.PAGE_SIZE  # 222 nodes: first page of 200
    assert "page 1 of 2" in dom
    assert 'id="finding-1"' in dom and gpt2_report.findings[0].code in dom

    shot = tmp_path / "memlint_report.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copyfile(shot, "/tmp/memlint_report.png")


@needs_chromium
def test_markup_stays_text_in_the_browser(tmp_path):
    page = tmp_path / "evil.html"
    page.write_text(html.render(evil_report()), encoding="utf-8")
    run = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert not _console_errors(run.stderr), _console_errors(run.stderr)
    assert re.search(r'<body[^>]*data-ready="1"', run.stdout)
    assert "<img" not in run.stdout  # the script renders names with textContent
    assert "&lt;img src=x onerror=alert(1)&gt;" in run.stdout


# Clicks the page's controls the way a reader would and records what the table shows.
_INTERACTION = """<script>
(function () {
  var out = {}, body = document.getElementById("node-rows");
  function rows() { return body.querySelectorAll("tr").length; }
  function status() { return document.getElementById("page-status").textContent; }
  document.getElementById("page-next").click();
  out.page2 = [rows(), status()];
  var filter = document.getElementById("node-filter");
  filter.value = "softmax";
  filter.dispatchEvent(new Event("input"));
  out.filtered = [rows(), status()];
  filter.value = "";
  filter.dispatchEvent(new Event("input"));
  document.querySelector('th[data-key="name"] button').click();
  out.byName = body.querySelector("tr td.name").textContent;
  var bound = document.getElementById("node-bound");
  bound.value = "none";
  bound.dispatchEvent(new Event("change"));
  out.noWork = rows();
  var link = document.createElement("a");
  link.href = "#%s";
  document.body.appendChild(link);
  link.click();
  out.revealed = [!!document.getElementById("%s"), bound.value, status()];
  var point = document.querySelector("svg.roofline circle.pt");
  var tip = document.getElementById("tooltip");
  point.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: 20, clientY: 20}));
  out.tooltip = [tip.hidden, tip.textContent.split("\\n")[0], !!point.querySelector("title")];
  document.body.setAttribute("data-check", JSON.stringify(out));
})();
</script></body>"""


@needs_chromium
def test_table_controls_in_headless_chromium(gpt2_report, tmp_path):
    # The link goes to the memory-bound node whose name sorts last: hidden by the "none" filter
    # and, sorted by name, on page 2.
    last = max(
        (i for i, n in enumerate(gpt2_report.nodes) if n.timing.bound.value == "memory"),
        key=lambda i: gpt2_report.nodes[i].name,
    )
    anchor = view.node_anchors(gpt2_report.nodes)[last]
    page = tmp_path / "controls.html"
    text = html.render(gpt2_report).replace("</body>", _INTERACTION % (anchor, anchor))
    page.write_text(text, encoding="utf-8")
    run = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert not _console_errors(run.stderr), _console_errors(run.stderr)
    check = json.loads(htmllib.unescape(re.search(r'data-check="([^"]*)"', run.stdout).group(1)))
    assert check["page2"] == [22, "Rows 201\u2013222 of 222 \u00b7 page 2 of 2"]
    assert check["filtered"] == [2, "Rows 1\u20132 of 2 (filtered from 222)"]
    first = min(n.name for n in gpt2_report.nodes)
    assert check["byName"] == first
    no_work = sum(1 for n in gpt2_report.nodes if n.timing.predicted_latency_s == 0)
    assert check["noWork"] == min(no_work, html.PAGE_SIZE)
    # following a link to a node clears filters that hide it and opens the page that holds it
    assert check["revealed"][:2] == [True, ""]
    assert check["revealed"][2].endswith("page 2 of 2")
    # hovering the slowest circle shows its nodes in the tooltip (its <title> moved to data-tip):
    # the attention MatMuls of both layers, one spot whose area is their summed time
    assert check["tooltip"] == [False, "x2 /transformer/h.*/attn/MatMul", False]


# --- readable evidence, one LLM heading, a chart that separates points and shows copies -------


def test_evidence_shows_labels_not_raw_keys(gpt2_report, gpt2_html):
    wide = next(f for f in gpt2_report.findings if f.code == "ML106")
    assert wide.metric("saving_fp16_s") is not None  # the key stays in the data (JSON, SARIF)
    assert '<td title="saving_fp16_s">Saving at fp16</td>' in gpt2_html
    assert '<td title="weight_bytes_float32">float32 weights</td>' in gpt2_html
    shown = re.findall(r'<table class="evidence">(.*?)</table>', gpt2_html, re.S)
    cells = [c for table in shown for c in re.findall(r'<td title="[^"]*">([^<]*)</td>', table)]
    assert cells and not [c for c in cells if re.fullmatch(r"[a-z0-9_]+", c)], cells


def test_every_builtin_evidence_key_has_a_label():
    from memlint.engine import builtin_rule_classes
    from memlint.frontends.onnx_text import load_example
    from memlint.hardware import resolve
    from memlint.report.labels import evidence_label, is_known

    names = set()
    config = Config(min_share=0.0, min_saving_s=0.0)
    for rule in builtin_rule_classes():
        example = rule.bad
        report = api.check(api.analyse(load_example(example), resolve(example.hw)), config)
        names |= {m.name for f in report.findings for m in f.evidence}
    for model in ("gpt2_decoder_step", "bert_encoder", "small_cnn"):
        report = api.lint(ROOT / "sample_models" / f"{model}.onnx", config=config)
        names |= {m.name for f in report.findings for m in f.evidence}
    assert {"saving_fp16_s", "intensity", "score_passes", "kv_bytes_per_token"} <= names
    assert sorted(n for n in names if not is_known(n)) == []
    assert evidence_label("saving_int4_s") == "Saving at int4"
    assert evidence_label("my_plugin_metric_s") == "My plugin metric"  # a plugin's key


def test_llm_serving_is_one_heading(gpt2_html):
    headings = re.findall(r"<h[1-6][^>]*>([^<]*)</h[1-6]>", gpt2_html)
    assert headings.count("LLM serving") == 1, headings
    assert '<a href="#llm">LLM serving</a>' in gpt2_html  # the nav link to it


def test_chart_spreads_overlapping_circles_and_plots_copies(gpt2_report):
    chart = chart_module.roofline_chart(gpt2_report)
    # a decode step's matmuls all sit near one intensity: moved apart until none overlaps,
    # each with a line back to its spot
    for i, a in enumerate(chart.points):
        for b in chart.points[i + 1:]:
            gap = math.hypot(a.cx - b.cx, a.cy - b.cy) - a.r - b.r
            assert gap >= 0.5, (a.title.splitlines()[0], b.title.splitlines()[0], gap)
    moved = [p for p in chart.points if p.moved]
    assert moved and all((p.x0, p.y0) != (p.cx, p.cy) for p in moved)
    # identical layers share a circle whose area is their summed time
    shared = [p for p in chart.points if "nodes at this spot" in p.title]
    assert shared and all("each; together" in p.title for p in shared)
    # copies (0 FLOP: the KV-cache Concats, Transposes) are in the strip, largest first
    copies = [n for n in gpt2_report.nodes if chart_module.in_strip(n)]
    assert copies and chart.strip and chart.strip_height > 0
    assert chart.strip[0].title.startswith("x4 /transformer/h.*/attn/Concat_*")
    assert [p.r for p in chart.strip] == sorted((p.r for p in chart.strip), reverse=True)
    assert chart.height > chart.strip_top + chart.strip_height - 1
    assert "without arithmetic" in chart.note and "strip below" in chart.note
    page = html.render(gpt2_report)
    assert page.count('class="leader"') == len(moved)
    assert 'class="strip-bg"' in page and "No arithmetic (0 FLOP/B)" in page


def test_a_model_without_copies_has_no_strip():
    report = chain_report(3)  # Adds only: every node does arithmetic
    chart = chart_module.roofline_chart(report)
    assert chart.strip == () and chart.strip_height == 0 and chart.height == chart_module._H
    assert 'class="strip-bg"' not in html.render(report)
