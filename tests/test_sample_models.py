"""The shipped sample models are current, valid ONNX, and run in onnxruntime where they should."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DECODER, ENCODER, CNN = "gpt2_decoder_step.onnx", "bert_encoder.onnx", "small_cnn.onnx"
GRAPH_ONLY = "gpt2_small_graph_only.onnx"
EMBEDDED = (DECODER, ENCODER, CNN)


@pytest.fixture(scope="module")
def build():
    """sample_models/build.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location("sample_models_build", SAMPLES / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _session(name: str):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(SAMPLES / name), providers=["CPUExecutionProvider"])


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_shipped_files_are_current(build, tmp_path):
    # A rebuild must reproduce every shipped file byte for byte (fixed seed, fixed IR version,
    # deterministic serialisation); a failure means build.py changed: rerun it and commit.
    built = build.build_all(tmp_path)
    assert sorted(p.name for p in built) == sorted((*EMBEDDED, GRAPH_ONLY))
    for path in built:
        assert path.read_bytes() == (SAMPLES / path.name).read_bytes(), path.name


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_models_pass_full_check(name):
    onnx.checker.check_model(str(SAMPLES / name), full_check=True)


def test_decoder_io_layout_matches_optimum():
    graph = onnx.load(str(SAMPLES / DECODER)).graph
    inputs = {v.name: _dims(v) for v in graph.input}
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["attention_mask"] == ["batch_size", "past_sequence_length + sequence_length"]
    assert inputs["past_key_values.1.value"] == ["batch_size", 4, "past_sequence_length", 32]
    outputs = {v.name: _dims(v) for v in graph.output}
    assert outputs["logits"] == ["batch_size", "sequence_length", 1000]
    assert outputs["present.1.key"] == [
        "batch_size", 4, "past_sequence_length + sequence_length", 32]
    ops = {n.op_type for n in graph.node}
    assert {"Shape", "Concat", "Reshape", "Split", "Pow", "Tanh", "Where", "Softmax"} <= ops


def _decoder_feed(rng, seq: int, past: int, tokens=None) -> dict[str, np.ndarray]:
    tokens = rng.integers(0, 1000, (1, seq)) if tokens is None else tokens
    feed = {
        "input_ids": tokens,
        "attention_mask": np.ones((1, past + seq), np.int64),
        "position_ids": np.arange(past, past + seq, dtype=np.int64)[None, :],
    }
    for i in range(2):
        for kv in ("key", "value"):
            feed[f"past_key_values.{i}.{kv}"] = rng.standard_normal((1, 4, past, 32), np.float32)
    return feed


def test_decoder_runs_with_past():
    session = _session(DECODER)
    rng = np.random.default_rng(0)
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, _decoder_feed(rng, seq=8, past=16))))
    assert outputs["logits"].shape == (1, 8, 1000)
    assert np.isfinite(outputs["logits"]).all()
    for i in range(2):
        for kv in ("key", "value"):
            assert outputs[f"present.{i}.{kv}"].shape == (1, 4, 24, 32)


def test_decoder_cache_step_matches_full_prompt():
    # Causal mask + KV cache are right iff decoding token 9 on top of the cache of tokens 1..8
    # gives the same logits as running all 9 tokens at once (last position).
    session = _session(DECODER)
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 1000, (1, 9))
    full = session.run(["logits"], _decoder_feed(rng, 9, 0, tokens))[0]
    prefix = dict(zip(names, session.run(None, _decoder_feed(rng, 8, 0, tokens[:, :8]))))
    step = _decoder_feed(rng, 1, 8, tokens[:, 8:])
    for i in range(2):
        for kv in ("key", "value"):
            step[f"past_key_values.{i}.{kv}"] = prefix[f"present.{i}.{kv}"]
    last = session.run(["logits"], step)[0]
    np.testing.assert_allclose(last[0, 0], full[0, 8], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(prefix["logits"][0], full[0, :8], rtol=1e-4, atol=1e-5)


def test_encoder_runs():
    session = _session(ENCODER)
    rng = np.random.default_rng(0)
    feed = {
        "input_ids": rng.integers(0, 1000, (1, 8)),
        "attention_mask": np.ones((1, 8), np.int64),
        "token_type_ids": np.zeros((1, 8), np.int64),
    }
    (hidden,) = session.run(None, feed)
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    assert hidden.shape == (1, 8, 128)
    assert np.isfinite(hidden).all()


def test_cnn_runs():
    session = _session(CNN)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)
    (logits,) = session.run(None, {"pixel_values": pixels})
    assert logits.shape == (1, 10)


def test_graph_only_model_has_external_weights_and_no_data_file(build):
    path = SAMPLES / GRAPH_ONLY
    assert path.stat().st_size < 1_000_000
    assert not (SAMPLES / f"{GRAPH_ONLY}.data").exists()
    model = onnx.load(str(path), load_external_data=False)
    # GPT-2 small: 124,439,808 parameters + the exported [768, 50257] copy of the tied lm_head.
    fp32 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    params = sum(math.prod(t.dims) for t in fp32)
    assert params == 124_439_808 + 768 * 50257
    offset = 0
    for tensor in model.graph.initializer:  # laid out back to back in one (absent) file
        assert tensor.data_location == onnx.TensorProto.EXTERNAL
        info = {e.key: e.value for e in tensor.external_data}
        assert info["location"] == f"{GRAPH_ONLY}.data"
        assert int(info["offset"]) == offset
        itemsize = 1 if tensor.data_type == onnx.TensorProto.BOOL else 4
        assert int(info["length"]) == math.prod(tensor.dims) * itemsize
        offset += int(info["length"])
    build.check(model)  # full check against a sparse placeholder of the layout's size
