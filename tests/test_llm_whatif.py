"""memlint.llm.whatif: precision what-ifs recount bytes (and peaks) on a retyped graph; tensor
parallel splits the step and adds the all-reduce time, with the formula checked by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from memlint.analysis.liveness import footprint
from memlint.analysis.structure import detect
from memlint.api import analyse, load
from memlint.hardware import resolve as resolve_hw
from memlint.ir import ComputeUnit, DType
from memlint.llm import LlmError
from memlint.llm.parallel import (
    allreduce_bytes,
    smallest_fitting_tp,
    tensor_parallel,
    tp_candidates,
)
from memlint.llm.scenario import Evaluator, resolve
from memlint.llm.whatif import Precision, apply_precision, precision_gain

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
GPT2 = SAMPLES / "gpt2_decoder_step.onnx"


@pytest.fixture(scope="module")
def structure():
    return detect(load(GPT2))


def step(structure, hw="a100"):
    """The default decode step of the sample GPT-2 (batch 1, 255 cached tokens)."""
    return Evaluator(GPT2, resolve_hw(hw, ()), structure).report(resolve(structure))


def weight_gemms(report):
    return [n for n in report.nodes
            if n.cost.unit is ComputeUnit.TENSOR and n.cost.bytes_read.weights]  # fmt: skip


def test_parse():
    assert Precision.parse("int4", "fp8") == Precision(DType.INT4, DType.FLOAT8E4M3FN)
    assert Precision.parse().is_identity and Precision().label == "as in the graph"
    assert Precision.parse("bf16").label == "weights bf16"
    with pytest.raises(LlmError, match="--weights-dtype 'int3': expected one of fp16, bf16, fp8, int8, int4"):
        Precision.parse("int3")
    with pytest.raises(LlmError, match="--kv-dtype 'int4': expected one of fp16, fp8, int8"):
        Precision.parse(kv_cache="int4")


def test_int4_weights_are_8x_smaller_and_activations_untouched(structure):
    before = step(structure)
    precision = Precision.parse("int4")
    after = apply_precision(before, precision)
    gain = precision_gain(before, after, precision)
    assert gain.converted_before == 8 * gain.converted_after > 0  # fp32 -> 4 bits, even sizes
    # what stays: the bool causal-mask buffer and the vectors (biases, LayerNorm gains)
    assert gain.weight_bytes_after - gain.converted_after == (
        gain.weight_bytes_before - gain.converted_before
    )
    assert after.summary.bytes_by_kind.activations == before.summary.bytes_by_kind.activations
    assert after.summary.bytes_by_kind.kv_cache == before.summary.bytes_by_kind.kv_cache
    assert after.summary.flops == before.summary.flops
    assert gain.latency_after_s < gain.latency_before_s and gain.saving_s > 0
    # weight-only quantization: the arithmetic stays fp32 on the vector unit
    assert {n.timing.peak_key for n in weight_gemms(after)} == {"vector.float32"}


def test_kv_fp8_quarters_the_kv_bytes(structure):
    before = step(structure)
    after = apply_precision(before, Precision.parse(kv_cache="fp8"))
    assert 4 * after.summary.bytes_by_kind.kv_cache == before.summary.bytes_by_kind.kv_cache > 0
    assert after.summary.bytes_read.weights == before.summary.bytes_read.weights
    assert structure.kv_bytes_per_token(DType.FLOAT8E4M3FN) == 2 * 2 * 4 * 32 * 1


@pytest.mark.parametrize(
    ("hw", "weights", "peak"),
    [("a100", "fp16", "tensor.float16"), ("a100", "bf16", "tensor.bfloat16"),
     ("h100", "fp8", "tensor.float8"), ("a100", "fp8", "tensor.float16"),  # A100: no fp8 peak
     ("h100", "int8", "vector.float32")],
)  # fmt: skip
def test_float_weights_move_matmuls_to_their_peak(structure, hw, weights, peak):
    after = apply_precision(step(structure, hw), Precision.parse(weights))
    assert {n.timing.peak_key for n in weight_gemms(after)} == {peak}


def test_identity_and_kv_without_cache():
    bert = analyse(load(SAMPLES / "bert_encoder.onnx"), resolve_hw("a100", ()))
    assert apply_precision(bert, Precision()) is bert
    # The literature's convention sets every tensor's width: a model without a KV cache takes
    # --kv-dtype, and nothing changes (memlint.llm.whatif.apply_what_if records it).
    after = apply_precision(bert, Precision.parse(kv_cache="fp8"))
    assert after.summary.flops == bert.summary.flops
    assert after.summary.bytes_moved == bert.summary.bytes_moved


def test_tensor_parallel_formula(structure):
    report = step(structure)  # a100: NVLink 600 GB/s; hidden 128, 2 layers, fp32
    one = tensor_parallel(report, structure, 1, batch=1, new_tokens=1)
    assert one.allreduce_time_s == 0 and one.compute_latency_s == pytest.approx(
        report.summary.predicted_latency_s, rel=1e-12)  # fmt: skip
    two = tensor_parallel(report, structure, 2, batch=1, new_tokens=1)
    # per all-reduce: 2 x (2-1)/2 x 1 token x 128 x 4 B = 512 B; 2 per layer -> 1,024 B
    assert allreduce_bytes(2, 1, 128, 4) == 512
    assert two.allreduce_bytes_per_layer == 1024
    assert two.allreduce_time_s == pytest.approx(2 * 1024 / 600e9, rel=1e-12)
    assert two.step_latency_s == two.compute_latency_s + two.allreduce_time_s
    assert two.compute_latency_s < one.compute_latency_s
    mem = footprint(report.model.graph)
    assert two.weight_bytes_per_device == mem.weight_bytes / 2
    assert two.kv_cache_bytes_per_device == mem.kv_cache_bytes / 2  # 4 KV heads: 2 each
    eight = tensor_parallel(report, structure, 8, batch=4, new_tokens=1)
    assert eight.kv_cache_bytes_per_device == mem.kv_cache_bytes / 4  # 1 KV head, replicated
    assert eight.allreduce_bytes_per_layer == 2 * 2 * 7 / 8 * 4 * 128 * 4
    assert tp_candidates(structure) == (1, 2, 4)


def test_tensor_parallel_errors_and_smallest_fit(structure):
    report = step(structure)
    with pytest.raises(LlmError, match="--tp 0: the number of devices must be at least 1"):
        tensor_parallel(report, structure, 0, batch=1, new_tokens=1)
    t4 = step(structure, "t4")
    with pytest.raises(LlmError, match="--tp 2: nvidia-t4 has no interconnect bandwidth"):
        tensor_parallel(t4, structure, 2, batch=1, new_tokens=1)
    mem = footprint(report.model.graph)
    at_two = mem.weight_bytes / 2 + mem.kv_cache_bytes / 2 + mem.peak_activation_bytes
    small = dataclasses.replace(report.hardware, memory_capacity_bytes=int(at_two) + 1000)
    tight = dataclasses.replace(report, hardware=small)
    smallest = smallest_fitting_tp(tight, structure, batch=1, new_tokens=1)
    assert smallest is not None and smallest.tp == 2 and smallest.fits
    assert not tensor_parallel(tight, structure, 1, batch=1, new_tokens=1).fits
    tiny = dataclasses.replace(report, hardware=dataclasses.replace(small, memory_capacity_bytes=1))
    assert smallest_fitting_tp(tiny, structure, batch=1, new_tokens=1) is None


def test_evaluator_applies_the_precision(structure):
    spec = resolve_hw("a100", ())
    plain = Evaluator(GPT2, spec, structure)
    quant = plain.with_precision(Precision.parse("int8", "int8"))
    scenario = resolve(structure, context=16)
    a, b = plain.report(scenario), quant.report(scenario)
    assert 4 * b.summary.bytes_by_kind.kv_cache == a.summary.bytes_by_kind.kv_cache
    assert b.summary.bytes_read.weights < a.summary.bytes_read.weights
