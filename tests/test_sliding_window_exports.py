"""Sliding-window attention in Optimum exports ("text-generation-with-past"), small configs.

The export keeps the whole context for every layer (its past_key_values inputs share one
past_sequence_length), so the step's own bytes read it all; the serving figures count the cache
a sliding-window runtime keeps: W - 1 tokens for each sliding layer (docs/llm.md). Per layer and
token: 2 (K, V) x 2 KV heads x 16 x 4 B = 256 B.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

from clitools import optimum_export  # noqa: E402

import memlint  # noqa: E402

DECODER = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 256}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    torch.manual_seed(0)
    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(
        **DECODER, num_hidden_layers=2, sliding_window=64))
    gemma2 = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        **DECODER, num_hidden_layers=4, head_dim=16, sliding_window=64))
    return optimum_export(tmp_path_factory.mktemp("sliding"), {
        "mistral": (mistral.eval(), "text-generation-with-past"),
        "gemma2": (gemma2.eval(), "text-generation-with-past"),
    })  # fmt: skip


@pytest.mark.parametrize("name, full, sliding", [("mistral", 0, 2), ("gemma2", 2, 2)])
def test_sliding_layers_keep_their_window(exports, name, full, sliding):
    """At 200 cached tokens, window 64: full layers 200 x 256 B, sliding ones 63 x 256 B
    (Mistral: every layer slides, its config names no layer types; Gemma 2 alternates)."""
    report = memlint.lint(exports[name] / "model.onnx", hw="h100", scenario={"context": 200})
    serving = report.llm.serving
    assert serving.kv_bytes_at_context == (full * 200 + sliding * 63) * 256
    assert (serving.sliding_layers, serving.window) == (sliding, 64)
    assert serving.kv_bytes_per_token == (full + sliding) * 256
    # the export itself reads every layer's whole context
    assert report.summary.bytes_read.kv_cache >= (full + sliding) * 200 * 256
    # a sweep over the context keeps the cap: past the window only the full layers grow
    swept = memlint.lint(exports[name] / "model.onnx", hw="h100",
                         scenario={"context": 200, "sweeps": ["context=32,128"]})  # fmt: skip
    rows = {r.scenario.context: r.kv_cache_bytes for r in swept.llm.sweeps[0].rows}
    assert rows == {32: (full + sliding) * 32 * 256, 128: (full * 128 + sliding * 63) * 256}
