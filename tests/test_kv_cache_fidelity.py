"""The KV cache is the cache (issue 17, scopes 4-6), on artifacts built here by the real tools:

- a Llama-shaped GQA export (optimum, text-generation-with-past; 4 layers, hidden 256, 4 query
  heads of 64, 2 KV heads): capacity figures come from the cache, never its copies (repeat_kv
  Expand, Transpose, Concat); the copies are activation traffic that ML105 names;
- the same export converted to fp16 with keep_io_types=True: ML105 still sees the Concats;
- every onnx backend Attention case with past/present (fully static graphs) lints;
- an encoder bound past its position table is one clear error.

head_dim 64 as in real models: at head_dim 8 the materialised attention scores ([b, heads, 1, T]
fp32) would be a quarter of the cache per tensor, and they are activations that count.
"""

from __future__ import annotations

import os
import warnings

import onnx
import pytest

import memlint
from memlint.cli import main
from memlint.errors import MemlintError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "sample_models")
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 4, 256, 4, 2, 64
# KV bytes per token: layers x (key + value) x kv_heads x head_dim x 4 B = 4*2*2*64*4 = 4096.
KV_PER_TOKEN = LAYERS * 2 * KV_HEADS * HEAD_DIM * 4
BATCH, CONTEXT = 4096, 2047


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from optimum.exporters.onnx import main_export

    root = tmp_path_factory.mktemp("kv-fidelity")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        num_hidden_layers=LAYERS, intermediate_size=128, vocab_size=500,
        max_position_embeddings=4096,
    ))  # fmt: skip
    model.save_pretrained(root / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(root / "hf"), output=root / "onnx", task="text-generation-with-past",
                    local_files_only=True)
    return root / "onnx" / "model.onnx"


@pytest.fixture(scope="module")
def step(llama):
    return memlint.lint(llama, hw="a100", scenario={"batch": BATCH, "context": CONTEXT})


def test_capacity_comes_from_the_cache_not_its_copies(step):
    s = step.llm.serving
    assert s.kv_bytes_per_token == KV_PER_TOKEN
    # The batch's cache: 4096 x 2047 x 4096 B = 34342961152 B (34.3 GB of the A100's 80 GB).
    cache = BATCH * CONTEXT * KV_PER_TOKEN
    assert cache == 34_342_961_152
    ideal = (s.capacity_bytes - s.weight_bytes) / (CONTEXT * KV_PER_TOKEN)  # ~9,540 sequences
    assert abs(s.largest_batch - ideal) <= 0.05 * ideal
    assert abs(s.peak_memory_bytes - (s.weight_bytes + cache)) <= 0.15 * (s.weight_bytes + cache)
    # KV bytes moved: the cache read once (each Concat reads its past input), not its copies.
    assert cache <= s.kv_bytes_moved <= 1.01 * cache


def test_gqa_expand_and_concat_copies_are_named(step):
    messages = [f.message for f in step.findings if f.code == "ML105"]
    # repeat_kv: [4096, 2, 1, 2048, 64] -> [4096, 2, 2, 2048, 64], 2x per layer and K/V.
    assert any("repeats the KV cache 2x for grouped-query attention" in m for m in messages)
    assert any(m.startswith("Concat copies") or "Concat copies" in m for m in messages)
    fixes = [x.text for f in step.findings if f.code == "ML105" for x in f.fixes]
    assert any("GroupQueryAttention" in t and "enable_gqa" in t for t in fixes)


def test_fp16_keep_io_types_still_copies_the_cache(llama, tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16 = convert_float_to_float16(onnx.load(str(llama)), keep_io_types=True)
    path = tmp_path / "model_fp16.onnx"
    onnx.save(fp16, str(path))
    report = memlint.lint(path, hw="a100", scenario={"batch": 1, "context": 1023})
    concats = [f for f in report.findings
               if f.code == "ML105" and "Concat copies" in f.message]  # fmt: skip
    # 2 x 4 layers Concats (key and value), past fp32 -> Cast fp16 -> Concat -> Cast -> present.
    assert sum(f.count for f in concats) == 2 * LAYERS


def _attention_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if c.name.startswith("test_attention")
            and any("past" in i.name for i in c.model.graph.input)]


def test_static_attention_cases_with_past_lint(tmp_path):
    cases = _attention_cases()
    assert len(cases) >= 38
    for case in cases:
        path = tmp_path / f"{case.name}.onnx"
        onnx.save(case.model, str(path))
        report = memlint.lint(path, hw="a100")  # follows the graph's fixed shapes
        scenario = report.llm.serving.scenario
        assert scenario.batch >= 1 and scenario.context >= 1, case.name


def test_static_graph_refuses_another_value_naming_the_axis(tmp_path):
    case = next(c for c in _attention_cases() if c.name == "test_attention_3d_with_past_and_present")
    path = tmp_path / "static.onnx"
    onnx.save(case.model, str(path))
    # past_key [2, 3, 12, 8], attn_mask [4, 18]: batch 2, context 12, 6 new tokens.
    scenario = memlint.lint(path, hw="a100").llm.serving.scenario
    assert (scenario.batch, scenario.context, scenario.new_tokens) == (2, 12, 6)
    with pytest.raises(MemlintError, match=r"the graph fixes the batch at 2 \(past_key\[0\]\)"):
        memlint.lint(path, hw="a100", scenario={"batch": 4})


def test_encoder_past_its_position_table_is_one_clear_error(capsys):
    bert = os.path.join(SAMPLES, "bert_encoder.onnx")  # a 128-row position table
    with pytest.raises(MemlintError, match="sequence_length=4096 exceeds the model's 128 positions"):
        memlint.lint(bert, dims={"batch_size": 1, "sequence_length": 4096})
    assert main([bert, "--dim", "batch_size=1", "--dim", "sequence_length=4096"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exceeds the model's 128 positions" in err[0]
    assert memlint.lint(bert, dims={"batch_size": 1, "sequence_length": 128}).summary.flops > 0
