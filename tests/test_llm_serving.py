"""memlint.llm.serving and memlint.report.llm_view: the "LLM serving" numbers of the sample GPT-2's
default decode step, and every LLM section rendered to strings and to JSON-ready data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from memlint.analysis.liveness import footprint
from memlint.api import lint_llm
from memlint.llm.session import generation_prompt, sections
from memlint.llm.whatif import Precision
from memlint.report import llm_view as view

GPT2 = Path(__file__).resolve().parent.parent / "sample_models" / "gpt2_decoder_step.onnx"


@pytest.fixture(scope="module")
def parts():
    run = lint_llm(GPT2, hw="a100")
    return run, sections(run, sweeps=["batch=1,8,64", "context=16,128"], generate_tokens=40,
                         weights_dtype="int4", kv_dtype="fp8", tp=2)  # fmt: skip


def test_serving_numbers(parts):
    run, p = parts
    s = p.serving
    assert (s.scenario.batch, s.scenario.context) == (1, 255)  # the default decode step
    assert s.precision == "weights int4, KV cache fp8"
    step = run.evaluator.with_precision(Precision.parse("int4", "fp8")).report(run.scenario)
    assert s.step_latency_s == step.summary.predicted_latency_s
    assert s.bytes_per_token == step.summary.bytes_moved  # one token per step at batch 1
    assert s.kv_bytes_per_token == 2 * 2 * 4 * 32 * 1  # fp8: 512 B
    assert s.kv_bytes_at_context == 512 * 255 and s.kv_bytes_batch == 512 * 255
    assert s.tokens_per_s_per_sequence == pytest.approx(1 / s.step_latency_s)
    mem = footprint(step.model.graph)
    # (80 GB - weights) / (KV + activations live at the peak, per sequence)
    per_sequence = mem.kv_cache_bytes + mem.peak_activation_bytes
    assert s.largest_batch == int((80e9 - mem.weight_bytes) // per_sequence)
    assert s.fits and s.crossover is not None


def test_rows_are_strings_and_dicts_are_json(parts):
    run, p = parts
    rows = view.serving_rows(p.serving, p.structure)
    labels = [label for label, _ in rows]
    assert labels == ["scenario", "model", "what-if", "step", "bytes per token",
                      "time per token", "KV cache", "memory", "largest batch",
                      "tokens/s (upper bound)", "compute-bound from"]  # fmt: skip
    assert all(isinstance(v, str) and v for _, v in rows)
    text = dict(rows)
    assert text["KV cache"].startswith("512 B per token per sequence; 131 kB per sequence at 255")
    assert text["model"] == (
        "2 layers, 4 heads (multi-head), 4 KV heads of 32, hidden 128, vocab 1000, 256 positions"
    )
    tables = [view.sweep_table(t) for t in p.sweeps]
    assert [t.title for t in tables] == ["LLM sweep over batch", "LLM sweep over context"]
    assert all(len(row) == len(t.headers) for t in tables for row in t.rows)
    assert any(note.startswith("decode ") for note in tables[0].notes)
    for rows in (view.generation_rows(p.generation), view.precision_rows(p.precision),
                 view.tp_rows(p.tensor_parallel, p.smallest_tp)):  # fmt: skip
        assert all(isinstance(label, str) and isinstance(value, str) for label, value in rows)
    assert dict(view.tp_rows(p.tensor_parallel, p.smallest_tp))["all-reduce"].startswith(
        "2 layers x 2 x 2(2-1)/2 x 1 tokens x 128 x 4 B = 2.05 kB per device over 600 GB/s"
    )
    data = p and __import__("memlint.core.document", fromlist=["llm_dict"]).llm_dict(p)
    assert json.loads(json.dumps(data)) == data
    assert data["structure"]["kv_bytes_per_token"] == 2048 and data["smallest_fitting_tp"] == 1
    assert [b.title for b in view.blocks(p)] == [
        "LLM serving", "LLM sweep over batch", "LLM sweep over context", "Generation",
        "Precision what-if", "Tensor parallel",
    ]


def test_model_line_says_one_layer_head_and_kv_head_in_the_singular(parts):
    _, p = parts  # a multi-query model of one layer and one query head: Falcon-style MQA
    one = dataclasses.replace(p.structure, layers=1, heads=1, kv_heads=1)
    assert view.structure_line(one).startswith("1 layer, 1 head (")
    assert ", 1 KV head of 32, hidden 128" in view.structure_line(one)
    mqa = dataclasses.replace(p.structure, kv_heads=1)
    assert view.structure_line(mqa).startswith("2 layers, 4 heads (multi-query), 1 KV head of 32")


def test_generation_prompt_fits_the_positions(parts):
    run, p = parts
    # the default context (255) leaves no room for 40 tokens in 256 positions: 256 - 40 + 1
    assert p.generation.prompt == 217 == generation_prompt(p.structure, run.scenario, 40)
    given = lint_llm(GPT2, hw="a100", prompt=100)
    assert generation_prompt(given.structure, given.scenario, 40) == 100
