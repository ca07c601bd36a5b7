"""memlint.llm on held-out Optimum exports (text-generation-with-past), built in the test from tiny
random configs: GPT-2 (2 layers, hidden 64, 4 heads) and a Llama-style decoder with grouped-query
attention (2 layers, hidden 64, 4 query heads, 2 KV heads). Nothing is downloaded; one
module-scoped fixture exports both (~1-10 s).
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

from memlint.analysis.structure import DimRole, detect  # noqa: E402
from memlint.api import load  # noqa: E402
from memlint.hardware import resolve as resolve_hw  # noqa: E402
from memlint.llm.generate import generate, step_totals  # noqa: E402
from memlint.llm.scenario import Evaluator, Phase, Scenario, resolve  # noqa: E402
from memlint.llm.sweep import gemm_balance, sweep  # noqa: E402
from memlint.llm.whatif import Precision, apply_precision, precision_gain  # noqa: E402

LAYERS, HIDDEN, HEADS, VOCAB, POSITIONS = 2, 64, 4, 500, 128
LLAMA_KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 16
FP32 = 4  # bytes


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"gpt2": export dir, "llama": export dir}, each holding model.onnx and config.json."""
    from optimum.exporters.onnx import main_export

    root = tmp_path_factory.mktemp("llm-optimum")
    torch.manual_seed(0)
    models = {
        "gpt2": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=LAYERS, n_embd=HIDDEN, n_head=HEADS, vocab_size=VOCAB, n_positions=POSITIONS,
        )),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS,
            num_key_value_heads=LLAMA_KV_HEADS, intermediate_size=128, vocab_size=VOCAB,
            max_position_embeddings=POSITIONS,
        )),
    }  # fmt: skip
    paths = {}
    for name, model in models.items():
        model.save_pretrained(root / f"{name}-hf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(
                str(root / f"{name}-hf"), output=root / f"{name}-onnx",
                task="text-generation-with-past", local_files_only=True,
            )  # fmt: skip
        paths[name] = root / f"{name}-onnx"
    return paths


@pytest.fixture(scope="module")
def structures(exports):
    return {name: detect(load(path)) for name, path in exports.items()}


@pytest.mark.parametrize(("name", "kv_heads"), [("gpt2", HEADS), ("llama", LLAMA_KV_HEADS)])
def test_kv_bytes_per_token_matches_the_formula(structures, name, kv_heads):
    s = structures[name]
    # 2 (key and value) x layers x kv_heads x head_dim x bytes:
    # GPT-2: 2 x 2 x 4 x 16 x 4 = 1,024 B; Llama GQA: 2 x 2 x 2 x 16 x 4 = 512 B
    assert s.kv_bytes_per_token() == 2 * LAYERS * kv_heads * HEAD_DIM * FP32
    assert (s.layers, s.heads, s.kv_heads, s.head_dim) == (LAYERS, HEADS, kv_heads, HEAD_DIM)
    assert s.kv_bytes_per_token(Precision.parse(kv_cache="fp8").kv_cache) == (
        2 * LAYERS * kv_heads * HEAD_DIM * 1
    )


