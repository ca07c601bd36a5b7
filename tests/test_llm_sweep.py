"""memlint.llm.sweep on the sample GPT-2 decoder: rows, KV bytes, fit, and the crossover batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlint.analysis.structure import detect
from memlint.api import load
from memlint.hardware import resolve as resolve_hw
from memlint.llm import LlmError
from memlint.llm.scenario import Evaluator, resolve
from memlint.llm.sweep import crossover_batch, gemm_balance, parse_sweep, sweep
from memlint.llm.whatif import Precision

GPT2 = Path(__file__).resolve().parent.parent / "sample_models" / "gpt2_decoder_step.onnx"


@pytest.fixture(scope="module")
def structure():
    return detect(load(GPT2))


@pytest.fixture()
def evaluator(structure):
    return Evaluator(GPT2, resolve_hw("a100", ()), structure)


def test_parse_sweep():
    assert parse_sweep("batch=64,1,8,8") == ("batch", (1, 8, 64))
    assert parse_sweep(" Context = 0, 128 ") == ("context", (0, 128))
    for bad in ("batch", "heads=1,2", "batch=", "batch=1,x"):
        with pytest.raises(LlmError, match="expected AXIS=V1,V2,... with AXIS one of batch, context, prompt"):
            parse_sweep(bad)
    with pytest.raises(LlmError, match="--sweep batch: values must be at least 1"):
        parse_sweep("batch=0,1")


def test_batch_sweep(structure, evaluator):
    base = resolve(structure, context=100)
    table = sweep(evaluator, base, "batch", (1, 8, 64, 256))
    assert [r.scenario.batch for r in table.rows] == [1, 8, 64, 256]
    assert all(r.scenario.context == 100 and r.scenario.new_tokens == 1 for r in table.rows)
    intensities = [r.intensity for r in table.rows]
    assert all(a < b for a, b in zip(intensities, intensities[1:])), intensities
    for r in table.rows:
        assert r.kv_cache_bytes == 2048 * r.scenario.batch * 100  # 2,048 B per token, fp32
        assert r.tokens_per_s == pytest.approx(r.scenario.batch / r.latency_s)
        assert r.fits and r.peak_memory_bytes < r.capacity_bytes
    # GEMMs [B, 128] x [128, N] in fp32 on the A100's vector fp32 peak (ridge 19.5 T / 2.039 T
    # = 9.56 FLOP/B): compute-bound from a few dozen rows; the sweep brackets it (8 < B <= 64)
    crossover = table.crossover
    assert crossover.peak_key == "vector.float32"
    assert crossover.ridge_point == pytest.approx(19.5e12 / 2039e9)
    assert 8 < crossover.batch <= 64 and crossover.fits
    # solved from batches 1, 2, 4 and confirmed at the batch found and the one below
    assert evaluator.loads <= 4 + 4
    at = gemm_balance(evaluator.report(base.at(batch=crossover.batch)))
    below = gemm_balance(evaluator.report(base.at(batch=crossover.batch - 1)))
    assert at.compute_bound and not below.compute_bound


def test_context_and_prompt_sweeps(structure, evaluator):
    base = resolve(structure, batch=2)
    table = sweep(evaluator, base, "context", (0, 64, 200))
    assert table.crossover is None  # only batch sweeps search for it
    latencies = [r.latency_s for r in table.rows]
    assert latencies == sorted(latencies)
    assert [r.kv_cache_bytes for r in table.rows] == [0, 2048 * 2 * 64, 2048 * 2 * 200]
    with pytest.raises(LlmError, match="--sweep prompt: sweeps the prompt of a prefill"):
        sweep(evaluator, base, "prompt", (16,))
    prefill = resolve(structure, phase="prefill", prompt=8)
    rows = sweep(evaluator, prefill, "prompt", (8, 64)).rows
    assert [r.scenario.new_tokens for r in rows] == [8, 64]
    assert rows[1].tokens_per_s > rows[0].tokens_per_s  # prompt tokens share the weight reads


def test_no_crossover_within_the_search(structure):
    # fp16 weights on an A100: the ridge is 312 T / 2.039 T = 153 FLOP/B, but with hidden 128
    # and fp32 activations the GEMMs cannot get there (~50 FLOP/B at most)
    evaluator = Evaluator(GPT2, resolve_hw("a100", ()), structure,
                          precision=Precision.parse("fp16"))  # fmt: skip
    crossover = crossover_batch(evaluator, resolve(structure, context=16), max_batch=64)
    assert crossover.batch is None and crossover.searched_to == 64 and crossover.fits is None
    assert crossover.peak_key == "tensor.float16" and crossover.gemm_intensity < 153
    # the GEMMs' compute and memory times are lines in the batch that never cross: solved from
    # batches 1, 2 and 4, plus batch 64 for the intensity reported there
    assert evaluator.loads == 4


def _fake(compute_per_row, memory_fixed, memory_per_row, bend=0.0):
    from memlint.llm.sweep import GemmBalance

    def balance(batch):
        memory = memory_fixed + memory_per_row * batch + bend * batch * batch
        return GemmBalance(1, 1, compute_per_row * batch, memory, "tensor.float16", 153.0)

    return balance


def test_crossover_from_lines_and_by_bisection():
    from memlint.llm.sweep import _bisect, _solve

    # compute 1 us per row; memory 10 us of weights + 0.5 us per row: equal at 20 rows
    assert _solve(_fake(1e-6, 10e-6, 0.5e-6)) == 20
    assert _solve(_fake(1e-6, 0.0, 0.5e-6)) == 1  # compute-bound from the first row
    assert _solve(_fake(0.4e-6, 10e-6, 0.5e-6)) is None  # never crosses
    assert _solve(_fake(1e-6, 10e-6, 0.5e-6, bend=1e-8)) is None  # not a line: no solution

    def bound(batch):
        return batch >= 37

    assert _bisect(bound, {}, 4096) == 37
    assert _bisect(bound, {8: False, 64: True}, 4096) == 37
    assert _bisect(bound, {}, 16) is None


def test_an_onnx_file_is_read_once_for_the_scenario_and_every_sweep_point(monkeypatch):
    import memlint.frontends.onnx as onnx_frontend
    from memlint.api import lint_llm
    from memlint.llm.session import sections

    reads = []
    real = onnx_frontend.read_proto
    monkeypatch.setattr(onnx_frontend, "read_proto", lambda path: reads.append(path) or real(path))
    run = lint_llm(GPT2, hw="a100")  # the default decode step: a second load at its dims
    parts = sections(run, sweeps=["batch=1,8,64"])
    assert [row.scenario.batch for row in parts.sweeps[0].rows] == [1, 8, 64]
    assert run.evaluator.loads >= 2 and len(reads) == 1


def test_loads_of_one_parsed_file_do_not_share_bindings():
    from memlint.api import parse

    parsed = parse(GPT2)
    first = load(parsed, {"batch_size": 8, "past_sequence_length": 64, "sequence_length": 1})
    second = load(parsed, {"batch_size": 1, "past_sequence_length": 128, "sequence_length": 1})
    again = load(GPT2, {"batch_size": 8, "past_sequence_length": 64, "sequence_length": 1})
    assert first.dims == again.dims != second.dims
    shapes = [{v.name: v.shape for v in m.graph.values.values()} for m in (first, second, again)]
    assert shapes[0] == shapes[2] != shapes[1]
    assert parse(parsed) is parsed and Path(parsed) == GPT2 and first.source == str(GPT2)
