"""The LLM sections reach every report format: serving numbers, sweep tables (and an SVG chart in
HTML); a model without a KV cache has none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlint.core.llm import ScenarioRequest
from memlint.report import render
from memlint.runner import LintRequest, lint_model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


@pytest.fixture(scope="module")
def decoder():
    request = LintRequest(dims=("past_sequence_length=128",), isolated=True,
                          scenario=ScenarioRequest(batch=2, sweeps=("batch=1,8,64",)))
    report, _ = lint_model(SAMPLES / "gpt2_decoder_step.onnx", request)
    return report


def test_every_format_has_the_llm_sections(decoder):
    text = render(decoder, "text")
    assert "LLM serving" in text and "LLM sweep over batch" in text
    markdown = render(decoder, "markdown")
    assert "#### LLM serving" in markdown and "#### LLM sweep over batch" in markdown
    html = render(decoder, "html")
    assert '<section id="llm">' in html and '<svg class="sweep"' in html
    data = json.loads(render(decoder, "json"))["llm"]
    assert [row["scenario"]["batch"] for row in data["sweeps"][0]["rows"]] == [1, 8, 64]
    # 2 layers x (key + value) x 4 heads x 32 dims x 4 B (fp32) = 2,048 B per token per sequence
    assert data["serving"]["kv_bytes_per_token"] == 2048


def test_sweep_chart_points_follow_the_table(decoder):
    from memlint.report.sweep_chart import sweep_chart

    (sweep,) = decoder.llm.sweeps
    chart = sweep_chart(sweep)
    xs = [m.x for m in chart.rate_marks]
    assert xs == sorted(xs) and len(xs) == 3  # batch 1, 8, 64 left to right
    # tokens/s rises with batch (the weights are read once per step for the whole batch)
    ys = [m.y for m in chart.rate_marks]
    assert ys[0] > ys[1] > ys[2]  # SVG y grows downwards


def test_an_encoder_has_no_llm_section():
    request = LintRequest(dims=("batch_size=1", "sequence_length=16"), isolated=True)
    report, _ = lint_model(SAMPLES / "bert_encoder.onnx", request)
    assert report.llm is not None and report.llm.serving is None
    assert "LLM serving" not in render(report, "text")
    assert '<section id="llm">' not in render(report, "html")
