"""memlint.analysis.structure: KV cache, dim roles, layers and heads read from the graph and
config.json; and how scenarios map onto dims whatever the exporter called them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from memlint.analysis.hfconfig import read_config
from memlint.analysis.structure import DimRole, detect
from memlint.api import load
from memlint.llm import LlmError
from memlint.llm.scenario import Evaluator, resolve, scenario_dims

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def write_model(path: Path, inputs, nodes, outputs) -> Path:
    """A small ONNX file from (name, elem type, dims) inputs and (op, inputs, outputs) nodes."""
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, **attrs) for op, ins, outs, attrs in nodes],
        "g",
        [helper.make_tensor_value_info(name, elem, dims) for name, elem, dims in inputs],
        [helper.make_tensor_value_info(name, F32, None) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_sample_decoder():
    s = detect(load(SAMPLES / "gpt2_decoder_step.onnx"))
    # 2 layers, 4 heads of 32, hidden 128, vocab 1000, 256 positions (sample_models/README.md)
    assert (s.layers, s.heads, s.kv_heads, s.head_dim) == (2, 4, 4, 32)
    assert (s.hidden_size, s.vocab_size, s.max_positions) == (128, 1000, 256)
    assert s.kv_bytes_per_token() == 2 * 2 * 4 * 32 * 4  # 2,048 B: K and V, fp32
    assert [t.name for t in s.kv_inputs] == [
        f"past_key_values.{i}.{p}" for i in range(2) for p in ("key", "value")
    ]
    assert [(t.layer, t.part, t.batch_axis, t.seq_axis) for t in s.kv_inputs[:2]] == [
        (0, "key", 0, 2), (0, "value", 0, 2)
    ]
    assert s.kv_outputs == tuple(f"present.{i}.{p}" for i in range(2) for p in ("key", "value"))
    assert dict(s.dim_roles) == {
        "batch_size": DimRole.BATCH,
        "sequence_length": DimRole.NEW_TOKENS,
        "past_sequence_length": DimRole.PAST,
    }
    assert s.derived_dims == ("past_sequence_length + sequence_length",)
    assert s.attention_kind == "multi-head" and s.config is None and not s.pinned
    assert s.sources["heads"] == "graph (attention)"


def test_sample_encoder_has_no_kv_cache():
    s = detect(load(SAMPLES / "bert_encoder.onnx"))
    assert not s.has_kv_cache and s.kv_bytes_per_token() is None and s.layers is None
    assert dict(s.dim_roles) == {"batch_size": DimRole.BATCH, "sequence_length": DimRole.NEW_TOKENS}
    assert resolve(s) is None  # linted as bound, no scenario


def test_roles_come_from_the_inputs_that_carry_them(tmp_path):
    # torch-style one-letter names: nothing to match by spelling, everything by position
    path = write_model(
        tmp_path / "m.onnx",
        [("input_ids", I64, ["B", "S"]), ("attention_mask", I64, ["B", "T"]),
         ("past_key_0", F32, ["B", 2, "P", 16]), ("past_value_0", F32, ["B", 2, "P", 16])],
        [("Identity", ["past_key_0"], ["present_key_0"], {})],
        ["present_key_0"],
    )  # fmt: skip
    s = detect(load(path))
    assert dict(s.dim_roles) == {
        "B": DimRole.BATCH, "S": DimRole.NEW_TOKENS, "P": DimRole.PAST, "T": DimRole.TOTAL
    }  # fmt: skip
    assert s.layers == 1 and s.kv_heads == 2 and s.head_dim == 16
    scenario = resolve(s, batch=3, context=40)
    assert scenario_dims(s, scenario) == {"B": 3, "S": 1, "P": 40, "T": 41}
    report = Evaluator(path, _spec(), s).report(scenario)
    assert report.model.graph.value("past_key_0").shape == (3, 2, 40, 16)
    assert not report.model.assumed_dims


def test_stacked_key_value_layout(tmp_path):
    # [2, batch, heads, past, head_dim]: key and value in one tensor per layer
    path = write_model(
        tmp_path / "m.onnx",
        [("input_ids", I64, ["batch", "seq"]), ("kv_cache.0", F32, [2, "batch", 3, "past_len", 8]),
         ("kv_cache.1", F32, [2, "batch", 3, "past_len", 8])],
        [("Identity", ["kv_cache.0"], ["out"], {})],
        ["out"],
    )  # fmt: skip
    s = detect(load(path))
    first = s.kv_inputs[0]
    assert (first.batch_axis, first.seq_axis, first.heads, first.head_dim) == (1, 3, 3, 8)
    assert first.part == "kv" and s.layers == 2
    assert s.kv_bytes_per_token() == 2 * 2 * 3 * 8 * 4  # 384 B = 2 x layers x kv_heads x d x 4


def test_pinned_axes(tmp_path):
    # input_ids [batch, 1]: a decode-only graph; the cache's sequence axis has no name
    path = write_model(
        tmp_path / "m.onnx",
        [("input_ids", I64, ["batch", 1]), ("past_key_values.0.key", F32, ["batch", 2, None, 16]),
         ("past_key_values.0.value", F32, ["batch", 2, None, 16])],
        [("Identity", ["past_key_values.0.key"], ["present.0.key"], {})],
        ["present.0.key"],
    )  # fmt: skip
    s = detect(load(path))
    fixed, unnamed = s.pinned[DimRole.NEW_TOKENS], s.pinned[DimRole.PAST]
    assert (fixed.value, fixed.axis, fixed.unnamed) == (1, "input_ids[1]", False)
    assert (unnamed.axis, unnamed.unnamed) == ("past_key_values.0.key[2]", True)
    default = resolve(s)  # the context is what the graph holds, not a default it cannot take
    assert (default.new_tokens, default.context) == (1, 1)
    with pytest.raises(LlmError, match=r"graph fixes the new tokens per step at 1 \(input_ids\[1\]\)"):
        resolve(s, phase="prefill", prompt=8)
    with pytest.raises(LlmError, match=r"no dim name; set that input's whole shape with --input-shape"):
        resolve(s, context=100)


def test_config_json_fills_gaps_and_loses_to_the_graph(tmp_path, caplog):
    model = load(SAMPLES / "gpt2_decoder_step.onnx")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "model_type": "gpt2", "n_layer": 3, "n_head": 4, "n_embd": 128, "vocab_size": 1000,
        "n_positions": 256,
    }))  # fmt: skip
    s = detect(model, config_path=config)
    assert s.layers == 2  # the graph's 2 KV layers win over config.json's 3
    assert s.notes == ("layers: the graph has 2 (KV-cache inputs), config.json says 3; using the graph's",)
    assert s.config.model_type == "gpt2" and s.config.num_key_value_heads is None
    config.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert detect(model, config_path=config).config is None
    assert "not a readable JSON file" in caplog.text


def test_read_config_aliases(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"text_config": {"num_hidden_layers": 4, "hidden_size": 256,
                                                "num_attention_heads": 8}, "multi_query": True,
                                "max_position_embeddings": 2048}))  # fmt: skip
    cfg = read_config(path)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (4, 256, 8)
    assert cfg.num_key_value_heads == 1 and cfg.max_position_embeddings == 2048
    assert read_config(None) is None


def _spec():
    from memlint.hardware import resolve as resolve_hw

    return resolve_hw("a100", ())


def test_config_sliding_windows_and_experts():
    """Which layers slide, from the config keys transformers writes; and a mixture of
    experts' routed experts and top-k."""
    from memlint.analysis.hfconfig import config_from_dict

    gemma2 = config_from_dict({"sliding_window": 4096, "num_hidden_layers": 4, "layer_types": [
        "sliding_attention", "full_attention", "sliding_attention", "full_attention"]}, "c")
    assert gemma2.windows(4) == {0: 4096, 2: 4096}
    mistral = config_from_dict({"sliding_window": 4096, "num_hidden_layers": 3}, "c")
    assert mistral.windows(3) == {0: 4096, 1: 4096, 2: 4096}  # no layer_types: every layer
    qwen2 = config_from_dict({"sliding_window": 4096, "use_sliding_window": False}, "c")
    assert qwen2.windows(2) == {}
    assert config_from_dict({"sliding_window": None}, "c").windows(2) == {}
    mixtral = config_from_dict({"num_local_experts": 8, "num_experts_per_tok": 2}, "c")
    assert (mixtral.num_experts, mixtral.num_experts_per_tok) == (8, 2)
    deepseek = config_from_dict({"n_routed_experts": 256, "num_experts_per_tok": 8}, "c")
    assert deepseek.num_experts == 256