def test_structure_reads_roles_and_config(structures):
    gpt2, llama = structures["gpt2"], structures["llama"]
    for s in (gpt2, llama):
        assert s.dims_of(DimRole.BATCH) == ("batch_size",)
        assert s.dims_of(DimRole.NEW_TOKENS) == ("sequence_length",)
        assert s.dims_of(DimRole.PAST) == ("past_sequence_length",)
        assert s.derived_dims == ("past_sequence_length + sequence_length",)
        assert s.config is not None and s.hidden_size == HIDDEN and s.vocab_size == VOCAB
        assert s.max_positions == POSITIONS and not s.notes
    assert gpt2.attention_kind == "multi-head"
    assert llama.attention_kind == "grouped-query (2 query heads per KV head)"
    assert llama.sources["max_positions"] == "config.json"  # rotary: no position table to read
    assert gpt2.sources["max_positions"] == "graph (position table)"


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_batch_sweep_intensity_rises_and_shows_the_crossover(exports, structures, name):
    spec = resolve_hw("a100", ())
    evaluator = Evaluator(exports[name], spec, structures[name])
    base = resolve(structures[name], context=63)
    table = sweep(evaluator, base, "batch", (1, 4, 16, 64, 256))
    intensities = [r.intensity for r in table.rows]
    assert all(a < b for a, b in zip(intensities, intensities[1:])), intensities
    # the weight GEMMs gain the most: their weights are read once for the whole batch
    gemms = [r.gemm.intensity for r in table.rows]
    assert all(a < b for a, b in zip(gemms, gemms[1:])) and gemms[-1] > 20 * gemms[0], gemms
    assert [r.scenario.batch for r in table.rows] == [1, 4, 16, 64, 256]
    crossover = table.crossover
    assert crossover is not None and crossover.batch is not None
    assert 16 < crossover.batch <= 256  # between the swept points that bracket it
    # the definition: the GEMMs are compute-bound at the crossover batch, not one below it
    at = gemm_balance(evaluator.report(base.at(batch=crossover.batch)))
    below = gemm_balance(evaluator.report(base.at(batch=crossover.batch - 1)))
    assert at.compute_bound and not below.compute_bound
    assert at.intensity >= crossover.ridge_point > below.intensity
    assert crossover.peak_key == "vector.float32"  # fp32 matmuls without --tf32
    # memory-bound share never reaches zero: attention reads every sequence's own cache
    assert all(r.memory_bound_fraction > 0.5 for r in table.rows)


def test_gpt2_generation_totals_agree_with_summing_single_steps(exports, structures):
    spec = resolve_hw("a100", ())
    path, structure = exports["gpt2"], structures["gpt2"]
    prompt, tokens = 5, 24
    totals = generate(Evaluator(path, spec, structure), tokens=tokens, prompt=prompt)
    assert totals.method == "interpolated" and len(totals.contexts_evaluated) == 5
    # independently: lint the prefill and each of the 23 decode steps on its own and add them up
    single = Evaluator(path, spec, structure)
    steps = [step_totals(single.report(Scenario(Phase.PREFILL, 1, prompt, 0)))]
    steps += [
        step_totals(single.report(Scenario(Phase.DECODE, 1, 1, context)))
        for context in range(prompt, prompt + tokens - 1)
    ]
    assert single.loads == tokens
    assert totals.total.steps == len(steps) == tokens
    assert totals.total.flops == sum(s.flops for s in steps)
    assert totals.total.bytes_moved == sum(s.bytes_moved for s in steps)
    assert totals.decode.bytes_read.kv_cache == sum(s.bytes_read.kv_cache for s in steps[1:])
    assert totals.total.latency_s == pytest.approx(sum(s.latency_s for s in steps), rel=1e-12)
    assert totals.total.memory_bound_latency_s == pytest.approx(
        sum(s.memory_bound_latency_s for s in steps), rel=1e-12
    )
    assert totals.prefill.flops == steps[0].flops


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_int4_weights_cut_weight_bytes_8x_from_fp32(exports, structures, name):
    spec = resolve_hw("a100", ())
    evaluator = Evaluator(exports[name], spec, structures[name])
    before = evaluator.report(resolve(structures[name], context=31))
    precision = Precision.parse(weights="int4")
    gain = precision_gain(before, apply_precision(before, precision), precision)
    # every fp32 weight matrix (all even-sized) is stored in 4 bits: exactly 8x fewer bytes;
    # biases, norm gains and scalar constants stay fp32 (a few hundred bytes here)
    assert gain.converted_before == 8 * gain.converted_after > 0
    assert gain.weight_bytes_before - gain.converted_before < 0.01 * gain.weight_bytes_before
    # per step: GPT-2's biases and LayerNorm gains (~3 kB fp32 of the 530 kB it reads) stay
    assert gain.weight_bytes_read_before > 7 * gain.weight_bytes_read_after
    assert gain.latency_after_s < gain.latency_before_s
