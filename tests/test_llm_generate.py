"""memlint.llm.generate: totals of N tokens generated one by one equal the sum of N single
passes, whether the decode steps are interpolated (affine costs) or all linted (otherwise)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from memlint.analysis.structure import detect
from memlint.api import load
from memlint.hardware import resolve as resolve_hw
from memlint.llm import LlmError
from memlint.llm.generate import generate, step_totals
from memlint.llm.scenario import Evaluator, Phase, Scenario

GPT2 = Path(__file__).resolve().parent.parent / "sample_models" / "gpt2_decoder_step.onnx"
F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def summed(path, spec, structure, *, prompt, tokens, batch=1):
    """The reference: lint the prefill and every decode step on its own, and add them up."""
    evaluator = Evaluator(path, spec, structure)
    steps = [step_totals(evaluator.report(Scenario(Phase.PREFILL, batch, prompt, 0)))]
    for context in range(prompt, prompt + tokens - 1):
        steps.append(step_totals(evaluator.report(Scenario(Phase.DECODE, batch, 1, context))))
    return steps


def assert_same(totals, steps):
    assert totals.steps == len(steps)
    assert totals.flops == sum(s.flops for s in steps)
    assert totals.bytes_read == sum((s.bytes_read for s in steps[1:]), steps[0].bytes_read)
    assert totals.bytes_written == sum((s.bytes_written for s in steps[1:]), steps[0].bytes_written)
    assert totals.latency_s == pytest.approx(sum(s.latency_s for s in steps), rel=1e-12)
    assert totals.memory_bound_latency_s == pytest.approx(
        sum(s.memory_bound_latency_s for s in steps), rel=1e-12
    )


@pytest.fixture(scope="module")
def gpt2():
    return detect(load(GPT2))


@pytest.mark.parametrize("overhead", [None, 5e-6], ids=["no-overhead", "kernel-overhead"])
def test_interpolated_totals_equal_the_sum_of_single_steps(gpt2, overhead):
    spec = dataclasses.replace(resolve_hw("h100", ()), kernel_overhead_s=overhead)
    evaluator = Evaluator(GPT2, spec, gpt2)
    totals = generate(evaluator, tokens=30, prompt=10, batch=2)
    assert totals.method == "interpolated"
    assert totals.contexts_evaluated == (10, 17, 24, 31, 38)  # both ends and three between
    assert evaluator.loads == 6  # the prefill and five decode contexts, not 30 passes
    assert_same(totals.total, summed(GPT2, spec, gpt2, prompt=10, tokens=30, batch=2))
    assert totals.decode.steps == 29 and totals.prefill.steps == 1
    assert totals.time_to_first_token_s == totals.prefill.latency_s
    assert totals.time_per_output_token_s == pytest.approx(totals.decode.latency_s / 29)
    assert totals.aggregate_tokens_per_s == pytest.approx(2 * 30 / totals.total.latency_s)


def test_a_spec_with_figures_by_shape_class_lints_every_step(gpt2):
    # a matrix product can change class (skinny or not) as the context grows, so the per-node
    # lines of the interpolation would mix two rates: every step is linted instead
    spec = dataclasses.replace(resolve_hw("h100", ()), skinny_matmul_flops_per_s=100e12,
                               weight_streaming_bandwidth_bytes_per_s=2e12)
    totals = generate(Evaluator(GPT2, spec, gpt2), tokens=12, prompt=4)
    assert totals.method == "every step"
    assert_same(totals.total, summed(GPT2, spec, gpt2, prompt=4, tokens=12))


def test_a_spec_with_a_copy_bandwidth_lints_every_step(gpt2):
    # the lines time every node at the memory bandwidth; copies run at their own
    spec = dataclasses.replace(resolve_hw("h100", ()), copy_bandwidth_bytes_per_s=1e12)
    totals = generate(Evaluator(GPT2, spec, gpt2), tokens=12, prompt=4)
    assert totals.method == "every step"
    assert_same(totals.total, summed(GPT2, spec, gpt2, prompt=4, tokens=12))


def test_exact_and_short_runs_lint_every_step(gpt2):
    spec = resolve_hw("a100", ())
    exact = generate(Evaluator(GPT2, spec, gpt2), tokens=8, prompt=4, exact=True)
    assert exact.method == "every step" and exact.contexts_evaluated == tuple(range(4, 11))
    assert_same(exact.total, summed(GPT2, spec, gpt2, prompt=4, tokens=8))
    short = generate(Evaluator(GPT2, spec, gpt2), tokens=4, prompt=4)  # 3 decode steps
    assert short.method == "every step"
    one = generate(Evaluator(GPT2, spec, gpt2), tokens=1, prompt=16)
    assert one.decode.steps == 0 and one.total.steps == 1 and one.time_per_output_token_s is None


def test_positions_and_arguments_are_checked(gpt2):
    evaluator = Evaluator(GPT2, resolve_hw("a100", ()), gpt2)
    with pytest.raises(LlmError, match="--generate 200 from a 100-token prompt needs 299 positions; the model has 256"):
        generate(evaluator, tokens=200, prompt=100)
    with pytest.raises(LlmError, match="each must be at least 1"):
        generate(evaluator, tokens=0, prompt=4)


def _cache_model(path: Path, *, quadratic: bool) -> Path:
    """A cache-reading step. quadratic: V @ K^T over the whole cache, [past, past] per head, so
    its cost grows with the square of the context; else q @ K^T, one row per head (affine)."""
    inputs = [
        helper.make_tensor_value_info("input_ids", I64, ["batch", "seq"]),
        helper.make_tensor_value_info("q", F32, ["batch", 2, "seq", 8]),
        helper.make_tensor_value_info("past_key_values.0.key", F32, ["batch", 2, "past", 8]),
        helper.make_tensor_value_info("past_key_values.0.value", F32, ["batch", 2, "past", 8]),
    ]
    left = "past_key_values.0.value" if quadratic else "q"
    nodes = [
        helper.make_node("Transpose", ["past_key_values.0.key"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", [left, "kt"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("scores", F32, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("quadratic", [False, True], ids=["affine", "quadratic"])
def test_a_cost_that_bends_is_never_interpolated(tmp_path, quadratic):
    path = _cache_model(tmp_path / "m.onnx", quadratic=quadratic)
    spec = resolve_hw("a100", ())
    structure = detect(load(path))
    totals = generate(Evaluator(path, spec, structure), tokens=12, prompt=3)
    assert totals.method == ("every step" if quadratic else "interpolated")
    steps = summed(path, spec, structure, prompt=3, tokens=12)
    assert_same(totals.total, steps)
    if quadratic:  # 2 FLOPs x 2 heads x past x past x 8 per decode step, past = 3 .. 13
        assert totals.decode.flops == sum(2 * 2 * c * c * 8 for c in range(3, 14))
